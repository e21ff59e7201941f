"""Counterfactual scenarios with common random numbers: paired differences, intervals, directions."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.analysis.counterfactual import compare, plot_comparison, run_scenarios
from lpm_graph.analysis.statistics import t_quantile
from lpm_graph.data import generate_population
from lpm_graph.models.epidemic import Isolation, Vaccination, VenueClosure
from tests.analysis.conftest import one_thread
from tests.models.epidemic.conftest import seir_model

OUTCOMES = ["attack_rate", "peak_size", "peak_day"]
R = 4


@pytest.fixture(scope="module")
def scenario_table():
    """Schools as the dominant venue, 6,000 people, 4 paired replicates."""
    pop = generate_population(6000, seed=3)
    params = {"transmission": {"beta_household": 0.2, "beta_community": 0.1, "beta_school": 0.8},
              "seir": {"exposed_period": 2.0, "infectious_period": 4.0}}

    def model(*environment):
        return seir_model(environment=list(environment), params=params)

    models = {
        "baseline": model(),
        "close_schools": model(VenueClosure("school", start=0, end=None)),
        "no_op": model(VenueClosure("school", start=0, end=None, factor=1.0)),
        "vaccinate": model(Vaccination(daily_fraction=0.02, efficacy=0.9)),
        "isolate": model(Isolation(compliance=0.8, effectiveness=0.9)),
    }
    graph = models["baseline"].prepare(pop)
    kept = {}
    with one_thread():
        runs = run_scenarios(models, graph, steps=60, seed=1, replicates=R, outcome_names=OUTCOMES,
                             on_trajectory=lambda name, traj: kept.__setitem__(name, traj))
    return compare(runs, "baseline").set_index(["scenario", "outcome"]), runs, kept


def test_closing_schools_lowers_child_infections_in_the_table(scenario_table):
    table, _, _ = scenario_table
    for group in ("0-10", "10-20"):  # school ages 5-17
        row = table.loc[("close_schools", f"new_infections_age_{group}")]
        assert row.diff_mean < 0 and row.diff_ci_high < 0, (group, row.to_dict())
    assert table.loc[("close_schools", "attack_rate")].diff_ci_high < 0
    # children lose more than adults in relative terms: the closure acts on them
    child = table.loc[("close_schools", "new_infections_age_10-20")]
    adult = table.loc[("close_schools", "new_infections_age_40-50")]
    assert child.diff_mean / child["mean"] < adult.diff_mean / adult["mean"]


def test_vaccination_and_isolation_lower_the_attack_rate(scenario_table):
    table, _, _ = scenario_table
    for scenario in ("vaccinate", "isolate"):
        assert table.loc[(scenario, "attack_rate")].diff_ci_high < 0, scenario
        assert table.loc[(scenario, "peak_size")].diff_mean < 0, scenario


def test_common_random_numbers_make_a_no_op_scenario_identical(scenario_table):
    table, runs, _ = scenario_table
    for outcome in table.loc["no_op"].index:
        row = table.loc[("no_op", outcome)]
        assert (row.diff_mean, row.diff_sd, row.diff_ci_low, row.diff_ci_high) == (0, 0, 0, 0), outcome
    for name in runs["baseline"].curves:
        assert torch.equal(runs["no_op"].curves[name], runs["baseline"].curves[name]), name


def test_paired_differences_are_the_per_replicate_differences(scenario_table, tmp_path):
    """Each row's difference statistics are those of d_r = y_r(scenario) - y_r(baseline), replicate by
    replicate (not of two independent samples): mean, sd and the t interval mean +- t_{0.975,R-1} sd/sqrt(R)."""
    table, runs, kept = scenario_table
    t = t_quantile(0.975, R - 1)
    for scenario, run in runs.items():
        for outcome, values in run.outcomes.items():
            d = (values - runs["baseline"].outcomes[outcome]).double()
            row = table.loc[(scenario, outcome)]
            assert row["mean"] == pytest.approx(float(values.mean()))
            assert row.diff_mean == pytest.approx(float(d.mean()))
            assert row.diff_sd == pytest.approx(float(d.std()), abs=1e-12)
            half = t * float(d.std()) / R ** 0.5
            assert (row.diff_ci_low, row.diff_ci_high) == pytest.approx((float(d.mean()) - half,
                                                                         float(d.mean()) + half), abs=1e-12)
            assert row.replicates == R and row.baseline == "baseline"
    # the outcomes kept are those of the full trajectories
    for scenario, traj in kept.items():
        assert torch.allclose(runs[scenario].outcomes["attack_rate"], (1 - traj.series["S"][-1] / 6000).double())
        by_age = sum(v for k, v in runs[scenario].outcomes.items() if k.startswith("new_infections_age_"))
        assert torch.allclose(by_age, 6000 - traj.series["S"][-1].double())
    plot_comparison(table.reset_index(), runs, tmp_path / "c.png", OUTCOMES)
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(KeyError, match="baseline scenario 'nowhere'"):
        compare(runs, "nowhere")
