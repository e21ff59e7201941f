"""The discrete Gaussian sampler against its exact moments and mass, and the zCDP accountant against Opacus."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lpm_graph.errors import ConfigError
from lpm_graph.privacy import dp
from lpm_graph.privacy.dp import DiscreteGaussian, ZCDPAccountant, discrete_gaussian_moments, epsilon_from_rho

Z = 4.5  # two-sided tail of about 7e-6 per check


@pytest.mark.parametrize("sigma", [0.5, 3.0])
def test_sampler_mean_and_variance_match_the_discrete_gaussian(sigma):
    n = 4000
    x = np.array(DiscreteGaussian(sigma).samples(n), dtype=np.float64)
    var, m4 = discrete_gaussian_moments(sigma)
    assert abs(x.mean()) < Z * math.sqrt(var / n)
    # the sample variance's sampling sd is sqrt((m4 - var^2) / n)
    assert abs((x ** 2).mean() - var) < Z * math.sqrt((m4 - var ** 2) / n)
    if sigma == 0.5:
        # the discrete Gaussian's variance is below sigma^2 here (0.215), a rounded continuous one's above (0.33)
        assert var < 0.22 and (x ** 2).mean() < 0.25


def test_sampler_mass_by_value():
    """Chi-square of the counts of -2..2 (and the tails pooled) against the exact mass at sigma = 0.8."""
    sigma, n = 0.8, 4000
    x = np.array(DiscreteGaussian(sigma).samples(n))
    y = np.arange(-40, 41)
    w = np.exp(-y * y / (2 * sigma ** 2))
    w /= w.sum()
    cells = [-2, -1, 0, 1, 2]
    expected = [n * w[y == c][0] for c in cells] + [n * w[np.abs(y) > 2].sum()]
    observed = [int((x == c).sum()) for c in cells] + [int((np.abs(x) > 2).sum())]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected))
    assert chi2 < 27.9  # chi-square with 5 degrees of freedom: P[> 27.9] ~ 4e-5


def test_sampler_reads_the_secure_source(monkeypatch):
    calls = []
    real = dp.secrets.randbelow
    monkeypatch.setattr(dp.secrets, "randbelow", lambda k: calls.append(k) or real(k))
    DiscreteGaussian(2.0).sample()
    assert calls


def test_accountant_composes_in_zcdp():
    acc = ZCDPAccountant(delta=1e-5)
    eps = []
    for _ in range(5):
        acc.spend(sensitivity=3.0, sigma=6.0, dims=10)  # z = 2: rho = 1/8 per release
        eps.append(acc.epsilon())
    assert acc.rho == pytest.approx(5 / 8, rel=1e-12) and acc.releases == 5
    assert all(b > a for a, b in zip(eps, eps[1:]))
    # the conversion is the one stated: the minimum over orders of a rho + (log(1/d) + (a-1) log(1-1/a) - log a)/(a-1)
    a = np.linspace(1.01, 200, 200000)
    direct = (a * 5 / 8 + (math.log(1e5) + (a - 1) * np.log1p(-1 / a) - np.log(a)) / (a - 1)).min()
    assert acc.epsilon() == pytest.approx(direct, rel=1e-4)
    # and it is below the simple bound rho + 2 sqrt(rho log(1/delta)) (Bun and Steinke 2016)
    assert acc.epsilon() < 5 / 8 + 2 * math.sqrt(5 / 8 * math.log(1e5))
    with pytest.raises(ConfigError, match="privacy.delta"):
        ZCDPAccountant(delta=1.0)


def test_epsilon_grows_with_steps_as_opacus_says():
    pytest.importorskip("opacus")
    from opacus.accountants import RDPAccountant

    for z in (0.8, 2.0):
        previous = 0.0
        for releases in (1, 10, 100):
            rho = releases / (2 * z * z)
            ours = epsilon_from_rho(rho, 1e-6)
            theirs = dp.opacus_epsilon(z, releases, 1e-6)
            # over Opacus' own orders the two are the same computation; over our finer grid at most as large
            assert epsilon_from_rho(rho, 1e-6, orders=RDPAccountant.DEFAULT_ALPHAS) == pytest.approx(theirs, rel=1e-9)
            assert ours <= theirs + 1e-9 and ours == pytest.approx(theirs, rel=0.05)
            assert ours > previous
            previous = ours
