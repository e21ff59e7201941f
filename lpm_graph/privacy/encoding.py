"""Fixed-point encoding of real vectors into the ring Z_2^64 that secure aggregation sums in.

A value ``x`` in ``[-clip, clip]`` is encoded as the integer ``round(x · 2^f)`` (``f = frac_bits``), stored in
two's complement as a ``uint64``.  Sums of encodings are taken modulo ``2^64``; as long as the true integer sum
lies in ``[-2^63, 2^63)`` the residue read back as a signed integer *is* the true sum, so decoding is exact in the
integer domain.  :meth:`FixedPoint.check_capacity` refuses, before any round, a number of contributors whose
clipped values could leave that interval: an overflowing sum is never wrapped silently.

Quantisation: rounding to the nearest multiple of the resolution ``2^-f`` moves each value by at most ``2^-f / 2``,
so a decoded sum of ``n`` values differs from the real sum by at most ``n · 2^-f / 2``
(:meth:`FixedPoint.sum_error_bound`), plus the float64 rounding of the decoded number itself (relative
``2^-53``).
"""
from __future__ import annotations

import numpy as np

from lpm_graph.errors import PrivacyConfigError, PrivacyError

__all__ = ["FixedPoint", "RING_BITS"]

RING_BITS = 64
_SIGNED_MAX = 2 ** (RING_BITS - 1) - 1  # the largest |sum| read back unambiguously as a signed 64-bit integer


class FixedPoint:
    """Fixed-point codec ``R -> Z_2^64`` with a stated clipping range.

    Args:
        frac_bits: fractional bits ``f``; the resolution (quantisation step) is ``2^-f``.
        clip: the largest magnitude accepted; values outside ``[-clip, clip]`` are refused by :meth:`encode`
            unless the caller asks for clipping (then they are clipped and counted in :attr:`n_clipped`).

    Attributes:
        resolution: ``2^-frac_bits``, the quantisation step.
        max_code: ``round(clip · 2^f)``, the largest magnitude of one encoded value.
        capacity: the largest number of clipped values whose sum cannot overflow the signed range of the ring.
        n_clipped: values clipped so far by ``encode(..., allow_clipping=True)``.

    Shapes:
        ``encode``: any float64 array ``[*]`` -> uint64 ``[*]``; ``decode_sum``: uint64 ``[*]`` -> float64 ``[*]``.
    """

    def __init__(self, frac_bits: int, clip: float):
        if isinstance(frac_bits, bool) or not isinstance(frac_bits, (int, np.integer)) or not 0 <= frac_bits <= 62:
            raise PrivacyConfigError(f"FixedPoint: frac_bits={frac_bits!r} must be an integer in [0, 62]")
        clip = float(clip)
        if not np.isfinite(clip) or clip <= 0:
            raise PrivacyConfigError(f"FixedPoint: clip={clip!r} must be a finite positive number")
        self.frac_bits = int(frac_bits)
        self.clip = clip
        self.resolution = 2.0 ** -self.frac_bits
        max_code = round(clip * 2 ** self.frac_bits)
        if max_code < 1:
            raise PrivacyConfigError(f"FixedPoint: clip={clip} is below the resolution 2^-{frac_bits}; every value "
                                     "would encode as 0 (raise clip or frac_bits)")
        if max_code > _SIGNED_MAX:
            raise PrivacyConfigError(f"FixedPoint: clip·2^frac_bits = {clip}·2^{frac_bits} does not fit in a signed "
                                     "64-bit integer; lower frac_bits or clip")
        self.max_code = int(max_code)
        self.capacity = _SIGNED_MAX // self.max_code
        self.n_clipped = 0

    def __repr__(self) -> str:
        return f"FixedPoint(frac_bits={self.frac_bits}, clip={self.clip})"

    def check_capacity(self, n: int, margin: int = 0) -> None:
        """Refuse a round of ``n`` contributors whose clipped values could overflow the ring (before the round).

        ``margin``: a further magnitude the sum may carry, in integer units (e.g. a bound on noise added to it)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise PrivacyError(f"FixedPoint.check_capacity: n={n!r} must be a positive integer (contributors)")
        if isinstance(margin, bool) or not isinstance(margin, (int, np.integer)) or margin < 0:
            raise PrivacyError(f"FixedPoint.check_capacity: margin={margin!r} must be a non-negative integer")
        if margin and int(n) * self.max_code + int(margin) > _SIGNED_MAX:
            raise PrivacyError(f"FixedPoint: a sum of {n} values in [-{self.clip}, {self.clip}] at 2^-{self.frac_bits} "
                               f"plus a margin of {margin} could overflow Z_2^64; lower frac_bits, clip or the margin")
        if n > self.capacity:
            raise PrivacyError(f"FixedPoint: a sum of {n} values in [-{self.clip}, {self.clip}] at 2^-{self.frac_bits} "
                               f"could overflow Z_2^64 (at most {self.capacity} contributors fit); lower frac_bits "
                               "or clip, or split the contributors into smaller groups")

    def sum_error_bound(self, n: int) -> float:
        """The largest quantisation error of a decoded sum of ``n`` values: ``n · 2^-frac_bits / 2``."""
        return n * self.resolution / 2

    def encode(self, x: np.ndarray, *, allow_clipping: bool = False) -> np.ndarray:
        """Encode float values as uint64 residues (two's complement of ``round(x · 2^f)``).

        Values outside ``[-clip, clip]`` raise :class:`PrivacyError` unless ``allow_clipping=True``, which clips
        them to the range and adds their number to :attr:`n_clipped`. NaN and infinities are always refused.
        """
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise PrivacyError(f"FixedPoint.encode: {int(np.sum(~np.isfinite(x)))} value(s) are NaN or infinite")
        outside = np.abs(x) > self.clip
        n_out = int(outside.sum())
        if n_out:
            if not allow_clipping:
                raise PrivacyError(f"FixedPoint.encode: {n_out} value(s) outside [-{self.clip}, {self.clip}] "
                                   f"(largest magnitude {float(np.abs(x).max())}); raise clip, or pass "
                                   "allow_clipping=True to clip them (they are counted in n_clipped)")
            x = np.clip(x, -self.clip, self.clip)
            self.n_clipped += n_out
        codes = np.rint(x * 2.0 ** self.frac_bits).astype(np.int64)
        # rint of a clipped value can exceed max_code by rounding clip·2^f itself; keep the stated range exactly
        np.clip(codes, -self.max_code, self.max_code, out=codes)
        return codes.view(np.uint64)

    def decode_sum(self, s: np.ndarray, n: int, *, margin: int = 0) -> np.ndarray:
        """Decode a sum (mod 2^64) of ``n`` encoded values back to float64.

        Refuses an ``n`` beyond :attr:`capacity` and a residue whose signed value exceeds ``n · max_code + margin``
        in magnitude (not a sum of ``n`` encodings: a wrong ``n`` or a corrupted sum). ``margin`` (integer units)
        admits a bounded addition to the sum, such as noise, as in :meth:`check_capacity`.
        """
        self.check_capacity(n, margin)
        s = np.asarray(s)
        if s.dtype != np.uint64:
            raise PrivacyError(f"FixedPoint.decode_sum: expected a uint64 array, got {s.dtype}")
        signed = s.view(np.int64)
        limit = int(n) * self.max_code + int(margin)
        if signed.size and (int(signed.max()) > limit or int(signed.min()) < -limit):
            worst = max(int(signed.max()), -int(signed.min()))
            raise PrivacyError(f"FixedPoint.decode_sum: a residue of magnitude {worst} cannot be "
                               f"a sum of {n} values clipped to {self.clip} (at most {limit}); wrong n or a "
                               "corrupted sum")
        return signed.astype(np.float64) * self.resolution
