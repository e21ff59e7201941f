"""Student-t quantiles and paired summaries."""
from __future__ import annotations

import math

import pytest
import torch

from lpm_graph.analysis.statistics import mean_sd, paired_summary, t_cdf_two_sided, t_quantile


@pytest.mark.parametrize("df, expected", [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (7, 2.3646),
                                          (10, 2.2281), (15, 2.1314), (30, 2.0423), (120, 1.9799)])
def test_t_quantile_matches_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)


def test_t_cdf_limits_and_monotone():
    assert t_cdf_two_sided(0.0, 5) == 0.0
    assert t_cdf_two_sided(1e6, 5) == pytest.approx(1.0, abs=1e-9)
    # df = 1 is the Cauchy distribution: P(|T| < 1) = 1/2
    assert t_cdf_two_sided(1.0, 1) == pytest.approx(0.5)
    # large df approaches the normal: P(|Z| < 1.959964) = 0.95
    assert t_cdf_two_sided(1.959964, 10_000) == pytest.approx(0.95, abs=2e-4)
    values = [t_cdf_two_sided(t / 10, 6) for t in range(50)]
    assert all(b > a for a, b in zip(values, values[1:]))


def test_paired_summary_formula_and_degenerate_cases():
    d = torch.tensor([1.0, 2.0, 4.0, 5.0])
    s = paired_summary(d)
    half = t_quantile(0.975, 3) * float(d.std()) / 2
    assert s["diff_mean"] == 3.0 and s["diff_sd"] == pytest.approx(float(d.std()))
    assert (s["diff_ci_low"], s["diff_ci_high"]) == pytest.approx((3 - half, 3 + half))
    zero = paired_summary(torch.zeros(6))
    assert zero == {"diff_mean": 0.0, "diff_sd": 0.0, "diff_ci_low": 0.0, "diff_ci_high": 0.0}
    one = paired_summary(torch.tensor([2.0]))
    assert one["diff_mean"] == 2.0 and math.isnan(one["diff_sd"]) and math.isnan(one["diff_ci_low"])
    assert math.isnan(mean_sd(torch.tensor([1.0]))[1])


def test_interval_covers_the_true_mean_95_percent_of_the_time():
    """4000 intervals from 5 normal draws each: coverage is binomial(4000, 0.95), sd 0.0034;
    accept within 4 sd."""
    g = torch.Generator().manual_seed(0)
    draws = 0.7 + 2.0 * torch.randn(4000, 5, generator=g, dtype=torch.float64)
    covered = 0
    for row in draws:
        s = paired_summary(row)
        covered += s["diff_ci_low"] <= 0.7 <= s["diff_ci_high"]
    assert abs(covered / 4000 - 0.95) < 4 * math.sqrt(0.95 * 0.05 / 4000)
