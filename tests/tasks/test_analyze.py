"""task=analyze as a pure function on a small population: outputs exist and agree with each other."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from lpm_graph.cli import DEFAULT_METRIC, metric_of
from lpm_graph.errors import ConfigError
from lpm_graph.tasks import get
from lpm_graph.tasks.analyze import POLICY_SEED_OFFSET, analyze
from lpm_graph.tasks.simulate import config_hash
from tests.analysis.conftest import one_thread
from tests.conftest import compose_config

# threads=null: a task that sets threads would change the count for the rest of the session; the module
# fixture uses one thread for speed and restores the count (tests/analysis/conftest.py)
TINY = ["task=analyze", "population.num_people=1500", "steps=30", "progress=false", "task.replicates=3",
        "threads=null", "model.params.seir.initial_infected_fraction=0.01", "task.policy.iterations=2"]
PARAMETERS = ("task.parameters=[transmission.beta_household,transmission.beta_school,seir.infectious_period,"
              "seir.fatality]")
AGE_LABELS = ["0-10", "10-20", "20-30", "30-40", "40-50", "50-60", "60-70", "70-80", "80+"]


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    out = tmp_path_factory.mktemp("analyze")
    cfg = compose_config([*TINY, PARAMETERS, "metric=deaths"])
    with one_thread():
        return cfg, analyze(cfg, out), out


def test_writes_every_output_and_summary_matches_disk(analyzed):
    cfg, summary, out = analyzed
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "sensitivity.csv", "sensitivity.png", "counterfactuals.csv", "counterfactuals.png", "policy.csv",
        "policy.png", "policy_parameters.csv", "summary.json", "run.json", "report.html"])
    for name in ("sensitivity.png", "counterfactuals.png", "policy.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["config_hash"] == config_hash(cfg)
    assert set(on_disk["analyses"]) == {"sensitivity", "counterfactuals", "policy"}
    assert summary["num_nodes"]["person"] == 1500 and summary["steps"] == 30 and summary["replicates"] == 3
    assert on_disk["attack_rate"] == pytest.approx(summary["attack_rate"])
    # the configured metric is what the CLI returns; without one, the model's first outcome
    assert get("analyze") is analyze and DEFAULT_METRIC["analyze"] is None
    assert metric_of("analyze", summary, cfg.metric) == ("deaths", summary["deaths"])
    assert metric_of("analyze", summary, None) == ("attack_rate", summary["attack_rate"])


def test_sensitivity_table_is_self_consistent(analyzed):
    _, summary, out = analyzed
    table = pd.read_csv(out / "sensitivity.csv", keep_default_na=False)
    assert list(dict.fromkeys(table.outcome)) == ["attack_rate", "total_infections", "peak_size", "peak_day",
                                                  "deaths"]
    assert len(table) == 5 * (3 + 9)  # three scalars and nine fatality groups per outcome
    e = table.derivative * table.value / table.outcome_value
    assert ((table.elasticity - e).abs() <= 1e-9 * e.abs().clip(lower=1e-3)).all()
    assert (table["mode"] == "expected").all() and summary["analyses"]["sensitivity"]["mode"] == "expected"
    assert table[table.outcome == "peak_day"].definition.str.contains("smooth surrogate").all()
    assert table[table.parameter == "seir.fatality"].element.tolist()[:9] == [f"age {a}" for a in AGE_LABELS]
    for outcome, info in summary["analyses"]["sensitivity"]["outcomes"].items():
        rows = table[table.outcome == outcome]
        assert rows.outcome_value.iloc[0] == pytest.approx(info["value"])
        top = rows.loc[rows.elasticity.abs().idxmax()]
        assert info["largest_elasticity"]["parameter"] == top.parameter
    # more transmission in households: more infections and deaths
    row = table[(table.parameter == "transmission.beta_household")].set_index("outcome")
    assert row.loc["attack_rate", "derivative"] > 0 and row.loc["deaths", "derivative"] > 0


def test_counterfactual_table_matches_summary_and_config(analyzed):
    cfg, summary, out = analyzed
    table = pd.read_csv(out / "counterfactuals.csv")
    assert list(dict.fromkeys(table.scenario)) == [s.name for s in cfg.task.scenarios]
    base = table[table.scenario == "baseline"].set_index("outcome")
    # the summary's headline numbers are the baseline scenario's
    assert summary["attack_rate"] == pytest.approx(base.loc["attack_rate", "mean"])
    assert summary["deaths"] == pytest.approx(base.loc["deaths", "mean"])
    for scenario, diffs in summary["analyses"]["counterfactuals"]["differences"].items():
        rows = table[table.scenario == scenario].set_index("outcome")
        for outcome, d in diffs.items():
            assert d["difference"] == pytest.approx(rows.loc[outcome, "diff_mean"])
            assert d["ci95"][0] <= d["difference"] <= d["ci95"][1]
            # the difference of the means is the mean of the paired differences
            assert d["difference"] == pytest.approx(rows.loc[outcome, "mean"] - base.loc[outcome, "mean"], abs=1e-9)
    assert set(summary["analyses"]["counterfactuals"]["differences"]) == {"close_schools", "vaccinate", "isolate"}
    assert (table.replicates == 3).all()
    # group totals of grouped events are compared too
    assert {f"new_infections_age_{a}" for a in AGE_LABELS} <= set(table.outcome)


def test_policy_outputs_are_consistent(analyzed):
    _, summary, out = analyzed
    table = pd.read_csv(out / "policy.csv")
    assert list(dict.fromkeys(table.scenario)) == ["uniform", "no_vaccination", "oldest_first", "optimised"]
    assert (table.baseline == "uniform").all()
    values = pd.read_csv(out / "policy_parameters.csv")
    # 30 days in phases of 15 days (task.policy.time_varying): two allocations of nine logits
    assert values.parameter.unique().tolist() == ["vaccination.allocation"] and len(values) == 2 * 9
    assert values.element.tolist() == [f"days {d}, age {a}" for d in ("0-14", "15+") for a in AGE_LABELS]
    assert (values.start == 0).all() and (values.optimised != 0).any()
    policy = summary["analyses"]["policy"]
    assert len(policy["objective_trace"]) == 2 + 1 and policy["objective"] == "deaths"
    assert min(policy["objective_trace"]) < policy["objective_trace"][0]
    deaths = table[table.outcome == "deaths"].set_index("scenario")
    for name, ev in policy["evaluation"].items():
        assert ev["mean"] == pytest.approx(deaths.loc[name, "mean"])
    # the optimised policy is a different policy from its reference, evaluated on the same random numbers
    attack = table[table.outcome == "attack_rate"].set_index("scenario")
    assert attack.loc["optimised", "diff_sd"] > 0 or attack.loc["optimised", "diff_mean"] != 0
    # no vaccination at all infects no fewer than vaccinating (same random numbers)
    assert attack.loc["no_vaccination", "diff_mean"] > 0


def test_a_stochastic_policy_is_evaluated_on_other_random_numbers_than_it_was_optimised_on(tmp_path, monkeypatch):
    """task.policy.mode=stochastic: the optimisation draws with seed + POLICY_SEED_OFFSET, the evaluation of
    every policy with the run's seed, so the comparison is out of sample."""
    import lpm_graph.tasks.analyze as task

    seen = {"optimise": [], "evaluate": []}
    optimise, run_scenarios = task.optimise, task.run_scenarios

    def recording_optimise(model, graph, **kw):
        seen["optimise"].append((kw["seed"], kw["replicates"], model.sampler.mode))
        return optimise(model, graph, **kw)

    def recording_run_scenarios(models, graph, **kw):
        if "optimised" in models:
            seen["evaluate"].append((kw["seed"], kw["replicates"], {m.sampler.mode for m in models.values()}))
        return run_scenarios(models, graph, **kw)

    monkeypatch.setattr(task, "optimise", recording_optimise)
    monkeypatch.setattr(task, "run_scenarios", recording_run_scenarios)
    cfg = compose_config([*TINY, "seed=5", "steps=10", "population.num_people=800", "task.analyses=[policy]",
                          "task.policy.mode=stochastic", "task.policy.iterations=1", "task.plot=false"])
    with one_thread():
        summary = analyze(cfg, tmp_path)
    (opt_seed, opt_reps, opt_mode), = seen["optimise"]
    (eval_seed, eval_reps, eval_modes), = seen["evaluate"]
    assert opt_mode == "stochastic" and eval_modes == {"stochastic"} and opt_reps == eval_reps == 3
    assert opt_seed != eval_seed and eval_seed == 5 and opt_seed == 5 + POLICY_SEED_OFFSET
    policy = summary["analyses"]["policy"]
    assert (policy["optimisation_seed"], policy["evaluation_seed"]) == (opt_seed, eval_seed)


def test_selected_analyses_only(tmp_path):
    cfg = compose_config([*TINY, "task.analyses=[sensitivity]", "task.parameters=[transmission.beta_school]",
                          "task.outcomes=[attack_rate]"])
    with one_thread():
        summary = analyze(cfg, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "run.json", "sensitivity.csv", "sensitivity.png",
                                                          "summary.json"]
    assert set(summary["analyses"]) == {"sensitivity"}
    assert summary["analyses"]["sensitivity"]["parameter_elements"] == 1
    table = pd.read_csv(tmp_path / "sensitivity.csv")
    assert table.outcome.tolist() == ["attack_rate"] and table.parameter.tolist() == ["transmission.beta_school"]


@pytest.mark.parametrize("overrides, match", [
    (["model=seir", "task.outcomes=[deaths]"], "task.outcomes names \\['deaths'\\], which the model does not declare"),
    (["task.parameters=[transmission.beta_nowhere]"],
     "task.parameters names \\['transmission.beta_nowhere'\\], which are not in model.params"),
    (["task.analyses=[counterfactuals]",
      "task.scenarios=[{name: baseline, environment: []}, {name: half, environment: "
      "[{_target_: lpm_graph.models.epidemic.VenueClosure, venue_type: school, start: 0, factor: 1.5}]}]"],
     "task.scenarios \\(half\\): VenueClosure\\(school\\).factor must be a probability"),
    (["task.analyses=[policy]",
      "model.environment=[{_target_: lpm_graph.models.epidemic.Vaccination, daily_fraction: 0.01}]"],
     "two processes are named 'vaccination'"),
    (["task.analyses=[sensitivity, sensitivity]"], "task.analyses must be a non-empty list of distinct"),
    (["task.policy.objective=r0"], "task.policy.objective names \\['r0'\\]"),
    (["task.policy.parameters=[vaccination.nowhere]", "~task.policy.time_varying"],
     "task.policy.parameters \\['vaccination.nowhere'\\] are not"),
    (["task.baseline=status_quo"], "task.baseline 'status_quo' is not among task.scenarios"),
])
def test_bad_config_fails_before_writing_anything(tmp_path, overrides, match):
    with pytest.raises(ConfigError, match=match):
        analyze(compose_config([*TINY, *overrides]), tmp_path / "out")
    assert not (tmp_path / "out").exists()
