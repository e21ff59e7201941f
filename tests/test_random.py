"""Tests for the counter-based generator (lpm_graph.random)."""
from __future__ import annotations

import math

import pytest
import torch

from lpm_graph.random import CounterRNG, hash_words, splitmix64, stream_id, words_to_float32

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


def ref_bits(uid: int, seed: int, r: int, step: int, stream: int, lane: int = 0) -> int:
    """The key schedule in unsigned Python ints: every run's draws depend on it,
    so a change (even to another good hash) silently changes all results."""
    gamma = 0x9E3779B97F4A7C15

    def mix(v):
        return ref_splitmix64(v + gamma)

    base = ref_splitmix64(uid * gamma + mix(mix(seed) + r))
    salt = mix(mix(step) + stream + (lane << 32))
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
