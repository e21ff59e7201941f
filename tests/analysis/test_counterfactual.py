"""Counterfactual scenarios with common random numbers: comparison table in the expected direction."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.analysis.counterfactual import compare, plot_comparison, run_scenarios
from lpm_graph.data import generate_population
from lpm_graph.dynamics import SEIR, Isolation, Vaccination, VenueClosure, VenueTransmission
from lpm_graph.model import PopulationModel
from tests.analysis.conftest import one_thread
from tests.test_model import BASE_PARAMS

OUTCOMES = ["attack_rate", "peak_size", "peak_day"]


@pytest.fixture(scope="module")
def scenario_table():
    """Schools as the dominant venue (as in tests/test_model.py), 6,000 people, 4 paired replicates."""
    pop = generate_population(6000, seed=3)
    params = dict(BASE_PARAMS, beta_household=0.2, beta_community=0.1, beta_school=0.8)

    def model(*environment):
        return PopulationModel([VenueTransmission()], SEIR(), params, environment=list(environment))

    models = {
        "baseline": model(),
        "close_schools": model(VenueClosure("school", start=0, end=None)),
        "no_op": model(VenueClosure("school", start=0, end=None, factor=1.0)),
        "vaccinate": model(Vaccination(daily_fraction=0.02, efficacy=0.9)),
        "isolate": model(Isolation(compliance=0.8, effectiveness=0.9)),
    }
    graph = models["baseline"].prepare(pop)
    with one_thread():
        runs = run_scenarios(models, graph, steps=60, seed=1, replicates=4, outcome_names=OUTCOMES)
    return compare(runs, "baseline").set_index(["scenario", "outcome"]), runs, graph.num_people


def test_closing_schools_lowers_child_infections_in_the_table(scenario_table):
    table, _, _ = scenario_table
    for group in ("0-10", "10-20"):  # school ages 5-17
        row = table.loc[("close_schools", f"infections_age_{group}")]
        assert row.diff_mean < 0 and row.diff_ci_high < 0, (group, row.to_dict())
    assert table.loc[("close_schools", "attack_rate")].diff_ci_high < 0
    # children lose more than adults in relative terms: the closure acts on them
    child = table.loc[("close_schools", "infections_age_10-20")]
    adult = table.loc[("close_schools", "infections_age_40-50")]
    assert child.diff_mean / child["mean"] < adult.diff_mean / adult["mean"]


def test_vaccination_and_isolation_lower_the_attack_rate(scenario_table):
    table, _, _ = scenario_table
    for scenario in ("vaccinate", "isolate"):
        row = table.loc[(scenario, "attack_rate")]
        assert row.diff_ci_high < 0, (scenario, row.to_dict())
        assert table.loc[(scenario, "peak_size")].diff_mean < 0


def test_common_random_numbers_make_a_no_op_scenario_identical(scenario_table):
    table, runs, _ = scenario_table
    for outcome in table.loc["no_op"].index:
        row = table.loc[("no_op", outcome)]
        assert (row.diff_mean, row.diff_sd, row.diff_ci_low, row.diff_ci_high) == (0, 0, 0, 0)
        assert table.loc[("baseline", outcome)].diff_sd == 0
    assert torch.equal(runs["no_op"].curves["I"], runs["baseline"].curves["I"])


def test_table_is_consistent_with_the_runs(scenario_table, tmp_path):
    table, runs, n = scenario_table
    for scenario, run in runs.items():
        by_age = sum(v for k, v in run.outcomes.items() if k.startswith("infections_age_"))
        assert torch.allclose(by_age / n, run.outcomes["attack_rate"], atol=1e-6)
        for outcome, values in run.outcomes.items():
            row = table.loc[(scenario, outcome)]
            assert row["mean"] == pytest.approx(float(values.mean()))
            assert row.diff_mean == pytest.approx(float((values - runs["baseline"].outcomes[outcome]).mean()))
            assert row.diff_ci_low <= row.diff_mean <= row.diff_ci_high
            assert row.replicates == 4
    plot_comparison(table.reset_index(), runs, tmp_path / "c.png", OUTCOMES)
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(KeyError, match="baseline scenario 'nowhere'"):
        compare(runs, "nowhere")
