"""model=opinion through task=simulate, calibrate, analyze and plan, from the composed shipped config."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from lpm_graph import tasks
from tests.conftest import compose_config

ROOT = Path(__file__).resolve().parents[3]
QUIET = ("threads=1", "progress=false")


def test_model_opinion_composes_with_its_own_population():
    cfg = compose_config(["model=opinion"])
    assert cfg.population._target_ == "lpm_graph.data.random_graphs.random_graph"
    assert cfg.steps == 40  # conf/task_model/simulate_opinion.yaml
    other = compose_config(["model=opinion", "population=networkx", "population.path=x.graphml"])
    assert other.population._target_.endswith("from_networkx")  # the command line still chooses
    assert compose_config([]).population._target_.endswith("generate_population")  # the epidemic's is unchanged


def test_simulate_writes_its_files_and_plot(tmp_path):
    cfg = compose_config(["model=opinion", "population.num_people=500", "steps=12", "replicates=2", *QUIET])
    summary = tasks.get("simulate")(cfg, tmp_path)
    for name in ("trajectory.parquet", "summary.json", "trajectory.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "trajectory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    frame = pd.read_parquet(tmp_path / "trajectory.parquet")
    assert list(frame.columns) == ["step", "replicate", "opinion_var", "opinion_mean"]
    assert len(frame) == 13 * 2
    written = json.loads((tmp_path / "summary.json").read_text())
    assert set(written["outcomes"]) == {"final_variance", "final_mean", "total_variance"}
    assert written["num_nodes"] == {"person": 500} and written["params"] == {"degroot.susceptibility": 0.3}
    assert 0 < summary["final_variance"] < frame.opinion_var.iloc[0]


def test_simulate_with_initial_opinions_from_an_attribute_of_a_graphml_file(tmp_path):
    """Another population with contact edges: the sample GraphML network (its age as the initial opinion)."""
    cfg = compose_config(["model=opinion", "population=networkx", "population.path=data/samples/network.graphml",
                          "population.cache_dir=null", "model.processes.degroot.initial=attribute",
                          "model.processes.degroot.attribute=age", "task.plot=false", "steps=5", *QUIET])
    summary = tasks.get("simulate")(cfg, tmp_path)
    assert summary["num_nodes"] == {"person": 300} and summary["final_mean"] > 1  # years, not [0, 1]


@pytest.mark.parametrize("start", [0.6, 0.1])
def test_calibrate_recovers_the_susceptibility(tmp_path, make_observations, start):
    """Observations of a run with susceptibility 0.25 (4,000 people, 15 steps, 2% noise); the fit from 0.6 or 0.1
    lands within 0.02 (each iteration draws new initial opinions; largest error measured over 3 data seeds: 0.013)."""
    truth = make_observations(tmp_path, overrides=["population.num_people=4000"], truth=0.25, steps=15,
                              run_seed=7, name="obs")
    cfg = compose_config(["task=calibrate", "model=opinion", "population.num_people=4000", "steps=15",
                          f"observations.path={tmp_path / 'obs.csv'}", "task.iterations=120",
                          "task.checkpoint_every=0", f"model.params.degroot.susceptibility={start}", *QUIET])
    metrics = tasks.get("calibrate")(cfg, tmp_path / "out")
    fitted = metrics["fitted"]["degroot.susceptibility"]
    assert fitted == pytest.approx(truth["degroot.susceptibility"], abs=0.02)
    assert metrics["learnable"] == ["degroot.susceptibility"]
    for name in ("fitted_params.json", "loss.csv", "loss.png", "fit.png", "checkpoint.pt"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    loss = pd.read_csv(tmp_path / "out" / "loss.csv")
    assert list(loss.columns) == ["iteration", "loss", "degroot.susceptibility"]
    assert loss.loss.iloc[-10:].mean() < 0.05 * loss.loss.iloc[0]


def test_shipped_calibration_recovers_the_shipped_truth(tmp_path):
    truth = json.loads((ROOT / "data" / "observations" / "opinion_variance_truth.json").read_text())
    cfg = compose_config(["task=calibrate", "model=opinion", "task.checkpoint_every=0", "task.plot=false", *QUIET])
    assert cfg.observations.path == "data/observations/opinion_variance.csv"
    assert cfg.model.params.degroot.susceptibility == 0.6 and cfg.steps == truth["steps"]
    fitted = tasks.get("calibrate")(cfg, tmp_path)["fitted"]["degroot.susceptibility"]
    assert fitted == pytest.approx(truth["degroot.susceptibility"], abs=0.01)


def test_analyze_sensitivity_and_influence_scenarios(tmp_path):
    cfg = compose_config(["task=analyze", "model=opinion", "population.num_people=600", "steps=20",
                          "task.replicates=3", *QUIET])
    summary = tasks.get("analyze")(cfg, tmp_path)
    for name in ("sensitivity.csv", "sensitivity.png", "counterfactuals.csv", "counterfactuals.png", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0
    sens = pd.read_csv(tmp_path / "sensitivity.csv")
    assert set(sens.outcome) == {"final_variance", "final_mean", "total_variance"}
    assert set(sens.parameter) == {"degroot.susceptibility"}
    assert float(sens.set_index("outcome").loc["total_variance", "derivative"]) < 0
    diffs = summary["analyses"]["counterfactuals"]["differences"]
    assert set(diffs) == {"shutdown", "half_influence"}
    for scenario in ("shutdown", "half_influence"):  # less influence, more disagreement, in every replicate
        assert diffs[scenario]["total_variance"]["difference"] > 0
        assert diffs[scenario]["total_variance"]["ci95"][0] > 0


def test_plan_lists_the_two_processes(tmp_path):
    cfg = compose_config(["task=plan", "model=opinion"])
    assert tasks.get("plan")(cfg, tmp_path) == {"processes": 2, "parameters": 1, "observables": 2, "outcomes": 3}
    text = (tmp_path / "plan.txt").read_text()
    assert "neighbours [interaction] NeighbourMean" in text and "degroot [update] DeGroot" in text
