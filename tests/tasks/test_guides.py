"""vi's truncated-normal guide (lpm_graph/tasks/guides.py): against scipy's truncated normal in one dimension, a
normalised density matching its own draws in two, the multivariate normal without bounds, reparameterised
gradients against finite differences (float64), and the restricted prior of vi's model."""
from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("pyro")
stats = pytest.importorskip("scipy.stats")
special = pytest.importorskip("scipy.special")

from lpm_graph.tasks.guides import BoundedPrior, TruncatedNormal, TruncatedNormalGuide, log_mass  # noqa: E402

D = torch.float64


def one(mu, sd, lo=0.0, hi=2.0):
    return TruncatedNormal(torch.tensor([mu], dtype=D), torch.tensor([[sd]], dtype=D), torch.tensor([lo], dtype=D),
                           torch.tensor([hi], dtype=D))


def ks_critical(n, alpha=1e-3):
    """The Kolmogorov-Smirnov statistic's critical value at level ``alpha`` for ``n`` draws (asymptotic)."""
    return math.sqrt(-math.log(alpha / 2) / (2 * n))


@pytest.mark.parametrize("mu, sd, hi", [(1.0, 0.5, 2.0), (1.8, 0.5, 2.0), (-1.0, 0.3, 2.0), (10.0, 0.5, 2.0),
                                        (0.5, 1.0, math.inf)])
def test_one_element_is_scipys_truncated_normal(mu, sd, hi):
    # a mean inside, near the upper bound, below the box, 16 sd above it (Phi underflows there), one-sided
    q = one(mu, sd, hi=hi)
    ref = stats.truncnorm((0.0 - mu) / sd, (hi - mu) / sd, loc=mu, scale=sd)
    points = torch.tensor([[0.05], [0.7], [1.5], [1.95]], dtype=D)
    assert q.log_prob(points).tolist() == pytest.approx(ref.logpdf(points.numpy().ravel()).tolist(), rel=1e-9)
    torch.manual_seed(0)
    x = q.rsample((40000,)).ravel()
    assert bool(((x >= 0.0) & (x <= hi)).all())
    assert stats.kstest(x.numpy(), ref.cdf).statistic < ks_critical(len(x))
    # outside the bounds there is no density
    assert q.log_prob(torch.tensor([[-0.01]], dtype=D)).item() == -math.inf


def test_draws_stay_strictly_inside_the_bounds_where_the_inverse_cdf_lands_on_one():
    # a mean 60 sd above the upper bound: the quantile underflows and the draw would be the bound itself, where a
    # simulated likelihood can be zero (a reporting fraction of 0 against observed cases)
    torch.manual_seed(0)
    for mu in (30.0, -28.0):
        x = one(mu, 0.5).rsample((1000,)).ravel()
        assert bool(((x > 0.0) & (x < 2.0)).all()), mu
        assert float((x - (2.0 if mu > 0 else 0.0)).abs().max()) < 0.05  # yet at the bound to within its tail


def test_log_mass_keeps_its_precision_far_in_either_tail():
    for a, b in ((-40.0, -39.0), (39.0, 40.0), (-0.5, 0.7), (3.0, math.inf), (-math.inf, -20.0)):
        ref = float(special.log_ndtr(b)) + math.log1p(-math.exp(float(special.log_ndtr(a) - special.log_ndtr(b)))) \
            if a < 0 else float(special.log_ndtr(-a)) + math.log1p(-math.exp(float(special.log_ndtr(-b) -
                                                                                     special.log_ndtr(-a))))
        got = float(log_mass(torch.tensor(a, dtype=D), torch.tensor(b, dtype=D)))
        assert got == pytest.approx(ref, rel=1e-9), (a, b)


def two():
    return TruncatedNormal(torch.tensor([1.5, -0.3], dtype=D), torch.tensor([[0.6, 0.0], [0.4, 0.3]], dtype=D),
                           torch.tensor([0.0, -1.0], dtype=D), torch.tensor([2.0, 0.0], dtype=D))


def test_in_two_dimensions_the_density_is_normalised_and_matches_its_draws():
    q = two()
    g1, g2 = torch.linspace(0, 2, 801, dtype=D), torch.linspace(-1, 0, 401, dtype=D)
    grid = torch.stack(torch.meshgrid(g1, g2, indexing="ij"), -1)
    p = q.log_prob(grid).exp()

    def integral(f):
        return float(torch.trapezoid(torch.trapezoid(f, g2, dim=1), g1))

    # the trapezoid rule's error at these steps is below 1e-4 for this smooth density
    assert integral(p) == pytest.approx(1.0, abs=1e-4)
    torch.manual_seed(1)
    x = q.rsample((100000,))
    for k in range(2):
        mean = integral(p * grid[..., k])
        sd = math.sqrt(integral(p * (grid[..., k] - mean) ** 2))
        # 4 standard errors of the draws' mean
        assert abs(float(x[:, k].mean()) - mean) < 4 * sd / math.sqrt(len(x)), k
    # the truncation of the second element depends on the first (the conditional mean moves with it)
    corr = float(torch.corrcoef(x.T)[0, 1])
    assert corr > 0.3


def test_without_bounds_it_is_the_multivariate_normal():
    loc, tril = torch.tensor([0.3, -1.0, 2.0], dtype=D), torch.tensor([[0.5, 0, 0], [0.2, 0.4, 0], [-0.3, 0.1, 0.7]],
                                                                         dtype=D)
    inf = torch.full((3,), math.inf, dtype=D)
    q = TruncatedNormal(loc, tril, -inf, inf)
    ref = torch.distributions.MultivariateNormal(loc, scale_tril=tril)
    x = ref.sample((50,))
    assert torch.allclose(q.log_prob(x), ref.log_prob(x), rtol=0, atol=1e-10)
    torch.manual_seed(2)
    draws = q.rsample((20000,))
    cov = torch.cov(draws.T)
    # 5 standard errors of each covariance entry (var of a sample covariance ~ (s_ii s_jj + s_ij^2) / n)
    s = tril @ tril.T
    se = ((s.diagonal()[:, None] * s.diagonal()[None, :] + s ** 2) / len(draws)).sqrt()
    assert bool(((cov - s).abs() < 5 * se).all())


def test_draws_are_reparameterised_against_finite_differences():
    # E[sum theta^2] over a fixed set of draws (common random numbers): autograd through the inverse CDF against
    # central differences of the same estimate in every parameter, float64
    loc = torch.tensor([1.5, -0.3], dtype=D, requires_grad=True)
    tril = torch.tensor([[0.6, 0.0], [0.4, 0.3]], dtype=D, requires_grad=True)
    lo, hi = torch.tensor([0.0, -1.0], dtype=D), torch.tensor([2.0, 0.0], dtype=D)

    def estimate(loc, tril):
        torch.manual_seed(3)
        x = TruncatedNormal(loc, tril, lo, hi).rsample((2000,))
        return (x ** 2).sum(-1).mean()

    g_loc, g_tril = torch.autograd.grad(estimate(loc, tril), (loc, tril))
    h = 1e-6
    for param, grad in ((loc, g_loc), (tril, g_tril)):
        for idx in [(0,), (1,)] if param is loc else [(0, 0), (1, 0), (1, 1)]:
            e = torch.zeros_like(param)
            e[idx] = h
            with torch.no_grad():
                up = estimate(loc + e, tril) if param is loc else estimate(loc, tril + e)
                down = estimate(loc - e, tril) if param is loc else estimate(loc, tril - e)
            assert float(grad[idx]) == pytest.approx(float((up - down) / (2 * h)), rel=1e-5, abs=1e-8), idx


def test_the_guide_starts_where_it_is_told_in_units_of_its_scale():
    center, unit = torch.tensor([0.8, 0.3], dtype=D), torch.tensor([0.2, 0.05], dtype=D)
    cov = torch.tensor([[0.04, 0.006], [0.006, 0.0025]], dtype=D)
    start = torch.linalg.cholesky(cov) / unit[:, None]
    guide = TruncatedNormalGuide(center, unit, start, torch.zeros(2, dtype=D), torch.ones(2, dtype=D) * 2)
    q = guide.get_posterior()
    assert torch.allclose(q.loc, center) and torch.allclose(q.scale_tril @ q.scale_tril.T, cov, atol=1e-14)
    # a unit step of the learnt location moves each element by its own unit
    with torch.no_grad():
        guide.loc += 1.0
    assert torch.allclose(guide.get_posterior().loc, center + unit)


def test_the_bounded_prior_is_the_prior_inside_the_bounds_and_nothing_outside():
    from lpm_graph.core.params import ParameterSet
    from lpm_graph.tasks.posterior import Prior

    params = ParameterSet({"a": 0.5, "b": 1.0}, learnable=["a", "b"], bounds={"a": [0.0, 2.0], "b": [0.0, None]},
                          dtype=D)
    prior = Prior(params, {"b": {"dist": "LogNormal", "loc": 0.0, "scale": 0.5}}, required=True)
    lo, hi = torch.tensor([0.0, 0.0], dtype=D), torch.tensor([2.0, math.inf], dtype=D)
    bounded = BoundedPrior(prior, lo, hi)
    x = torch.tensor([[0.5, 1.3], [1.9, 0.2]], dtype=D)
    ref = torch.distributions.Uniform(0.0, 2.0).log_prob(x[:, 0]) + \
        torch.distributions.LogNormal(0.0, 0.5).log_prob(x[:, 1])
    assert torch.allclose(bounded.log_prob(x), ref.to(D))
    assert bounded.log_prob(torch.tensor([2.1, 1.0], dtype=D)).item() == -math.inf
    draws = bounded.sample((500,))
    assert draws.shape == (500, 2) and bool((draws[:, 0] < 2.0).all() and (draws[:, 1] > 0).all())
