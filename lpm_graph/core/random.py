r"""Counter-based random numbers keyed by (seed, replicate, step, stream, node type, uid).

Every random draw of a simulation is a pure function

.. math::

    u = \mathrm{U}(\text{seed}, r, t, \text{stream}, \text{node type}, \text{uid}) \in (0, 1)

computed by hashing the key with the SplitMix64 finaliser (Steele, Lea and
Flood, *Fast splittable pseudorandom number generators*, OOPSLA 2014), a
bijective 64-bit mixer that passes BigCrush when applied to a counter.  Nothing
is drawn from a global stream, so

* the draw of a node does not depend on where it sits in the node order, on
  the device, or on how the graph is split across processes (layout
  invariance);
* two runs that differ only in a policy read the same numbers for the same
  (step, stream, node) — common random numbers — so outcome differences are
  the policy's, not noise;
* replaying a step (gradient checkpointing, resuming) needs no RNG bookkeeping.

Key schedule (``mix(v) = splitmix64(v + golden)``, all arithmetic mod
:math:`2^{64}`):

.. math::

    b_{i,r} &= \mathrm{splitmix64}(\mathrm{uid}_i \cdot \text{golden}
               + \mathrm{mix}(\mathrm{mix}(\text{seed}) + r) + \kappa_\text{type})
               && \text{once per run and node type} \\
    s_{t,\text{stream}} &= \mathrm{mix}(\mathrm{mix}(t) + \text{stream})
               && \text{a Python int per draw} \\
    w &= \mathrm{splitmix64}(b_{i,r} + s_{t,\text{stream}})
               && \text{one round per element}

— the SplitMix64 generator's own construction (one finaliser round of a
seed plus an offset), with the offset a hash of (step, stream) instead of a
counter.  The node-type key is :math:`\kappa = \mathrm{mix}(\mathrm{crc32}(\text{type}))`
for every node type except ``person``, whose key is 0: the schedule of
version 0.1, which knew only people, so that its streams keep their values.
A ``float64`` draw reads the top 52 bits of :math:`w`; a ``float32`` draw
needs 23 bits, so one word serves two streams: lane 0 reads bits 41-63,
lane 1 bits 9-31 (:meth:`CounterRNG.uniform_pair`).  Per element a float32
pair costs one add, one SplitMix64 round and the bit extraction.

**Rare probabilities.** A 23-bit uniform cannot decide an event of
probability below :math:`2^{-24} \approx 6\cdot 10^{-8}`, and decides one of
probability :math:`p` with an error of up to half a cell of :math:`2^{-23}`,
i.e. a relative bias of :math:`1/(2^{24} p)` (1.2% at :math:`p = 10^{-5}`).
The remaining 18 bits of the word (9-bit tails of both halves) refine the
cell: :func:`refinement` turns them into an offset :math:`j` within the cell
so that :math:`u - j` is a uniform on a grid of :math:`2^{-41}`, and
:meth:`~lpm_graph.core.sampling.Sampler.bernoulli` fires when
:math:`u - p < j`.  An event of probability :math:`p` then fires with
probability :math:`p` to within :math:`2^{-42}` absolute — a relative error
below :math:`3\cdot 10^{-4}` at :math:`p = 10^{-9}`.  The two lanes of a
word share these bits; their events are dependent only when both lanes fall
in the cell of their own probability at once (probability :math:`2^{-46}`).
``float64`` draws have 52 bits and need no refinement.

The hashing is integer arithmetic on ``int64`` tensors (wrapping
multiplication, logical shifts emulated with masks), identical on CPU and CUDA.

Replicates ride along as columns: a generator built for ``R`` replicates
returns ``[N, R]`` draws, replicate ``r`` keyed by ``mix(seed, r)``.
"""
from __future__ import annotations

import sys
import zlib

import torch
from torch import Tensor

__all__ = ["CounterRNG", "splitmix64", "stream_id", "type_key", "hash_words", "words_to_float32",
           "words_to_float64", "refinement", "Refinement", "REFINE_CUT", "uniform_from_salts", "uniform_pair_from_salts"]


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
    """Logical right shift of an int64 tensor (torch's ``>>`` is arithmetic); one new tensor."""
    out = x >> s
    out &= _MASK[s]
    return out


def splitmix64(x: Tensor) -> Tensor:
    r"""The SplitMix64 finaliser applied elementwise to an ``int64`` tensor.

    .. math::

        z \leftarrow (z \oplus (z \gg 30)) \cdot m_1,\quad
        z \leftarrow (z \oplus (z \gg 27)) \cdot m_2,\quad
        z \leftarrow z \oplus (z \gg 31)

    with wrapping 64-bit arithmetic.  A bijection on 64-bit integers.
    ``x`` is not modified.
    """
    t = _shr(x, 30)
    return _splitmix64_tail_(t ^ x, t)


def _splitmix64_tail_(z: Tensor, t: Tensor) -> Tensor:
    """SplitMix64 after its first xorshift, in place on ``z`` with ``t`` as scratch (same shape):
    two buffers instead of a new tensor per operation (~40% faster eagerly on 1M agents)."""
    z *= _M1
    torch.bitwise_right_shift(z, 27, out=t)
    t &= _MASK[27]
    z ^= t
    z *= _M2
    torch.bitwise_right_shift(z, 31, out=t)
    t &= _MASK[31]
    z ^= t
    return z


def _splitmix64_(z: Tensor) -> Tensor:
    """SplitMix64 in place on ``z`` (a fresh tensor the caller owns)."""
    t = _shr(z, 30)
    z ^= t
    return _splitmix64_tail_(z, t)


def _mix_int(value: int) -> int:
    """``splitmix64(value + golden)`` of a Python int, matching :func:`splitmix64` bit for bit."""
    mask = (1 << 64) - 1
    z = (value + _GOLDEN) & mask
    z = ((z ^ (z >> 30)) * _M1) & mask
    z = ((z ^ (z >> 27)) * _M2) & mask
    return _signed(z ^ (z >> 31))


def stream_id(name: str) -> int:
    """A stable integer id for a named random stream (CRC32 of the name)."""
    return zlib.crc32(name.encode("utf-8"))


#: the node type whose key is 0 (the only node type of the version-0.1 schedule)
PERSON = "person"


def type_key(node_type: str) -> int:
    r"""The node-type part :math:`\kappa` of the per-node key: 0 for ``person``, else ``mix(crc32(type))``."""
    return 0 if node_type == PERSON else _mix_int(stream_id(node_type))


def hash_words(base: Tensor, salt: int | Tensor) -> Tensor:
    r"""The 64-bit words :math:`\mathrm{splitmix64}(b + s)` of a per-agent base and a per-draw salt.

    ``salt`` may be a Python int (a signed 64-bit value) or a 0-dim ``int64``
    tensor (so that a compiled kernel is not specialised on the step).
    """
    return _splitmix64_(base + salt)


_MANT32 = (1 << 23) - 1
_ONE32_BITS = 0x3F800000                 # bit pattern of 1.0f
_HALF_ULP_BELOW_ONE = 1.0 - 2.0 ** -24   # exact in float32
# index of the high 32-bit half of an int64 viewed as two int32
_HIGH = 1 if sys.byteorder == "little" else 0


def words_to_float32(words: Tensor, lane: int = 0) -> Tensor:
    r"""``float32`` uniforms :math:`(k + 1/2)\,2^{-23}` from 64-bit words.

    Lane 0 takes :math:`k` from bits 41-63 (the top of the word), lane 1 from
    bits 9-31 (the top of the low half), so one word serves two independent
    draws.  Eagerly, the two halves are read as ``int32`` and the 23 bits are
    placed in the mantissa of a float in :math:`[1, 2)`; subtracting
    :math:`1 - 2^{-24}` is exact (Sterbenz).  Under ``torch.compile`` the same
    values come from plain integer arithmetic, which fuses.
    """
    shift = 41 if lane == 0 else 9
    if torch.compiler.is_compiling() or not words.is_contiguous():
        k = (words >> shift) & _MANT32
        return (k.to(torch.float32) + 0.5) * (2.0 ** -23)
    half = words.view(torch.int32)[..., _HIGH::2] if lane == 0 else words.view(torch.int32)[..., 1 - _HIGH::2]
    m = half >> 9
    m &= _MANT32
    m |= _ONE32_BITS
    u = m.view(torch.float32)
    u -= _HALF_ULP_BELOW_ONE
    return u


def words_to_float64(words: Tensor) -> Tensor:
    r"""``float64`` uniforms :math:`(k + 1/2)\,2^{-52}` from the top 52 bits of 64-bit words."""
    return (_shr(words, 12).to(torch.float64) + 0.5) * (2.0 ** -52)


_TAIL9 = (1 << 9) - 1
#: 2^-24 - 2^-42: centre of a 2^-23 cell minus half a 2^-41 sub-cell
_REFINE_OFFSET = 2.0 ** -24 - 2.0 ** -42


#: a lane whose uniform is below this may decide a probability below 2^-12 (the cut, plus a cell)
REFINE_CUT = 2.0 ** -12 + 2.0 ** -23


class Refinement:
    r"""The sub-cell offsets of the ``float32`` lanes of a word tensor, computed only where they matter.

    :meth:`fire` decides ``u - j < p`` (:func:`refinement`) for the elements
    whose uniform lies below :data:`REFINE_CUT` — the only ones that can
    decide a probability below :math:`2^{-12}` — and ``u < p`` elsewhere,
    where the 23-bit uniform's relative bias is below :math:`2.5\cdot
    10^{-4}`.  About one element in 4096 is refined, so eagerly this costs
    a comparison and a ``nonzero`` instead of the seven passes of the dense
    offsets; under ``torch.compile`` the dense offsets fuse into the kernel
    and are used instead (exact everywhere).
    """

    def __init__(self, words: Tensor):
        self.words = words

    def fire(self, p: Tensor, u: Tensor) -> Tensor:
        """Boolean events of probability ``p`` (broadcast to ``u``) for the lane uniforms ``u``."""
        if torch.compiler.is_compiling():
            return (u - p) < refinement(self.words)
        hard = u < p
        where = (u < REFINE_CUT).nonzero(as_tuple=True)
        if where[0].numel():
            pick = p.expand_as(u)[where] if p.dim() else p
            hard[where] = (u[where] - pick) < refinement(self.words[where])
        return hard


def refinement(words: Tensor) -> Tensor:
    r"""The sub-cell offsets :math:`j \in (-2^{-24}, 2^{-24})` of the ``float32`` lanes of 64-bit words.

    From the 18 bits that neither lane reads (bits 32-40 and 0-8),
    :math:`s \in [0, 2^{18})`, :math:`j = 2^{-24} - (s + 1/2)\,2^{-41}`.
    A lane's uniform :math:`u = (k + 1/2)\,2^{-23}` (:func:`words_to_float32`)
    and :math:`j` together stand for the 41-bit uniform :math:`u - j`, so an
    event fires exactly when :math:`u - p < j` (module docstring).  Shared by
    both lanes of a word.
    """
    if torch.compiler.is_compiling() or not words.is_contiguous():
        s = (((words >> 32) & _TAIL9) << 9) | (words & _TAIL9)
        return _REFINE_OFFSET - s.to(torch.float32) * (2.0 ** -41)
    halves = words.view(torch.int32)
    s = halves[..., _HIGH::2] & _TAIL9
    s <<= 9
    s |= halves[..., 1 - _HIGH::2] & _TAIL9
    j = s.to(torch.float32)
    j *= -(2.0 ** -41)
    j += _REFINE_OFFSET
    return j


def _check_dtype_lane(dtype: torch.dtype, lane: int) -> None:
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"CounterRNG.uniform: dtype must be torch.float32 or torch.float64, got {dtype}")
    if lane not in (0, 1):
        raise ValueError(f"CounterRNG.uniform: lane must be 0 or 1, got {lane!r}")


class CounterRNG:
    r"""Uniform draws as a pure function of (seed, replicate, step, stream, node type, uid).

    Args:
        uid (Tensor): stable node ids, ``int64`` of shape ``[N]``, non-negative.
        seed (int): the base seed. (default: ``0``)
        replicates (int): number of replicate columns ``R``. (default: ``1``)
        node_type (str): the node type the ids belong to; keys the draws
            (:func:`type_key`), so that two node types with the same ids draw
            different numbers. (default: ``"person"``)

    The per-agent part of the key, :math:`b_{i,r}` (module docstring), is
    computed once at construction; a draw then costs one SplitMix64 round per
    element, and a pair of ``float32`` draws the same (:meth:`uniform_pair`).

    Shapes:
        - **uid:** ``[N]``
        - **output of** :meth:`uniform`, :meth:`bits`: ``[N, R]``
    """

    def __init__(self, uid: Tensor, seed: int = 0, replicates: int = 1, node_type: str = PERSON):
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
        self.node_type = str(node_type)
        kappa = type_key(self.node_type)
        rep_keys = torch.tensor(
            [_signed(_mix_int(_mix_int(self.seed) + r) + kappa) for r in range(self.replicates)],
            dtype=torch.int64, device=uid.device)
        self._base = splitmix64(uid.to(torch.int64).unsqueeze(1) * _GOLDEN + rep_keys)

    @property
    def device(self) -> torch.device:
        return self._base.device

    @property
    def base(self) -> Tensor:
        """The per-(agent, replicate) part of the key, ``int64 [N, R]`` (computed once)."""
        return self._base

    def to(self, device) -> "CounterRNG":
        other = object.__new__(CounterRNG)
        other.seed, other.replicates, other.node_type = self.seed, self.replicates, self.node_type
        other._base = self._base.to(device)
        return other

    @staticmethod
    def salt(step: int, stream: int | str, lane: int = 0) -> int:
        r"""The per-draw part of the key, :math:`\mathrm{mix}(\mathrm{mix}(t) + s)`, as a signed 64-bit int.

        ``lane=1`` of a ``float64`` draw keys stream :math:`s + 2^{32}` (see :meth:`uniform`).
        """
        if isinstance(stream, str):
            stream = stream_id(stream)
        return _mix_int(_mix_int(int(step)) + int(stream) + (int(lane) << 32))

    def bits(self, step: int, stream: int | str) -> Tensor:
        """64 random bits per (agent, replicate) as ``int64`` of shape ``[N, R]``."""
        return hash_words(self._base, self.salt(step, stream))

    def uniform(self, step: int, stream: int | str, dtype: torch.dtype = torch.float32, lane: int = 0) -> Tensor:
        r"""Uniform draws in the open interval ``(0, 1)``, shape ``[N, R]``.

        ``float32`` lane 0 uses the top 23 bits of :meth:`bits`, lane 1 the
        top 23 bits of its low 32-bit half; ``float64`` uses the top 52 bits
        (lane 1: of stream :math:`s + 2^{32}`), so that :math:`(k + 1/2) / 2^b`
        is exact and never rounds to 0 or 1.
        """
        _check_dtype_lane(dtype, lane)
        if dtype == torch.float64:
            words = self.bits(step, stream) if lane == 0 else hash_words(self._base, self.salt(step, stream, 1))
            return words_to_float64(words)
        return words_to_float32(self.bits(step, stream), lane)

    def uniform_refined(self, step: int, stream: int | str, dtype: torch.dtype = torch.float32
                        ) -> tuple[Tensor, "Refinement | None"]:
        """Lane 0 of :meth:`uniform` and its :class:`Refinement` for an exact rare event (module
        docstring): ``(u, r)``, ``r`` ``None`` in ``float64``."""
        return uniform_from_salts(self._base, self.pair_salts(step, stream, dtype), dtype, refine=True)

    def uniform_pair(self, step: int, stream: int | str, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """Lanes 0 and 1 of :meth:`uniform`: two independent draws, from one hash in ``float32``."""
        return uniform_pair_from_salts(self._base, self.pair_salts(step, stream, dtype), dtype)

    def pair_salts(self, step: int, stream: int | str, dtype: torch.dtype = torch.float32) -> Tensor:
        """The salts of :meth:`uniform_pair` as an ``int64`` tensor on the generator's device
        (one salt for ``float32``, two for ``float64``): the input of
        :func:`uniform_pair_from_salts`, e.g. inside a compiled kernel."""
        _check_dtype_lane(dtype, 0)
        lanes = (0,) if dtype == torch.float32 else (0, 1)
        return torch.tensor([self.salt(step, stream, lane) for lane in lanes], dtype=torch.int64, device=self.device)


def uniform_from_salts(base: Tensor, salts: Tensor, dtype: torch.dtype = torch.float32,
                       refine: bool = False) -> Tensor | tuple[Tensor, Tensor | None]:
    """Lane 0 of :func:`uniform_pair_from_salts` alone (one hash, lane 1 not extracted).

    With ``refine``, returns ``(u, r)``: the uniforms and their
    :class:`Refinement` (``None`` in ``float64``, whose 52 bits need none).
    """
    w = hash_words(base, salts[0])
    u = words_to_float32(w, 0) if dtype == torch.float32 else words_to_float64(w)
    if not refine:
        return u
    return u, Refinement(w) if dtype == torch.float32 else None


def uniform_pair_from_salts(base: Tensor, salts: Tensor, dtype: torch.dtype = torch.float32,
                            refine: bool = False) -> tuple:
    """Lanes 0 and 1 of a draw from its salts (:meth:`CounterRNG.pair_salts`): a pure tensor function.

    With ``refine``, returns ``(u0, u1, r)`` with the :class:`Refinement` the
    two ``float32`` lanes share (``None`` in ``float64``).
    """
    if dtype == torch.float32:
        w = hash_words(base, salts[0])
        pair = words_to_float32(w, 0), words_to_float32(w, 1)
        return (*pair, Refinement(w)) if refine else pair
    pair = words_to_float64(hash_words(base, salts[0])), words_to_float64(hash_words(base, salts[1]))
    return (*pair, None) if refine else pair
