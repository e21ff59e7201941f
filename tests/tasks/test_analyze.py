"""task=analyze as a pure function on a tiny population: outputs exist and agree with each other."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from lpm_graph.cli import PRIMARY_METRIC
from lpm_graph.data import ConfigError
from lpm_graph.tasks import TASKS
from lpm_graph.tasks.analyze import analyze
from lpm_graph.tasks.simulate import config_hash
from tests.analysis.conftest import one_thread
from tests.conftest import compose_config

# threads=null: task=analyze sets one thread (torch.set_num_threads), which would stick for the rest of the
# session; the module fixture uses one thread for speed and restores the count (tests/analysis/conftest.py)
TINY = ["task=analyze", "population.num_people=1500", "steps=30", "progress=false", "task.replicates=3",
        "threads=null", "model.params.initial_infected_fraction=0.01", "task.policy.iterations=2"]
PARAMETERS = "task.parameters=[beta_household,beta_school,infectious_period,fatality]"


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    out = tmp_path_factory.mktemp("analyze")
    cfg = compose_config([*TINY, PARAMETERS])
    with one_thread():
        return cfg, analyze(cfg, out), out


def test_default_analyze_config_composes_with_seird_and_all_analyses():
    cfg = compose_config(["task=analyze"])
    assert cfg.model.disease.fatality is True  # task=analyze picks model=seird unless told otherwise
    assert cfg.threads == 1
    assert list(cfg.task.analyses) == ["sensitivity", "counterfactuals", "policy"]
    assert compose_config(["task=analyze", "model=seir"]).model.disease.fatality is False
    assert TASKS["analyze"] is analyze and PRIMARY_METRIC["analyze"] == "attack_rate"


def test_writes_every_output_and_summary_matches_disk(analyzed):
    cfg, summary, out = analyzed
    for name in ("sensitivity.csv", "sensitivity.png", "counterfactuals.csv", "counterfactuals.png", "policy.csv",
                 "policy.png", "policy_allocation.csv", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "sensitivity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*tmp*")), "no temporary files left behind"
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["config_hash"] == config_hash(cfg)
    assert set(on_disk["analyses"]) == {"sensitivity", "counterfactuals", "policy"}
    assert summary["num_people"] == 1500 and summary["steps"] == 30 and summary["replicates"] == 3


def test_sensitivity_table_is_self_consistent(analyzed):
    _, summary, out = analyzed
    table = pd.read_csv(out / "sensitivity.csv", keep_default_na=False)
    assert list(dict.fromkeys(table.outcome)) == ["attack_rate", "peak_size", "peak_day", "deaths"]
    assert len(table) == 4 * (3 + 9)  # three scalars and nine fatality groups per outcome
    e = table.derivative * table.value / table.outcome_value
    assert ((table.elasticity - e).abs() <= 1e-9 * e.abs().clip(lower=1e-3)).all()
    assert (table["mode"] == "expected").all()
    assert table[table.outcome == "peak_day"].definition.str.contains("smooth surrogate").all()
    for outcome, info in summary["analyses"]["sensitivity"]["outcomes"].items():
        assert table[table.outcome == outcome].outcome_value.iloc[0] == pytest.approx(info["value"])
    # more transmission in households: more infections and deaths
    row = table[(table.parameter == "beta_household")].set_index("outcome")
    assert row.loc["attack_rate", "derivative"] > 0 and row.loc["deaths", "derivative"] > 0


def test_counterfactual_table_matches_summary_and_config(analyzed):
    cfg, summary, out = analyzed
    table = pd.read_csv(out / "counterfactuals.csv")
    assert list(dict.fromkeys(table.scenario)) == [s.name for s in cfg.task.scenarios]
    base = table[table.scenario == "baseline"]
    assert (base.diff_mean == 0).all() and (base.diff_sd == 0).all()
    # the summary's headline numbers are the baseline scenario's
    assert summary["attack_rate"] == pytest.approx(base.set_index("outcome").loc["attack_rate", "mean"])
    assert summary["deaths"] == pytest.approx(base.set_index("outcome").loc["deaths", "mean"])
    for scenario, diffs in summary["analyses"]["counterfactuals"]["differences"].items():
        rows = table[table.scenario == scenario].set_index("outcome")
        for outcome, d in diffs.items():
            assert d["difference"] == pytest.approx(rows.loc[outcome, "diff_mean"])
            assert d["ci95"][0] <= d["difference"] <= d["ci95"][1]
    assert (table.replicates == 3).all()


def test_policy_outputs_are_consistent(analyzed):
    _, summary, out = analyzed
    table = pd.read_csv(out / "policy.csv")
    assert list(dict.fromkeys(table.scenario)) == ["no_vaccination", "uniform", "oldest_first", "optimised"]
    assert (table.baseline == "uniform").all()
    allocation = pd.read_csv(out / "policy_allocation.csv")
    # 30 days in phases of task.policy.period = 15 days: two allocations, each summing to one
    phases = ["days 0-14", "days 15+"]
    assert list(allocation.columns) == ["age_group", "uniform", *[f"optimised {d}" for d in phases]]
    assert allocation.drop(columns="age_group").sum().tolist() == pytest.approx([1.0] * 3)
    policy = summary["analyses"]["policy"]
    assert len(policy["objective_trace"]) == 2 + 1
    assert list(policy["optimised_shares"]) == phases
    for d in phases:
        assert list(policy["optimised_shares"][d].values()) == pytest.approx(allocation[f"optimised {d}"].tolist())
    deaths = table[table.outcome == "deaths"].set_index("scenario")
    for name, ev in policy["evaluation"].items():
        assert ev["mean"] == pytest.approx(deaths.loc[name, "mean"])
    # no vaccination at all cannot avert deaths compared with vaccinating (same random numbers)
    assert deaths.loc["no_vaccination", "diff_mean"] >= 0


def test_selected_analyses_only(tmp_path):
    cfg = compose_config([*TINY, "task.analyses=[sensitivity]", "task.parameters=[beta_school]",
                          "task.outcomes=[attack_rate]"])
    with one_thread():
        summary = analyze(cfg, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sensitivity.csv", "sensitivity.png", "summary.json"]
    assert set(summary["analyses"]) == {"sensitivity"} and 0 <= summary["attack_rate"] <= 1


@pytest.mark.parametrize("overrides, match", [
    (["model=seir"], "includes 'deaths' but the model has no compartment D"),
    (["task.parameters=[beta_nowhere]"], "task.parameters names \\['beta_nowhere'\\]"),
    (["task.analyses=[counterfactuals]",
      "task.scenarios=[{name: baseline, environment: []}, {name: half, environment: "
      "[{_target_: lpm_graph.dynamics.VenueClosure, venue_type: school, start: 0, factor: 1.5}]}]"],
     "task.scenarios \\(half\\): VenueClosure.factor must be a probability"),
    (["task.analyses=[policy]", "model.environment=[{_target_: lpm_graph.dynamics.Vaccination, daily_fraction: 0.01}]"],
     "already holds a Vaccination"),
    (["task.analyses=[sensitivity, sensitivity]"], "task.analyses must be a non-empty list of distinct"),
    (["task.policy.daily_fraction=0"], "task.policy.daily_fraction must be in \\(0, 1\\]"),
    (["task.baseline=status_quo"], "task.baseline 'status_quo' is not among task.scenarios"),
])
def test_bad_config_fails_before_writing_anything(tmp_path, overrides, match):
    with pytest.raises(ConfigError, match=match):
        analyze(compose_config([*TINY, *overrides]), tmp_path / "out")
    assert not (tmp_path / "out").exists()
