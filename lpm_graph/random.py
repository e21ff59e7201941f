r"""Counter-based random numbers keyed by (seed, step, stream, agent uid).

Every random draw of a simulation is a pure function

.. math::

    u = \mathrm{U}(\text{seed}, t, \text{stream}, \text{uid}) \in (0, 1)

computed by hashing the key with the SplitMix64 finaliser (Steele, Lea and
Flood, *Fast splittable pseudorandom number generators*, OOPSLA 2014), a
bijective 64-bit mixer that passes BigCrush when applied to a counter.  Nothing
is drawn from a global stream, so

* the draw of an agent does not depend on where it sits in the node order, on
  the device, or on how the graph is split across processes (layout
  invariance);
* two runs that differ only in a policy read the same numbers for the same
  (step, stream, agent) — common random numbers — so outcome differences are
  the policy's, not noise;
* replaying a step (gradient checkpointing, resuming) needs no RNG bookkeeping.

The hashing is integer arithmetic on ``int64`` tensors (wrapping
multiplication, logical shifts emulated with masks), identical on CPU and CUDA.

Replicates ride along as columns: a generator built for ``R`` replicates
returns ``[N, R]`` draws, replicate ``r`` keyed by ``mix(seed, r)``.
"""
from __future__ import annotations

import zlib

import torch
from torch import Tensor

__all__ = ["CounterRNG", "splitmix64", "stream_id"]


def _signed(value: int) -> int:
    """Two's-complement reinterpretation of a 64-bit constant as int64."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_M1 = _signed(0xBF58476D1CE4E5B9)
_M2 = _signed(0x94D049BB133111EB)
_STEP_SALT = _signed(0xD1B54A32D192ED03)
_STREAM_SALT = _signed(0xABC98388FB8FAC03)
_MASK = {s: (1 << (64 - s)) - 1 for s in (30, 27, 31, 12, 41)}


def _shr(x: Tensor, s: int) -> Tensor:
    """Logical right shift of an int64 tensor (torch's ``>>`` is arithmetic)."""
    return (x >> s) & _MASK[s]


def splitmix64(x: Tensor) -> Tensor:
    r"""The SplitMix64 finaliser applied elementwise to an ``int64`` tensor.

    .. math::

        z \leftarrow (z \oplus (z \gg 30)) \cdot m_1,\quad
        z \leftarrow (z \oplus (z \gg 27)) \cdot m_2,\quad
        z \leftarrow z \oplus (z \gg 31)

    with wrapping 64-bit arithmetic.  A bijection on 64-bit integers.
    """
    z = x ^ _shr(x, 30)
    z = z * _M1
    z = z ^ _shr(z, 27)
    z = z * _M2
    return z ^ _shr(z, 31)


def _mix_int(value: int) -> int:
    """SplitMix64 of a Python int, matching :func:`splitmix64` bit for bit."""
    return int(splitmix64(torch.tensor([_signed(value + _GOLDEN)], dtype=torch.int64))[0])


def stream_id(name: str) -> int:
    """A stable integer id for a named random stream (CRC32 of the name)."""
    return zlib.crc32(name.encode("utf-8"))


class CounterRNG:
    r"""Uniform draws as a pure function of (seed, step, stream, uid).

    Args:
        uid (Tensor): stable agent ids, ``int64`` of shape ``[N]``, non-negative.
        seed (int): the base seed. (default: ``0``)
        replicates (int): number of replicate columns ``R``. (default: ``1``)

    The per-agent part of the key,
    ``mix(uid * golden + mix(mix(seed) + r))`` for replicate ``r``, is computed
    once at construction; a draw then costs two SplitMix64 rounds per element.

    Shapes:
        - **uid:** ``[N]``
        - **output of** :meth:`uniform`: ``[N, R]``
    """

    def __init__(self, uid: Tensor, seed: int = 0, replicates: int = 1):
        if not isinstance(uid, Tensor) or uid.dim() != 1 or uid.is_floating_point():
            raise TypeError(
                "CounterRNG: 'uid' must be a 1-D integer tensor of agent ids, "
                f"got {type(uid).__name__} {getattr(uid, 'dtype', '')} "
                f"{tuple(getattr(uid, 'shape', ()))}")
        if uid.numel() and int(uid.min()) < 0:
            raise ValueError(f"CounterRNG: agent ids must be non-negative, got min uid {int(uid.min())}")
        if replicates < 1:
            raise ValueError(f"CounterRNG: 'replicates' must be >= 1, got {replicates}")
        self.seed = int(seed)
        self.replicates = int(replicates)
        rep_keys = torch.tensor(
            [_mix_int(_mix_int(self.seed) + r) for r in range(self.replicates)],
            dtype=torch.int64, device=uid.device)
        self._base = splitmix64(uid.to(torch.int64).unsqueeze(1) * _GOLDEN + rep_keys)

    @property
    def device(self) -> torch.device:
        return self._base.device

    def to(self, device) -> "CounterRNG":
        other = object.__new__(CounterRNG)
        other.seed, other.replicates = self.seed, self.replicates
        other._base = self._base.to(device)
        return other

    def bits(self, step: int, stream: int | str) -> Tensor:
        """64 random bits per (agent, replicate) as ``int64`` of shape ``[N, R]``."""
        if isinstance(stream, str):
            stream = stream_id(stream)
        salt = _signed(_signed(int(step) * _STEP_SALT) ^ _signed(int(stream) * _STREAM_SALT))
        return splitmix64(splitmix64(self._base ^ salt) + _GOLDEN)

    def uniform(self, step: int, stream: int | str, dtype: torch.dtype = torch.float32) -> Tensor:
        r"""Uniform draws in the open interval ``(0, 1)``, shape ``[N, R]``.

        ``float32`` uses the top 23 bits, ``float64`` the top 52, so that
        :math:`(k + 1/2) / 2^b` is exact and never rounds to 0 or 1.
        """
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"CounterRNG.uniform: dtype must be torch.float32 or torch.float64, got {dtype}")
        nbits = 23 if dtype == torch.float32 else 52
        top = _shr(self.bits(step, stream), 64 - nbits)
        return (top.to(dtype) + 0.5) * (2.0 ** -nbits)
