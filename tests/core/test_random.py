"""The counter-based generator: bit-exact key schedule, uniformity, independence, layout invariance, node-type
keys and the refinement of float32 draws for rare events."""
from __future__ import annotations

import math
import zlib

import pytest
import torch

from lpm_graph.core.random import (CounterRNG, hash_words, refinement, splitmix64, stream_id, type_key,
                                   words_to_float32, words_to_float64)

MASK64 = (1 << 64) - 1
N = 100_000          # agents in the statistical tests
R = 2                # replicate columns -> N * R = 200k draws
SEED = 20240611


def ref_splitmix64(z: int) -> int:
    """SplitMix64's finaliser (Steele, Lea and Flood 2014) on unsigned Python ints."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def to_signed(v: int) -> int:
    v &= MASK64
    return v - (1 << 64) if v >> 63 else v


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a = a.flatten().double() - a.double().mean()
    b = b.flatten().double() - b.double().mean()
    return float((a * b).sum() / torch.sqrt((a * a).sum() * (b * b).sum()))


@pytest.fixture(scope="module")
def rng():
    return CounterRNG(torch.arange(N), seed=SEED, replicates=R)


@pytest.fixture(scope="module")
def u64(rng):
    return rng.uniform(0, "infection", torch.float64)


# --------------------------------------------------------------------------- range and shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniform_shape_dtype_and_open_interval(rng, dtype):
    u = rng.uniform(3, "infection", dtype)
    assert u.shape == (N, R)
    assert u.dtype == dtype
    assert bool((u > 0).all()) and bool((u < 1).all())


@pytest.mark.parametrize(("dtype", "nbits"), [(torch.float32, 23), (torch.float64, 52)])
def test_extreme_bits_stay_strictly_inside_unit_interval(dtype, nbits):
    # Force the raw bits to the corner cases: all zeros, all ones, only the
    # sign bit, everything but the sign bit.  A logical (not arithmetic) shift
    # keeps the top bits non-negative, and (k + 1/2) / 2^b is exact.
    g = CounterRNG(torch.arange(4))
    g.bits = lambda step, stream: torch.tensor([[0], [-1], [-(2**63)], [2**63 - 1]])
    u = g.uniform(0, 0, dtype)
    top = [0, 2**nbits - 1, 2 ** (nbits - 1), 2 ** (nbits - 1) - 1]
    expected = torch.tensor([[(k + 0.5) / 2**nbits] for k in top], dtype=torch.float64).to(dtype)
    assert torch.equal(u, expected)
    assert float(u.min()) > 0 and float(u.max()) < 1


def test_float32_uses_the_top_bits_of_the_float64_draw(rng):
    # Both read the top bits of the same 64-bit word: k32 = k64 >> (52 - 23).
    u32 = rng.uniform(5, "s", torch.float32).double()
    u64 = rng.uniform(5, "s", torch.float64)
    k32 = u32 * 2.0**23 - 0.5
    k64 = u64 * 2.0**52 - 0.5
    assert torch.equal(k32, k32.round()) and torch.equal(k64, k64.round())
    assert torch.equal(k32.long(), k64.long() >> 29)


# --------------------------------------------------------------------------- uniformity


def test_mean_and_variance(u64):
    n = u64.numel()
    # Var(U) = 1/12 -> SE(mean) = sqrt(1/(12 n)).
    assert abs(float(u64.mean()) - 0.5) < 5 * math.sqrt(1 / (12 * n))
    # Var((U - 1/2)^2) = E(U-1/2)^4 - (1/12)^2 = 1/80 - 1/144 = 1/180.
    var = float(((u64 - 0.5) ** 2).mean())
    assert abs(var - 1 / 12) < 5 * math.sqrt(1 / (180 * n))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chi_square_over_bins(rng, dtype):
    u = rng.uniform(1, "recovery", dtype)
    k, n = 100, u.numel()
    counts = torch.bincount((u.flatten().double() * k).long(), minlength=k).double()
    assert counts.numel() == k
    stat = float(((counts - n / k) ** 2 / (n / k)).sum())
    # chi2(k-1): mean k-1, sd sqrt(2(k-1)); too small is as suspicious as too big.
    assert abs(stat - (k - 1)) < 5 * math.sqrt(2 * (k - 1))


def test_kolmogorov_smirnov(u64):
    u = u64.flatten().sort().values
    n = u.numel()
    i = torch.arange(1, n + 1, dtype=torch.float64)
    d = max(float((i / n - u).max()), float((u - (i - 1) / n).max()))
    assert d < 1.63 / math.sqrt(n)  # 1% critical value of the KS statistic


def test_pairs_of_consecutive_steps_fill_the_square(rng):
    # Joint uniformity of (u_t, u_{t+1}) on a 10 x 10 grid: chi2 with 99 dof.
    a = rng.uniform(7, "infection", torch.float64).flatten()
    b = rng.uniform(8, "infection", torch.float64).flatten()
    k, n = 10, a.numel()
    cell = (a * k).long() * k + (b * k).long()
    counts = torch.bincount(cell, minlength=k * k).double()
    e = n / (k * k)
    stat = float(((counts - e) ** 2 / e).sum())
    assert abs(stat - (k * k - 1)) < 5 * math.sqrt(2 * (k * k - 1))


def test_every_output_bit_is_fair(rng):
    bits = rng.bits(0, "bits").flatten()[:50_000]
    n = bits.numel()
    ones = torch.stack([((bits >> s) & 1).sum() for s in range(64)]).double() / n
    # Bernoulli(1/2): SE = 0.5 / sqrt(n).
    assert float((ones - 0.5).abs().max()) < 5 * 0.5 / math.sqrt(n)


# --------------------------------------------------------------------------- purity and independence


def test_same_key_same_values_across_instances():
    uid = torch.tensor([0, 5, 17, 2**40, 123456789])
    a = CounterRNG(uid, seed=3, replicates=4)
    b = CounterRNG(uid.clone(), seed=3, replicates=4)
    assert torch.equal(a.uniform(11, "x", torch.float64), b.uniform(11, "x", torch.float64))
    assert torch.equal(a.bits(11, 9), b.bits(11, 9))
    # Calling again (other draws in between) does not advance anything.
    a.uniform(12, "y")
    assert torch.equal(a.uniform(11, "x", torch.float64), b.uniform(11, "x", torch.float64))


def _all_differ(a, b):
    # float64 draws collide with probability ~2^-52 each, i.e. never here.
    return bool((a != b).all())


def test_different_seed_step_stream_replicate_give_different_values(rng, u64):
    other_seed = CounterRNG(torch.arange(N), seed=SEED + 1, replicates=R).uniform(0, "infection", torch.float64)
    assert _all_differ(u64, other_seed)
    assert _all_differ(u64, rng.uniform(1, "infection", torch.float64))
    assert _all_differ(u64, rng.uniform(0, "recovery", torch.float64))
    assert _all_differ(u64[:, 0], u64[:, 1])


def test_correlations_vanish(rng, u64):
    # Under independence a Pearson correlation of n pairs has sd ~ 1/sqrt(n).
    n = u64.numel()
    bound = 5 / math.sqrt(n)
    assert abs(corr(u64, rng.uniform(0, "recovery", torch.float64))) < bound      # streams
    assert abs(corr(u64, rng.uniform(1, "infection", torch.float64))) < bound     # steps
    assert abs(corr(u64[:, 0], u64[:, 1])) < 5 / math.sqrt(N)                     # replicates
    assert abs(corr(u64[:-1], u64[1:])) < 5 / math.sqrt(n - R)                    # neighbouring uids
    assert abs(corr(rng.uniform(0, 0, torch.float64), rng.uniform(0, 1, torch.float64))) < bound  # stream 0 vs 1


def test_replicate_columns_do_not_depend_on_replicate_count():
    uid = torch.arange(1000)
    wide = CounterRNG(uid, seed=9, replicates=5).uniform(2, "s", torch.float64)
    for r in range(5):
        one = CounterRNG(uid, seed=9, replicates=r + 1).uniform(2, "s", torch.float64)
        assert torch.equal(one, wide[:, : r + 1])


def test_str_and_int_stream_ids_agree(rng):
    assert torch.equal(rng.uniform(4, "infection"), rng.uniform(4, stream_id("infection")))
    assert torch.equal(rng.bits(4, "infection"), rng.bits(4, stream_id("infection")))


def test_stream_id_is_stable_and_distinct():
    names = ["infection", "recovery", "progression", "testing", "infection "]
    ids = [stream_id(s) for s in names]
    assert ids == [stream_id(s) for s in names]
    assert len(set(ids)) == len(ids)
    assert all(isinstance(i, int) and 0 <= i < 2**32 for i in ids)


def test_large_step_and_stream_keys_are_accepted(rng):
    u = rng.uniform(10**15, 2**32 - 1, torch.float64)
    assert bool((u > 0).all() and (u < 1).all())
    assert _all_differ(u, rng.uniform(10**15 + 1, 2**32 - 1, torch.float64))


# --------------------------------------------------------------------------- layout invariance


def test_permuted_uids_give_permuted_draws():
    uid = torch.arange(0, 3 * 5000, 3)  # sparse, non-contiguous ids
    perm = torch.randperm(uid.numel(), generator=torch.Generator().manual_seed(0))
    base = CounterRNG(uid, seed=1, replicates=3)
    permuted = CounterRNG(uid[perm], seed=1, replicates=3)
    for dtype in (torch.float32, torch.float64):
        assert torch.equal(permuted.uniform(6, "infection", dtype), base.uniform(6, "infection", dtype)[perm])


def test_subset_of_agents_gets_the_same_draws():
    # Splitting a population across processes does not change anybody's draws.
    uid = torch.arange(2000)
    full = CounterRNG(uid, seed=4).uniform(2, "s", torch.float64)
    part = CounterRNG(uid[1500:], seed=4).uniform(2, "s", torch.float64)
    assert torch.equal(part, full[1500:])


def test_uid_integer_dtype_does_not_matter():
    uid = torch.arange(500)
    a = CounterRNG(uid, seed=2).uniform(0, "s", torch.float64)
    b = CounterRNG(uid.int(), seed=2).uniform(0, "s", torch.float64)
    assert torch.equal(a, b)


def test_to_same_device_keeps_draws(rng):
    moved = rng.to("cpu")
    assert moved.device == torch.device("cpu")
    assert (moved.seed, moved.replicates) == (rng.seed, rng.replicates)
    assert torch.equal(moved.uniform(3, "s"), rng.uniform(3, "s"))


# --------------------------------------------------------------------------- splitmix64


def test_splitmix64_is_injective_on_consecutive_ints():
    h = splitmix64(torch.arange(1_000_000, dtype=torch.int64))
    assert h.dtype == torch.int64
    assert torch.unique(h).numel() == 1_000_000


def test_splitmix64_matches_reference_implementation():
    g = torch.Generator().manual_seed(1)
    sample = torch.randint(-(2**63), 2**63 - 1, (2000,), dtype=torch.int64, generator=g)
    edges = torch.tensor([0, 1, -1, -(2**63), 2**63 - 1, 2**62, 12345], dtype=torch.int64)
    x = torch.cat([edges, sample])
    got = splitmix64(x).tolist()
    want = [to_signed(ref_splitmix64(v)) for v in x.tolist()]
    assert got == want


def test_splitmix64_published_vector():
    # The SplitMix64 generator seeded with 0 adds the golden gamma before
    # mixing; its first output is 0xE220A8397B1DCDAF.
    gamma = to_signed(0x9E3779B97F4A7C15)
    assert ref_splitmix64(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF
    assert int(splitmix64(torch.tensor([gamma]))[0]) == to_signed(0xE220A8397B1DCDAF)


def ref_mix(v: int) -> int:
    return ref_splitmix64(v + 0x9E3779B97F4A7C15)


def ref_bits(uid: int, seed: int, r: int, step: int, stream: int, lane: int = 0, kappa: int = 0) -> int:
    """The key schedule in unsigned Python ints: every run's draws depend on it,
    so a change (even to another good hash) silently changes all results.
    ``kappa`` is the node type's key (0: the schedule of version 0.1)."""
    gamma = 0x9E3779B97F4A7C15
    base = ref_splitmix64(uid * gamma + ref_mix(ref_mix(seed) + r) + kappa)
    salt = ref_mix(ref_mix(step) + stream + (lane << 32))
    return ref_splitmix64(base + salt)


def test_bits_and_uniform_match_reference_key_schedule():
    uid = [0, 1, 7, 2**31 + 5, 2**40 + 3]
    seed, reps = 12345, 3
    g = CounterRNG(torch.tensor(uid), seed=seed, replicates=reps)
    for step, stream in [(0, 0), (1, 2), (-1, stream_id("seed")), (365, stream_id("infection")),
                         (10**9, 2**32 - 1)]:
        want = [[ref_bits(u, seed, r, step, stream) for r in range(reps)] for u in uid]
        assert g.bits(step, stream).tolist() == [[to_signed(v) for v in row] for row in want]
        u = g.uniform(step, stream, torch.float64)
        assert u.tolist() == [[((v >> 12) + 0.5) / 2**52 for v in row] for row in want]
        # float32: lane 0 reads bits 41-63, lane 1 bits 9-31 of the same word
        for lane, shift in ((0, 41), (1, 9)):
            u = g.uniform(step, stream, torch.float32, lane=lane)
            assert u.double().tolist() == [[(((v >> shift) & (2**23 - 1)) + 0.5) / 2**23 for v in row]
                                           for row in want]
        # float64 lane 1 is the word of stream + 2^32
        want1 = [[ref_bits(u, seed, r, step, stream, lane=1) for r in range(reps)] for u in uid]
        u = g.uniform(step, stream, torch.float64, lane=1)
        assert u.tolist() == [[((v >> 12) + 0.5) / 2**52 for v in row] for row in want1]


# --------------------------------------------------------------------------- lanes and kernels


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniform_pair_is_lane_0_and_lane_1(rng, dtype):
    a, b = rng.uniform_pair(6, "infection", dtype)
    assert torch.equal(a, rng.uniform(6, "infection", dtype, lane=0))
    assert torch.equal(b, rng.uniform(6, "infection", dtype, lane=1))
    assert a.dtype == b.dtype == dtype and a.shape == b.shape == (N, R)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lanes_are_uniform_and_uncorrelated(rng, dtype):
    a, b = rng.uniform_pair(2, "onset", dtype)
    n = a.numel()
    assert abs(corr(a, b)) < 5 / math.sqrt(n)
    # joint uniformity of the two lanes on a 10 x 10 grid (chi2, 99 dof)
    k = 10
    cell = (a.flatten().double() * k).long() * k + (b.flatten().double() * k).long()
    counts = torch.bincount(cell, minlength=k * k).double()
    e = n / (k * k)
    stat = float(((counts - e) ** 2 / e).sum())
    assert abs(stat - (k * k - 1)) < 5 * math.sqrt(2 * (k * k - 1))
    # lane 1 is also independent of the neighbouring stream and step
    assert abs(corr(b, rng.uniform(3, "onset", dtype, lane=1))) < 5 / math.sqrt(n)


def test_float32_bit_placement_equals_integer_arithmetic(rng):
    # The eager path places bits in a float's mantissa; the compiled and
    # strided path converts the integer.  Both must give the same numbers.
    w = rng.bits(4, "x")
    for lane, shift in ((0, 41), (1, 9)):
        fast = words_to_float32(w, lane)
        arith = (((w >> shift) & (2**23 - 1)).to(torch.float32) + 0.5) * 2.0**-23
        strided = words_to_float32(torch.stack([w, w], -1)[..., 0], lane)
        assert not torch.stack([w, w], -1)[..., 0].is_contiguous()
        assert torch.equal(fast, arith) and torch.equal(strided, arith)


def test_tensor_salt_gives_the_same_words(rng):
    salt = CounterRNG.salt(9, "infection")
    assert torch.equal(hash_words(rng.base, torch.tensor(salt)), rng.bits(9, "infection"))


@pytest.mark.parametrize("lane", [2, -1])
def test_bad_lane_raises_value_error(rng, lane):
    with pytest.raises(ValueError, match="lane must be 0 or 1"):
        rng.uniform(0, "s", lane=lane)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("uid", [torch.arange(4.0), torch.arange(6).view(2, 3), [0, 1, 2]],
                         ids=["float", "2-D", "list"])
def test_bad_uid_raises_type_error(uid):
    with pytest.raises(TypeError, match="1-D integer tensor of agent ids"):
        CounterRNG(uid)


@pytest.mark.parametrize("replicates", [0, -2])
def test_bad_replicates_raises_value_error(replicates):
    with pytest.raises(ValueError, match=r"'replicates' must be >= 1"):
        CounterRNG(torch.arange(3), replicates=replicates)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64])
def test_unsupported_dtype_raises_type_error(dtype):
    with pytest.raises(TypeError, match="torch.float32 or torch.float64"):
        CounterRNG(torch.arange(3)).uniform(0, "s", dtype)


# --------------------------------------------------------------------------- devices


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_bit_for_bit():
    uid = torch.arange(0, 7 * 20_000, 7)
    cpu = CounterRNG(uid, seed=SEED, replicates=3)
    gpu = CounterRNG(uid.cuda(), seed=SEED, replicates=3)
    moved = cpu.to("cuda")
    for step, stream in [(0, "infection"), (17, "recovery"), (10**12, 2**32 - 1)]:
        assert torch.equal(gpu.bits(step, stream).cpu(), cpu.bits(step, stream))
        assert torch.equal(moved.bits(step, stream).cpu(), cpu.bits(step, stream))
        for dtype in (torch.float32, torch.float64):
            for lane in (0, 1):
                assert torch.equal(gpu.uniform(step, stream, dtype, lane).cpu(), cpu.uniform(step, stream, dtype, lane))
            pair_gpu, pair_cpu = gpu.uniform_pair(step, stream, dtype), cpu.uniform_pair(step, stream, dtype)
            assert all(torch.equal(a.cpu(), b) for a, b in zip(pair_gpu, pair_cpu))
    x = torch.randint(-(2**63), 2**63 - 1, (10_000,), dtype=torch.int64)
    assert torch.equal(splitmix64(x.cuda()).cpu(), splitmix64(x))


def test_negative_uids_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        CounterRNG(torch.tensor([0, -4, 2]))


# --------------------------------------------------------------------------- node types


def test_person_keeps_the_version_0_1_schedule():
    uid = torch.tensor([0, 3, 2**33 + 1])
    explicit = CounterRNG(uid, seed=77, replicates=2, node_type="person")
    default = CounterRNG(uid, seed=77, replicates=2)
    assert type_key("person") == 0
    for step, stream in [(0, 5), (-1, stream_id("seed")), (40, stream_id("infection"))]:
        want = [[to_signed(ref_bits(u, 77, r, step, stream)) for r in range(2)] for u in uid.tolist()]
        assert explicit.bits(step, stream).tolist() == want
        assert torch.equal(default.bits(step, stream), explicit.bits(step, stream))


def test_other_node_types_are_keyed_by_their_name():
    uid = torch.tensor([0, 3, 2**33 + 1])
    g = CounterRNG(uid, seed=77, replicates=2, node_type="firm")
    kappa = ref_mix(zlib.crc32(b"firm"))
    assert to_signed(kappa) == type_key("firm")
    want = [[to_signed(ref_bits(u, 77, r, 9, 4, kappa=kappa)) for r in range(2)] for u in uid.tolist()]
    assert g.bits(9, 4).tolist() == want
    assert g.node_type == "firm" and g.to("cpu").node_type == "firm"
    assert torch.equal(g.to("cpu").bits(9, 4), g.bits(9, 4))


def test_node_types_with_the_same_uids_draw_different_uncorrelated_numbers():
    uid = torch.arange(N)
    people = CounterRNG(uid, seed=SEED, replicates=R).uniform(0, "s", torch.float64)
    firms = CounterRNG(uid, seed=SEED, replicates=R, node_type="firm").uniform(0, "s", torch.float64)
    shops = CounterRNG(uid, seed=SEED, replicates=R, node_type="retailer").uniform(0, "s", torch.float64)
    for a, b in ((people, firms), (people, shops), (firms, shops)):
        assert _all_differ(a, b)
        assert abs(corr(a, b)) < 5 / math.sqrt(a.numel())  # sd of a null Pearson correlation: 1/sqrt(n)
    # each node type's draws are uniform on their own (mean within 5 standard errors of 1/2)
    assert abs(float(firms.mean()) - 0.5) < 5 * math.sqrt(1 / (12 * firms.numel()))


# --------------------------------------------------------------------------- refinement of float32 draws

TAIL_BITS = [*range(0, 9), *range(32, 41)]     # read by neither float32 lane
LANE_BITS = [*range(9, 32), *range(41, 64)]    # lane 1: bits 9-31, lane 0: bits 41-63


def ref_refinement(v: int) -> float:
    """j = 2^-24 - (s + 1/2) 2^-41 with s the 18 tail bits (bits 32-40 above bits 0-8)."""
    v &= MASK64
    s = (((v >> 32) & 511) << 9) | (v & 511)
    return 2.0**-24 - (s + 0.5) * 2.0**-41


def test_refinement_matches_the_formula_and_lies_inside_half_a_cell(rng):
    w = rng.bits(3, "refine")
    j = refinement(w)
    assert j.dtype == torch.float32 and j.shape == w.shape
    assert j.double().flatten()[:2000].tolist() == [ref_refinement(v) for v in w.flatten()[:2000].tolist()]
    assert float(j.min()) > -(2.0**-24) and float(j.max()) < 2.0**-24
    # the extremes s = 0 and s = 2^18 - 1 are half a sub-cell inside the cell's half-width
    ends = refinement(torch.tensor([0, (511 << 32) | 511], dtype=torch.int64)).double().tolist()
    assert ends == [2.0**-24 - 2.0**-42, -(2.0**-24) + 2.0**-42]
    # strided words (the integer-arithmetic path) give the same offsets
    strided = torch.stack([w, w], -1)[..., 0]
    assert not strided.is_contiguous() and torch.equal(refinement(strided), j)


def test_refinement_is_uniform_over_its_grid(rng):
    # s = (2^-24 - j) 2^41 - 1/2 is uniform on {0, ..., 2^18 - 1}: mean (2^18 - 1)/2, sd sqrt((2^36 - 1)/12);
    # the sample mean lies within 5 standard errors of it
    s = ((2.0**-24 - refinement(rng.bits(5, "refine")).double()) * 2.0**41 - 0.5).flatten()
    assert torch.equal(s, s.round())
    n, k = s.numel(), 2.0**18
    sd = math.sqrt((k * k - 1) / 12)
    assert abs(float(s.mean()) - (k - 1) / 2) < 5 * sd / math.sqrt(n)


def _flip(words: torch.Tensor, bit: int) -> torch.Tensor:
    return words ^ torch.tensor(to_signed(1 << bit), dtype=torch.int64)


def test_refinement_reads_only_the_bits_the_lanes_do_not(rng):
    w = rng.bits(7, "refine").flatten()[:512].contiguous()
    j = refinement(w)
    lanes = (words_to_float32(w, 0), words_to_float32(w, 1))
    for bit in LANE_BITS:
        flipped = _flip(w, bit)
        assert torch.equal(refinement(flipped), j), bit
    for bit in TAIL_BITS:
        flipped = _flip(w, bit)
        assert bool((refinement(flipped) != j).all()), bit
        # ... and the lanes do not read them
        assert torch.equal(words_to_float32(flipped, 0), lanes[0]) and torch.equal(words_to_float32(flipped, 1),
                                                                                   lanes[1]), bit
    # a tail bit moves j by its weight in s times the sub-cell 2^-41
    for bit, weight in ((0, 1), (8, 2**8), (32, 2**9), (40, 2**17)):
        delta = (refinement(_flip(w, bit)).double() - j.double()).abs()
        assert torch.equal(delta, torch.full_like(delta, weight * 2.0**-41)), bit


def test_float64_draw_reads_the_top_52_bits(rng):
    w = rng.bits(2, "x")
    assert torch.equal(words_to_float64(w), rng.uniform(2, "x", torch.float64))


def test_sparse_refinement_decides_like_the_dense_offsets_below_the_cut():
    # Refinement.fire refines only uniforms below REFINE_CUT (the only ones that can decide p < 2^-12) and
    # keeps u < p above it; below the cut it must equal the dense comparison u - j < p exactly.
    from lpm_graph.core.random import REFINE_CUT, Refinement, refinement

    g = torch.Generator().manual_seed(7)
    words = torch.randint(-(2**62), 2**62, (400_000, 2), generator=g, dtype=torch.int64) * 2 + 1
    u = words_to_float32(words, 0)
    p = torch.tensor([1e-9, 1e-6, 3e-5, 0.3])[torch.randint(0, 4, (400_000, 1), generator=g)].expand_as(u)
    fired = Refinement(words).fire(p, u)
    dense = (u - p) < refinement(words)
    below = u < REFINE_CUT
    assert below.any() and torch.equal(fired[below], dense[below])
    assert torch.equal(fired[~below], (u < p)[~below])
    # a per-group probability broadcast from [G] gives the same events as the expanded one
    q = torch.full((1, 2), 1e-4)
    assert torch.equal(Refinement(words).fire(q, u), Refinement(words).fire(q.expand_as(u), u))
