"""model=opinion_stubborn, opinion_hk, opinion_deffuant through simulate, calibrate, analyze and plan, from the
composed shipped configs; the memory estimate covers the per-edge workspace of the bounded-confidence message."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from lpm_graph import memory, tasks
from lpm_graph.tasks.simulate import instantiate_config
from tests.conftest import compose_config

ROOT = Path(__file__).resolve().parents[3]
QUIET = ("threads=1", "progress=false")
MODELS = {"opinion_stubborn": "degroot.stubbornness", "opinion_hk": "confidence.epsilon",
          "opinion_deffuant": "deffuant.epsilon"}


@pytest.mark.parametrize("name", list(MODELS))
def test_simulate_writes_its_files_and_plot(tmp_path, name):
    cfg = compose_config([f"model={name}", "population.num_people=400", "steps=8", "replicates=2", *QUIET])
    assert cfg.population._target_.endswith("random_graph")  # model=opinion's population, inherited
    summary = tasks.get("simulate")(cfg, tmp_path)
    assert (tmp_path / "trajectory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    frame = pd.read_parquet(tmp_path / "trajectory.parquet")
    clusters = [] if name == "opinion_stubborn" else ["opinion_clusters"]
    assert list(frame.columns) == ["step", "replicate", "opinion_var", "opinion_mean", *clusters]
    assert 0 < summary["final_variance"] < frame.opinion_var.iloc[0]
    if clusters:
        assert summary["final_clusters"] >= 1 and float(frame.opinion_clusters.iloc[0]) == 0  # step 0: none yet


@pytest.mark.parametrize("name", list(MODELS))
def test_plan_lists_the_processes(tmp_path, name):
    cfg = compose_config(["task=plan", f"model={name}"])
    counts = tasks.get("plan")(cfg, tmp_path)
    assert counts["processes"] == (2 if name == "opinion_stubborn" else 3)
    assert MODELS[name] in (tmp_path / "plan.txt").read_text()


@pytest.mark.parametrize("name, truth, start, iterations", [("opinion_stubborn", 0.1, 0.4, 60),
                                                              ("opinion_hk", 0.15, 0.3, 25)])
def test_calibrate_moves_to_the_truth(tmp_path, make_observations, name, truth, start, iterations):
    """Observations of a run at the truth (1,500 people, 12 steps, 2% noise); the fit from the start value ends
    nearer the truth than a third of the way (HK: a few iterations only, it is the slow one)."""
    parameter = MODELS[name]
    make_observations(tmp_path, overrides=["population.num_people=1500"], truth=truth, steps=12, run_seed=7,
                      name="obs", model=name, parameter=parameter)
    ns, local = parameter.split(".")
    cfg = compose_config(["task=calibrate", f"model={name}", "population.num_people=1500", "steps=12",
                          f"observations.path={tmp_path / 'obs.csv'}", f"task.iterations={iterations}",
                          "task.checkpoint_every=0", "task.plot=false", f"model.params.{ns}.{local}={start}", *QUIET])
    metrics = tasks.get("calibrate")(cfg, tmp_path / "out")
    fitted = metrics["fitted"][parameter]
    assert abs(fitted - truth) < abs(start - truth) / 3
    loss = pd.read_csv(tmp_path / "out" / "loss.csv")
    assert loss.loss.iloc[-3:].mean() < 0.2 * loss.loss.iloc[0]


def test_shipped_observations_record_their_truth():
    for name, parameter in MODELS.items():
        truth = json.loads((ROOT / "data" / "observations" / f"{name}_variance_truth.json").read_text())
        cfg = compose_config(["task=calibrate", f"model={name}"])
        assert cfg.observations.path == f"data/observations/{name}_variance.csv" and cfg.steps == truth["steps"]
        assert list(cfg.model.learnable) == [parameter] and parameter in truth


@pytest.mark.parametrize("name", ["opinion_hk", "opinion_deffuant"])
def test_analyze_sensitivity_and_scenarios(tmp_path, name):
    cfg = compose_config(["task=analyze", f"model={name}", "population.num_people=300", "steps=10",
                          "task.replicates=2", "task.plot=false", *QUIET])
    assert cfg.model.checkpoint  # the per-edge tensors are rebuilt in the backward, not kept
    summary = tasks.get("analyze")(cfg, tmp_path)
    sens = pd.read_csv(tmp_path / "sensitivity.csv")
    assert MODELS[name] in set(sens.parameter) and sens.derivative.notna().all()
    assert set(summary["analyses"]["counterfactuals"]["differences"]) == {"shutdown", "half_influence"}


def test_memory_estimate_counts_the_per_edge_workspace():
    """The bounded-confidence step's estimate grows with the edges, and the per-edge part is what it declares."""
    cfg = compose_config(["model=opinion_hk", "population.num_people=100000"])
    model = instantiate_config(cfg.model)
    et = ("person", "contact", "person")
    small = memory.estimate_model(model, {"person": 100_000}, {et: 100_000}, steps=10)
    large = memory.estimate_model(model, {"person": 100_000}, {et: 1_100_000}, steps=10)
    per_edge = model.process("confidence").workspace()[et]
    assert large.parts["step"] - small.parts["step"] == per_edge * 1_000_000 * 4
    est = memory.estimate_config(cfg, model)
    assert est.parts["step"] > per_edge * 4 * 100_000 * 10 * 0.99  # mean degree 10: a million stored edges
