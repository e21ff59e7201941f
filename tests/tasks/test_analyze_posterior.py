"""task=analyze task.posterior=<posterior.parquet>: every analysis over posterior draws with common random numbers.

A posterior of one repeated point is the plain analysis at that point (same runs, same intervals); a spread
posterior widens the intervals of the policy's deaths averted and of the counterfactuals; a file that does not
fit the model is refused before anything is written.
"""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from lpm_graph.errors import DataFileError
from lpm_graph.tasks.analyze import analyze
from tests.analysis.conftest import one_thread
from tests.conftest import compose_config

BETA = "transmission.beta_community"
TINY = ["task=analyze", "population.num_people=800", "steps=30", "progress=false", "task.replicates=3",
        "threads=null", "model.params.seir.initial_infected_fraction=0.02", "model.params.seir.fatality=0.05",
        "task.policy.iterations=2",
        f"task.parameters=[{BETA}]", "task.plot=false", "task.report=false", f"model.params.{BETA}=0.35"]


def posterior(tmp_path, betas, name="posterior.parquet"):
    path = tmp_path / name
    pd.DataFrame({BETA: betas}).to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyze_posterior")
    out = {}
    with one_thread():
        out["plain"] = analyze(compose_config(TINY), root / "plain"), root / "plain"
        point = posterior(root, [0.35] * 3, "point.parquet")
        out["point"] = analyze(compose_config([*TINY, f"task.posterior={point}"]), root / "point"), root / "point"
        spread = posterior(root, [0.15, 0.35, 0.6], "spread.parquet")
        out["spread"] = analyze(compose_config([*TINY, f"task.posterior={spread}"]), root / "spread"), root / "spread"
    return out


INTERVAL = ["diff_mean", "diff_ci_low", "diff_ci_high", "mean"]


@pytest.mark.parametrize("name", ["counterfactuals.csv", "policy.csv"])
def test_a_posterior_of_one_repeated_point_gives_the_plain_intervals(runs, name):
    plain = pd.read_csv(runs["plain"][1] / name).set_index(["scenario", "outcome"])
    point = pd.read_csv(runs["point"][1] / name).set_index(["scenario", "outcome"])
    assert list(point.index) == list(plain.index)
    for column in INTERVAL:
        pd.testing.assert_series_equal(point[column], plain[column], rtol=1e-9, atol=1e-9, check_names=False)
    assert (point.draws == 3).all() and (point.diff_sd_draws == 0).all()
    assert (plain.diff_ci_high > plain.diff_ci_low).any()  # there is an interval to compare


def test_a_posterior_of_one_repeated_point_gives_the_plain_sensitivities(runs):
    plain = pd.read_csv(runs["plain"][1] / "sensitivity.csv")
    point = pd.read_csv(runs["point"][1] / "sensitivity.csv")
    for column in ("derivative", "elasticity", "value", "outcome_value"):
        pd.testing.assert_series_equal(point[column], plain[column], rtol=1e-9, check_names=False)
    assert (point.derivative_low == point.derivative).all() and (point.derivative_high == point.derivative).all()


def test_a_wider_posterior_widens_the_policy_comparison(runs):
    point = pd.read_csv(runs["point"][1] / "policy.csv").set_index(["scenario", "outcome"])
    spread = pd.read_csv(runs["spread"][1] / "policy.csv").set_index(["scenario", "outcome"])
    p, s = point.loc[("no_vaccination", "total_infections")], spread.loc[("no_vaccination", "total_infections")]
    assert s.diff_ci_high - s.diff_ci_low > p.diff_ci_high - p.diff_ci_low
    assert s.diff_sd_draws > 0 and p.diff_sd_draws == 0
    summary = runs["spread"][0]
    assert summary["posterior"]["draws_used"] == 3 and summary["posterior"]["parameters"] == [BETA]
    for scenario in ("no_vaccination", "optimised"):  # the deaths averted by each policy, as a posterior interval
        ci = summary["analyses"]["policy"]["evaluation"][scenario]["ci95"]
        row = spread.loc[(scenario, "deaths")]
        assert ci == pytest.approx([row.diff_ci_low, row.diff_ci_high]) and ci[0] < row.diff_mean < ci[1]


def test_in_expected_mode_the_interval_is_the_spread_of_the_draws_each_run_at_its_own_parameters(tmp_path):
    """No noise (the mean field): the plain analysis has no interval, the posterior's is the 2.5%/97.5% quantiles of the
    effect at each draw, here computed by plain analyses at each draw's value."""
    over = [*TINY, "model.mode=expected", "task.analyses=[counterfactuals]"]
    betas = [0.15, 0.35, 0.6]
    with one_thread():
        effects = []
        for i, b in enumerate(betas):
            analyze(compose_config([*over, f"model.params.{BETA}={b}"]), tmp_path / f"plain{i}")
            t = pd.read_csv(tmp_path / f"plain{i}" / "counterfactuals.csv").set_index(["scenario", "outcome"])
            effects.append(t.loc[("vaccinate", "total_infections")])
        analyze(compose_config([*over, f"task.posterior={posterior(tmp_path, betas)}"]), tmp_path / "post")
    post = pd.read_csv(tmp_path / "post" / "counterfactuals.csv").set_index(["scenario", "outcome"])
    row = post.loc[("vaccinate", "total_infections")]
    per_draw = torch.tensor([e.diff_mean for e in effects], dtype=torch.float64)
    for e in effects:  # no noise: one replicate column, no interval of its own
        assert e.replicates == 1 and math.isnan(e.diff_ci_low) and math.isnan(e.diff_ci_high)
    assert len(set(per_draw.tolist())) == 3  # the effect depends on the parameter
    q = torch.quantile(per_draw, torch.tensor([0.025, 0.975], dtype=torch.float64))
    assert [row.diff_ci_low, row.diff_ci_high] == pytest.approx(q.tolist(), rel=1e-9)
    assert row.diff_mean == pytest.approx(float(per_draw.mean()), rel=1e-9)


def test_a_posterior_the_model_cannot_take_is_refused_before_any_output(tmp_path):
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"transmission.beta_pub": [0.1, 0.2]}).to_parquet(bad, index=False)
    out = tmp_path / "out"
    with pytest.raises(DataFileError, match=r"column 'transmission.beta_pub' of '.*bad.parquet' names parameter"):
        analyze(compose_config([*TINY, f"task.posterior={bad}"]), out)
    assert not out.exists()


def test_the_summary_names_the_posterior(runs):
    out = runs["point"][1]
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["posterior"]["file"].endswith("point.parquet") and on_disk["posterior"]["rows"] == 3
    assert "posterior" not in runs["plain"][0]


def test_the_report_shows_the_posterior_intervals(runs):
    from lpm_graph.report import build_report

    _, out = runs["spread"]
    text = build_report(out).read_text()
    assert "over 3 posterior draws, 3 replicates each" in text  # counterfactuals and policy
    assert "mean over 3 posterior draws" in text and '"error_x"' in text  # the sensitivities' ranges
    assert "posterior draws" not in build_report(runs["plain"][1]).read_text()

