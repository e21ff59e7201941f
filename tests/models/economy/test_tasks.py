"""model=economy through task=simulate, calibrate, analyze and plan, from the composed shipped config."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from lpm_graph import tasks
from tests.conftest import compose_config

QUIET = ("threads=1", "progress=false")


def test_model_economy_composes_with_the_synthetic_population_at_its_size():
    cfg = compose_config(["model=economy"])
    assert cfg.population._target_.endswith("generate_population")
    assert cfg.population.num_people == 20000 and cfg.steps == 60  # conf/task_model/simulate_economy.yaml
    assert compose_config(["model=economy", "population.num_people=500"]).population.num_people == 500


def test_simulate_writes_its_files_and_plot(tmp_path):
    cfg = compose_config(["model=economy", "population.num_people=800", "steps=10", "replicates=2", *QUIET])
    summary = tasks.get("simulate")(cfg, tmp_path)
    for name in ("trajectory.parquet", "summary.json", "trajectory.png"):
        assert (tmp_path / name).stat().st_size > 0
    frame = pd.read_parquet(tmp_path / "trajectory.parquet")
    for col in ("unemployment_rate", "output", "consumption", "price_index", "savings", "savings_age_30-40",
                "hires", "separations", "employed_age_20-30"):
        assert col in frame.columns
    assert len(frame) == 11 * 2
    written = json.loads((tmp_path / "summary.json").read_text())
    assert {"mean_unemployment", "final_unemployment", "total_output", "final_price"} <= set(written["outcomes"])
    assert 0 < summary["final_unemployment"] < 0.2


def test_calibrate_recovers_the_separation_rate_and_matching_efficiency(tmp_path, make_observations):
    """Observations of the mean field with s = 0.025, A = 0.35 (3,000 people, 24 months, no noise); the fit from
    s = 0.05, A = 0.7 (150 iterations) lands within 2% of both (measured: 0.4% and 0.3%).  The two are
    told apart by the level of unemployment (about s / A^2) and the speed of its approach (s + h)."""
    truth = make_observations(tmp_path, overrides=["population.num_people=3000"], steps=24, mode="expected",
                              noise=0.0, name="obs")
    cfg = compose_config(["task=calibrate", "model=economy", "population.num_people=3000", "steps=24",
                          f"observations.path={tmp_path / 'obs.csv'}", "task.iterations=150",
                          "task.checkpoint_every=0", "task.plot=false", *QUIET])
    metrics = tasks.get("calibrate")(cfg, tmp_path / "out")
    fitted = metrics["fitted"]
    for name in ("labour.separation_rate", "labour.matching_efficiency"):
        assert fitted[name] == pytest.approx(truth[name], rel=0.02), name
    assert metrics["learnable"] == ["labour.separation_rate", "labour.matching_efficiency"]
    loss = pd.read_csv(tmp_path / "out" / "loss.csv")
    assert loss.loss.iloc[-5:].mean() < 1e-3 * loss.loss.iloc[0]


def test_analyze_sensitivity_and_shock_scenarios(tmp_path):
    cfg = compose_config(["task=analyze", "model=economy", "population.num_people=2000", "steps=24",
                          "task.replicates=3", *QUIET])
    summary = tasks.get("analyze")(cfg, tmp_path)
    for name in ("sensitivity.csv", "sensitivity.png", "counterfactuals.csv", "counterfactuals.png"):
        assert (tmp_path / name).stat().st_size > 0
    sens = pd.read_csv(tmp_path / "sensitivity.csv").set_index(["outcome", "parameter"])
    assert float(sens.loc[("mean_unemployment", "labour.separation_rate"), "derivative"]) > 0
    assert float(sens.loc[("mean_unemployment", "labour.matching_efficiency"), "derivative"]) < 0
    diffs = summary["analyses"]["counterfactuals"]["differences"]
    assert set(diffs) == {"firm_closure", "demand_shock"}
    for scenario in diffs:  # both shocks raise unemployment
        assert diffs[scenario]["mean_unemployment"]["difference"] > 0
    assert diffs["firm_closure"]["mean_unemployment"]["ci95"][0] > 0, diffs["firm_closure"]["mean_unemployment"]


def test_plan_lists_the_three_processes(tmp_path):
    cfg = compose_config(["task=plan", "model=economy"])
    counts = tasks.get("plan")(cfg, tmp_path)
    assert counts["processes"] == 3 and counts["parameters"] == 13
    text = (tmp_path / "plan.txt").read_text()
    for line in ("price [environment] PriceLevel", "labour [update] LabourMarket", "market [update] GoodsMarket"):
        assert line in text
