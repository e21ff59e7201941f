"""task=simulate as a pure function: outputs agree with the returned summary."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from lpm_graph.data import ConfigError, PopulationGraphError, load_population
from lpm_graph.tasks.simulate import config_hash, simulate
from tests.conftest import compose_config


def test_simulate_writes_consistent_outputs(tmp_path):
    cfg = compose_config(["population.num_people=2000", "steps=30", "replicates=2", "progress=false",
                          "model=seird", "task.save_population=true"])
    summary = simulate(cfg, tmp_path)
    traj = pd.read_parquet(tmp_path / "trajectory.parquet")
    assert len(traj) == 31 * 2 and set(traj.replicate) == {0, 1}
    compartments = traj[["S", "E", "I", "R", "D"]].sum(axis=1)
    assert (compartments == 2000).all()
    age_cols = [c for c in traj if c.startswith("new_infections_age_")]
    assert len(age_cols) == 9 and (traj[age_cols].sum(axis=1) == traj.new_infections).all()
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["attack_rate"] == pytest.approx(summary["attack_rate"])
    final = traj[traj.step == 30]
    assert summary["attack_rate"] == pytest.approx((1 - final.S / 2000).mean())
    assert summary["peak_infectious"] == pytest.approx(traj.groupby("step").I.mean().max())
    assert on_disk["config_hash"] == config_hash(cfg) and len(on_disk["config_hash"]) == 16
    assert (tmp_path / "epidemic_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_population(tmp_path / "population.pt")["person"].num_nodes == 2000
    assert not list(tmp_path.glob(".*tmp*")), "no temporary files left behind"


def test_csv_output_and_config_hash_changes_with_config(tmp_path):
    a = compose_config(["population.num_people=500", "steps=5", "progress=false", "task.trajectory_format=csv",
                        "task.plot=false"])
    simulate(a, tmp_path)
    assert (tmp_path / "trajectory.csv").exists() and not (tmp_path / "epidemic_curves.png").exists()
    b = compose_config(["population.num_people=500", "steps=6", "progress=false"])
    assert config_hash(a) != config_hash(b)


@pytest.mark.parametrize("override, error, match", [
    ("model.params.initial_infected_fraction=1.5", ConfigError, "initial_infected_fraction must be a probability"),
    ("population.num_people=0", ConfigError, "population.num_people"),
    ("steps=0", ConfigError, "steps must be a positive integer"),
])
def test_bad_input_fails_before_writing_anything(tmp_path, override, error, match):
    cfg = compose_config(["population.num_people=300", "steps=5", "progress=false", override])
    with pytest.raises(error, match=match):
        simulate(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_population_without_a_modelled_venue_type_is_refused(tmp_path):
    cfg = compose_config(["population.num_people=300", "steps=5", "progress=false",
                          "model.interactions.0.venue_types=[household,school,workplace]"])
    with pytest.raises(PopulationGraphError, match="not covered \\['community'\\]"):
        simulate(cfg, tmp_path)
