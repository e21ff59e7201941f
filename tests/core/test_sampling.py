"""Discrete events: hard values forward, surrogate gradients backward; rare probabilities; categorical,
binomial and Poisson draws.

Statistical checks allow 5 standard errors of the estimate (stated at each), so a correct sampler fails
one of them with probability below 1e-6; chi-square statistics are compared with their upper 1e-4 quantile.
"""
from __future__ import annotations

import math

import pytest
import torch

from lpm_graph.core.random import CounterRNG, refinement, words_to_float32
from lpm_graph.core.sampling import EXACT_VARIANCE, Sampler
from lpm_graph.errors import ConfigError

F64 = torch.float64


def chi2_critical(dof: int, alpha: float = 1e-4) -> float:
    r"""Upper ``alpha`` quantile of chi-square with an even number of degrees of freedom ``2m``, from its
    survival function :math:`e^{-x/2}\sum_{i<m} (x/2)^i / i!` by bisection."""
    assert dof % 2 == 0

    def sf(x):
        return math.exp(-x / 2) * sum((x / 2) ** i / math.factorial(i) for i in range(dof // 2))

    lo, hi = 0.0, 10.0 * dof + 100.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sf(mid) > alpha else (lo, mid)
    return hi


def chi2_stat(counts: torch.Tensor, expected: torch.Tensor) -> float:
    return float(((counts - expected) ** 2 / expected).sum())


def uniforms(n: int, columns: int = 1, step: int = 0, stream: str = "test", dtype=F64, seed: int = 1):
    return CounterRNG(torch.arange(n), seed=seed, replicates=columns).uniform(step, stream, dtype)


def test_chi2_critical_value_of_the_closed_form():
    # chi2(2) is exponential with mean 2: its 1e-4 quantile is -2 log(1e-4)
    assert math.isclose(chi2_critical(2), -2 * math.log(1e-4), rel_tol=1e-9)
    assert 23.4 < chi2_critical(4) < 23.6  # tables: 23.51


# --------------------------------------------------------------------------- Bernoulli


@pytest.mark.parametrize("surrogate", ["straight_through", "gumbel"])
def test_forward_is_hard_with_the_right_rate(surrogate):
    n, p = 100_000, 0.3
    u = uniforms(n, dtype=torch.float32)
    prob = torch.full((n, 1), p, requires_grad=True)
    h = Sampler("stochastic", surrogate, 0.1)(prob, u)
    assert set(h.detach().unique().tolist()) == {0.0, 1.0}
    assert abs(float(h.detach().mean()) - p) < 5 * math.sqrt(p * (1 - p) / n)  # 5 SE of a binomial proportion


def test_hard_event_is_u_below_p():
    u = torch.tensor([0.1, 0.3, 0.5, 0.7])
    assert Sampler()(torch.full((4,), 0.5), u).tolist() == [1.0, 1.0, 0.0, 0.0]


def test_straight_through_gradient_is_one():
    u = torch.rand(1000, 1, generator=torch.Generator().manual_seed(0))
    p = torch.full((1000, 1), 0.4, requires_grad=True)
    Sampler("stochastic", "straight_through")(p, u).sum().backward()
    assert torch.equal(p.grad, torch.ones_like(p))


def test_gumbel_gradient_matches_the_relaxation():
    u = torch.tensor([[0.2], [0.5], [0.9]], dtype=F64)
    p = torch.full((3, 1), 0.4, dtype=F64, requires_grad=True)
    tau = 0.5
    Sampler("stochastic", "gumbel", tau)(p, u).sum().backward()
    q = p.detach().clone().requires_grad_()
    torch.sigmoid((torch.logit(q) - torch.logit(u)) / tau).sum().backward()
    assert torch.allclose(p.grad, q.grad, rtol=1e-14, atol=0)
    # the hard value is the zero-temperature limit of the relaxation
    assert torch.equal(Sampler("stochastic", "gumbel", tau)(p, u).detach(), (u < 0.4).double())


def test_gumbel_is_finite_at_probability_zero_and_one():
    u = torch.rand(10, 1, generator=torch.Generator().manual_seed(1))
    p = torch.tensor([0.0, 1.0] * 5).view(10, 1).requires_grad_()
    Sampler("stochastic", "gumbel", 0.1)(p, u).sum().backward()
    assert torch.isfinite(p.grad).all()


def test_expected_mode_returns_the_probability():
    p = torch.rand(5, 2)
    assert torch.equal(Sampler("expected")(p, None), p)
    assert not Sampler("expected").stochastic and Sampler().stochastic


def test_bad_settings_name_the_field():
    with pytest.raises(ConfigError, match="model.mode"):
        Sampler("random")
    with pytest.raises(ConfigError, match="model.surrogate"):
        Sampler("stochastic", "reinforce")
    with pytest.raises(ConfigError, match="model.temperature"):
        Sampler("stochastic", "gumbel", 0.0)


# --------------------------------------------------------------------------- rare probabilities (float32)

CELL = 2.0**-23   # the width of a float32 lane's cell
TAIL = 2**18      # sub-cells of the refinement


@pytest.fixture(scope="module")
def words():
    """10^7 words of 64 random bits (2 * 10^6 agents x 5 replicates)."""
    return CounterRNG(torch.arange(2_000_000), seed=3, replicates=5).bits(0, "rare")


def _int64(bits: int) -> torch.Tensor:
    """A 64-bit pattern as an int64 scalar tensor (two's complement)."""
    bits &= (1 << 64) - 1
    return torch.tensor(bits - (1 << 64) if bits >> 63 else bits, dtype=torch.int64)


def _with_lane(words: torch.Tensor, lane: int, k) -> torch.Tensor:
    """``words`` with the 23 bits that ``lane`` reads set to ``k`` (the cell), the other bits kept."""
    shift = 41 if lane == 0 else 9
    keep = _int64(~(((1 << 23) - 1) << shift))
    return (words & keep) | (torch.as_tensor(k, dtype=torch.int64) << shift)


def _with_tail(words: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``words`` with the 18 refinement bits set to ``s`` (bits 32-40: its high 9 bits, bits 0-8: the low 9)."""
    keep = _int64(~((511 << 32) | 511))
    return (words & keep) | ((s >> 9) << 32) | (s & 511)


def _fires(words: torch.Tensor, p: float, lane: int, refine: bool = True) -> torch.Tensor:
    u = words_to_float32(words, lane)
    prob = torch.full_like(u, p)
    return Sampler()(prob, u, refinement(words) if refine else None)


@pytest.mark.parametrize("p", [1e-3, 1e-5])
@pytest.mark.parametrize("lane", [0, 1])
def test_rare_event_fires_at_its_rate(words, p, lane):
    n = words.numel()
    count = float(_fires(words, p, lane).sum())
    # binomial count: mean n p, sd sqrt(n p (1 - p)); 5 sd
    assert abs(count - n * p) < 5 * math.sqrt(n * p * (1 - p)), (count, n * p)


def test_without_refinement_a_probability_below_half_a_cell_never_fires(words):
    # the smallest float32 lane uniform is 2^-24 ~ 6e-8: u < 1e-9 never holds (the bias the refinement removes)
    for lane in (0, 1):
        assert float(_fires(words, 1e-9, lane, refine=False).sum()) == 0.0
        assert float(_fires(_with_lane(words[:100_000], lane, 0), 1e-9, lane, refine=False).sum()) == 0.0


def _cell(p: float) -> tuple[int, float]:
    """The boundary cell k = floor(p 2^23) of float32(p) and the fraction of it below p."""
    x = float(torch.tensor(p, dtype=torch.float32)) * 2.0**23
    k = math.floor(x)
    return k, x - k


@pytest.mark.parametrize("p", [1e-3, 1e-5, 1e-7, 1e-8, 1e-9])
@pytest.mark.parametrize("lane", [0, 1])
def test_in_the_boundary_cell_the_event_fires_with_the_cells_fraction_below_p(words, p, lane):
    # Words whose lane falls in cell k = floor(p 2^23), every other bit random: the event must fire for the
    # fraction frac(p 2^23) of them (the part of the cell below p).  The tails of 2^18 sub-cells resolve the
    # fraction to 2^-18; the fraction firing is binomial: 5 standard errors plus that resolution.
    k, frac = _cell(p)
    sample = _with_lane(words[:200_000], lane, k)
    n = sample.numel()
    fired = float(_fires(sample, p, lane).mean())
    assert abs(fired - frac) < 5 * math.sqrt(frac * (1 - frac) / n) + 2.0**-18, (fired, frac)


@pytest.mark.parametrize("p", [1e-6, 1e-7, 1e-8, 1e-9])
@pytest.mark.parametrize("lane", [0, 1])
def test_the_firing_probability_of_the_whole_grid_is_p(words, p, lane):
    # Enumerate the 2^18 tails of the boundary cell k: every cell below fires whatever its tail, every cell
    # above never does, so P(fire) = (k + #tails firing in cell k / 2^18) 2^-23 exactly.
    k, _ = _cell(p)
    s = torch.arange(TAIL, dtype=torch.int64)
    base = words.flatten()[:TAIL].clone()
    tails = _with_tail(base, s)
    boundary = float(_fires(_with_lane(tails, lane, k), p, lane).sum())
    # the neighbouring cells on every 64th tail, both extremes included
    some = torch.cat([tails[::64], tails[-1:]])
    if k > 0:
        assert float(_fires(_with_lane(some, lane, k - 1), p, lane).sum()) == some.numel()
    assert float(_fires(_with_lane(some, lane, k + 1), p, lane).sum()) == 0.0
    prob = (k + boundary / TAIL) * CELL
    assert abs(prob - p) < 1e-3 * p, (prob, p)
    # without the refinement the grid decides by the cell's centre (k or k + 1 whole cells): outside 1e-3 p
    unrefined = k + float(_fires(_with_lane(base, lane, k), p, lane, refine=False).mean())
    assert unrefined in (k, k + 1) and abs(unrefined * CELL - p) > 1e-3 * p


# --------------------------------------------------------------------------- categorical


def test_categorical_frequencies_match_the_probabilities():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.15, 0.25], dtype=F64)
    n, k = 200_000, probs.numel()
    u = uniforms(n, k, stream="cat")                       # one uniform per outcome
    h = Sampler().categorical(probs.expand(n, k), u)
    assert torch.equal(h.sum(1), torch.ones(n, dtype=F64))  # one-hot
    counts = h.sum(0)
    assert chi2_stat(counts, n * probs) < chi2_critical(k - 1)  # chi2 with 4 dof, 1e-4 quantile 23.5


def test_categorical_rare_outcome_fires_at_its_rate():
    # P(outcome 0 | u_0) = P(g_1, g_2 < g_0 + log(pi_0 / pi_j)) = u_0^((1 - pi_0) / pi_0) for Gumbel-max, so
    # nearly all of its probability pi_0 = 1e-6 lies where u_0 > 1 - W (W = 1e-4): there, it fires with
    # probability (1 - (1 - W)^(1/pi_0)) / W = pi_0 / W (1 - e^-100) = 0.01.  Test it conditionally.
    pi0, width = 1e-6, 1e-4
    probs = torch.tensor([pi0, 0.4, 0.6 - pi0], dtype=F64)
    n = 1_000_000
    u = uniforms(n, 3, stream="rare")
    u_in = u.clone()
    u_in[:, 0] = 1.0 - width * u[:, 0]
    fired = float(Sampler().categorical(probs.expand(n, 3), u_in)[:, 0].mean())
    q = pi0 / width
    assert abs(fired - q) < 5 * math.sqrt(q * (1 - q) / n), fired   # 5 SE of a binomial proportion
    # below the window the outcome needs g_j < log(pi_0/pi_j) + 9.2 ~ -4.6 for both others: P ~ e^-100, never
    u_out = u[:100_000].clone()
    u_out[:, 0] = (1.0 - width) * u_out[:, 0]
    assert float(Sampler().categorical(probs.expand(100_000, 3), u_out)[:, 0].sum()) == 0.0


def test_categorical_straight_through_gradient_is_the_identity():
    probs = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]], dtype=F64, requires_grad=True)
    u = uniforms(2, 3, stream="st")
    c = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    h = Sampler("stochastic", "straight_through").categorical(probs, u)
    (h * c).sum().backward()
    assert torch.equal(probs.grad, c.expand(2, 3))
    # the forward is the Gumbel-max one-hot
    g = -torch.log(-torch.log(u))
    assert torch.equal(h.detach().argmax(1), (torch.log(probs.detach()) + g).argmax(1))


def test_categorical_gumbel_gradient_is_the_softmax_relaxation():
    tau = 0.3
    probs = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]], dtype=F64, requires_grad=True)
    u = uniforms(2, 3, stream="gs")
    c = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    h = Sampler("stochastic", "gumbel", tau).categorical(probs, u)
    (h * c).sum().backward()
    q = probs.detach().clone().requires_grad_(True)
    g = -torch.log(-torch.log(u))
    (torch.softmax((torch.log(q) + g) / tau, dim=-1) * c).sum().backward()
    assert torch.allclose(probs.grad, q.grad, rtol=1e-12, atol=0)
    assert bool((probs.grad != 0).all())
    assert set(h.detach().unique().tolist()) == {0.0, 1.0}


def test_categorical_expected_mode_and_bad_uniforms():
    probs = torch.tensor([[0.2, 0.8]], dtype=F64)
    assert torch.equal(Sampler("expected").categorical(probs, None), probs)
    with pytest.raises(ValueError, match="one uniform per outcome"):
        Sampler().categorical(probs, torch.full((1, 3), 0.5, dtype=F64))
    with pytest.raises(ValueError, match="one uniform per outcome"):
        Sampler().categorical(probs, None)


# --------------------------------------------------------------------------- binomial and Poisson

DRAWS = 200_000


def _binomial_moments(n, p):
    """Mean, variance and fourth central moment of Binomial(n, p)."""
    q = 1 - p
    var = n * p * q
    return n * p, var, var * (1 + 3 * (n - 2) * p * q)


def _check_moments(x: torch.Tensor, mean: float, var: float, mu4: float, extra_var: float = 0.0):
    """Sample mean within 5 SE sqrt(var / n); sample variance within 5 SE sqrt((mu4 - var^2) / n)."""
    n = x.numel()
    assert abs(float(x.mean()) - mean) < 5 * math.sqrt(var / n), (float(x.mean()), mean)
    assert abs(float(x.var()) - (var + extra_var)) < 5 * math.sqrt((mu4 - var * var) / n), (float(x.var()), var)


@pytest.mark.parametrize("n, p", [(20, 0.3), (40, 0.8), (500, 0.01)])
def test_binomial_exact_regime_moments_and_pmf(n, p):
    mean, var, mu4 = _binomial_moments(n, p)
    assert var <= EXACT_VARIANCE
    u = uniforms(DRAWS, stream="binomial")
    x = Sampler().binomial(torch.tensor(float(n), dtype=F64), torch.tensor(p, dtype=F64), u)
    assert torch.equal(x, x.round()) and float(x.min()) >= 0 and float(x.max()) <= n
    _check_moments(x, mean, var, mu4)
    # frequencies of the values against the pmf; cells with at least 20 expected draws, the rest lumped
    ks = torch.arange(n + 1, dtype=F64)
    pmf = torch.exp(torch.lgamma(torch.tensor(n + 1.0, dtype=F64)) - torch.lgamma(ks + 1) - torch.lgamma(n - ks + 1)
                    + ks * math.log(p) + (n - ks) * math.log1p(-p))
    counts = torch.bincount(x.long().flatten(), minlength=n + 1).double()
    _chi2_pmf(counts, pmf, DRAWS)


def _chi2_pmf(counts: torch.Tensor, pmf: torch.Tensor, n: int):
    big = n * pmf >= 20
    cells_c = [*counts[big].tolist(), float(counts[~big].sum())]
    cells_e = [*(n * pmf[big]).tolist(), float(n * pmf[~big].sum())]
    if cells_e[-1] < 20:  # lump a small remainder into the smallest cell
        cells_c[-2] += cells_c.pop()
        cells_e[-2] += cells_e.pop()
    dof = len(cells_c) - 1
    if dof % 2:  # merge the two last cells for an even dof (the critical value is exact for even dof)
        cells_c[-2] += cells_c.pop()
        cells_e[-2] += cells_e.pop()
        dof -= 1
    stat = chi2_stat(torch.tensor(cells_c), torch.tensor(cells_e))
    assert stat < chi2_critical(dof), (stat, dof)


@pytest.mark.parametrize("n, p", [(1000, 0.3), (2000, 0.95)])
def test_binomial_normal_regime_moments(n, p):
    mean, var, _ = _binomial_moments(n, p)
    assert var > EXACT_VARIANCE
    u = uniforms(DRAWS, stream="binomial-normal")
    x = Sampler().binomial(torch.tensor(float(n), dtype=F64), torch.tensor(p, dtype=F64), u)
    assert torch.equal(x, x.round()) and float(x.min()) >= 0 and float(x.max()) <= n
    # the normal approximation rounded to whole numbers: variance var + 1/12 (Sheppard), fourth moment ~3 var^2
    _check_moments(x, mean, var, 3 * var * var, extra_var=1 / 12)


@pytest.mark.parametrize("lam", [0.5, 3.0, 40.0])
def test_poisson_exact_regime_moments_and_pmf(lam):
    u = uniforms(DRAWS, stream="poisson")
    x = Sampler().poisson(torch.tensor(lam, dtype=F64), u)
    assert torch.equal(x, x.round()) and float(x.min()) >= 0
    _check_moments(x, lam, lam, lam * (1 + 3 * lam))  # Poisson: variance lam, fourth central moment lam(1+3 lam)
    top = int(x.max()) + 1
    ks = torch.arange(top + 1, dtype=F64)
    pmf = torch.exp(ks * math.log(lam) - lam - torch.lgamma(ks + 1))
    pmf[-1] = 1 - pmf[:-1].sum()  # the tail from top on
    counts = torch.bincount(x.long().flatten(), minlength=top + 1).double()
    _chi2_pmf(counts, pmf, DRAWS)


def test_poisson_normal_regime_moments():
    lam = 200.0
    u = uniforms(DRAWS, stream="poisson-normal")
    x = Sampler().poisson(torch.tensor(lam, dtype=F64), u)
    assert torch.equal(x, x.round())
    _check_moments(x, lam, lam, 3 * lam * lam, extra_var=1 / 12)


def test_poisson_rare_count_fires_with_probability_one_minus_exp_minus_lambda():
    # X >= 1 for a float64 uniform u > P(X = 0) = e^-lam; for lam = 1e-6 all of it lies in u > 1 - W, W = 1e-5.
    # Conditionally on u = 1 - W v (v uniform), X >= 1 with probability (1 - e^-lam) / W ~ 0.1: 5 binomial SE.
    lam, width, n = 1e-6, 1e-5, 200_000
    v = uniforms(n, stream="rare-poisson")
    x = Sampler().poisson(torch.full_like(v, lam), 1.0 - width * v)
    q = -math.expm1(-lam) / width
    assert abs(float((x >= 1).double().mean()) - q) < 5 * math.sqrt(q * (1 - q) / n)
    below = Sampler().poisson(torch.full_like(v, lam), (1.0 - width) * v)
    assert float(below.sum()) == 0.0


@pytest.mark.parametrize("kind", ["binomial", "poisson"])
@pytest.mark.parametrize("large", [False, True], ids=["exact", "normal"])
def test_count_surrogate_is_straight_through_on_the_mean(kind, large):
    u = uniforms(6, stream="grad")[:, 0]
    sampler = Sampler("stochastic", "gumbel")  # counts ignore the Bernoulli surrogate
    if kind == "binomial":
        n = torch.tensor([5.0, 10.0, 20.0, 30.0, 40.0, 50.0], dtype=F64) * (100 if large else 1)
        p = torch.full((6,), 0.3, dtype=F64, requires_grad=True)
        sampler.binomial(n, p, u).sum().backward()
        assert torch.equal(p.grad, n)       # d X / d p := d (n p) / d p = n
    else:
        lam = torch.tensor([0.1, 1.0, 2.0, 3.0, 4.0, 5.0], dtype=F64) * (100 if large else 1)
        lam.requires_grad_(True)
        sampler.poisson(lam, u).sum().backward()
        assert torch.equal(lam.grad, torch.ones(6, dtype=F64))  # d X / d lam := 1


def test_counts_in_expected_mode_are_the_means():
    n = torch.tensor([10.0, 20.0], dtype=F64)
    p = torch.tensor([0.25, 0.5], dtype=F64)
    assert torch.equal(Sampler("expected").binomial(n, p, None), n * p)
    assert torch.equal(Sampler("expected").poisson(p, None), p)


def test_binomial_edges_of_the_support():
    u = uniforms(1000, stream="edges")[:, 0]
    n = torch.full((1000,), 12.0, dtype=F64)
    assert torch.equal(Sampler().binomial(n, torch.zeros(1000, dtype=F64), u), torch.zeros(1000, dtype=F64))
    assert torch.equal(Sampler().binomial(n, torch.ones(1000, dtype=F64), u), n)
    assert torch.equal(Sampler().poisson(torch.zeros(1000, dtype=F64), u), torch.zeros(1000, dtype=F64))
