"""task=simulate as a pure function: outputs agree with the returned summary and the configured metric."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from lpm_graph.cli import DEFAULT_METRIC, metric_of
from lpm_graph.data import load_population
from lpm_graph.errors import ConfigError, PopulationGraphError
from lpm_graph.tasks import TASKS, get
from lpm_graph.tasks.simulate import build, config_hash, simulate
from tests.conftest import compose_config

SMALL = ["population.num_people=2000", "steps=30", "progress=false"]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("simulate")
    cfg = compose_config([*SMALL, "replicates=2", "model=seird", "task.save_population=true", "metric=peak_size"])
    return cfg, simulate(cfg, out), out


def test_simulate_writes_consistent_outputs(simulated):
    cfg, summary, out = simulated
    traj = pd.read_parquet(out / "trajectory.parquet")
    assert len(traj) == 31 * 2 and set(traj.replicate) == {0, 1} and set(traj.step) == set(range(31))
    assert (traj[["S", "E", "I", "R", "D"]].sum(axis=1) == 2000).all()
    age_cols = [c for c in traj if c.startswith("new_infections_age_")]
    assert len(age_cols) == 9 and (traj[age_cols].sum(axis=1) == traj.new_infections).all()
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["attack_rate"] == pytest.approx(summary["attack_rate"])
    final = traj[traj.step == 30]
    assert summary["attack_rate"] == pytest.approx((1 - final.S / 2000).mean())
    assert summary["outcomes"]["attack_rate"]["sd"] == pytest.approx((1 - final.S / 2000).std(), rel=1e-5)
    assert summary["peak_size"] == pytest.approx(traj.groupby("replicate").I.max().mean())
    assert summary["deaths"] == pytest.approx(final.D.mean())
    assert summary["num_nodes"]["person"] == 2000 and summary["steps"] == 30 and summary["replicates"] == 2
    assert on_disk["params"]["transmission.beta_household"] == pytest.approx(0.4)
    assert on_disk["config_hash"] == config_hash(cfg) and len(on_disk["config_hash"]) == 16
    assert (out / "trajectory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_population(out / "population.pt")["person"].num_nodes == 2000
    assert not list(out.glob(".*tmp*")), "no temporary files left behind"


def test_the_configured_metric_is_what_the_run_returns(simulated):
    cfg, summary, _ = simulated
    assert TASKS["simulate"][1] == "simulate" and get("simulate") is simulate
    assert metric_of("simulate", summary, cfg.metric) == ("peak_size", summary["peak_size"])
    # without metric: the task's default, for simulate the model's first outcome
    assert DEFAULT_METRIC["simulate"] is None
    assert metric_of("simulate", summary, None) == ("attack_rate", summary["attack_rate"])
    with pytest.raises(ConfigError, match="metric='nowhere' is not a number in the simulate summary"):
        metric_of("simulate", summary, "nowhere")
    # a mapping of counts is summed (num_nodes: every node); a mapping of anything else is not a metric
    assert metric_of("simulate", summary, "num_nodes") == ("num_nodes", float(sum(summary["num_nodes"].values())))
    for entry in ("outcomes", "params"):
        with pytest.raises(ConfigError, match=f"metric='{entry}' is not a number in the simulate summary"):
            metric_of("simulate", summary, entry)


def test_csv_output_and_config_hash_changes_with_config(tmp_path):
    a = compose_config(["population.num_people=500", "steps=5", "progress=false", "model.params.seir.initial_infected=1",
                        "task.trajectory_format=csv",
                        "task.plot=false"])
    simulate(a, tmp_path)
    assert (tmp_path / "trajectory.csv").exists() and not (tmp_path / "trajectory.png").exists()
    assert not (tmp_path / "trajectory.parquet").exists()
    assert len(pd.read_csv(tmp_path / "trajectory.csv")) == 6
    b = compose_config(["population.num_people=500", "steps=6", "progress=false", "model.params.seir.initial_infected=1"])
    assert config_hash(a) != config_hash(b)


def test_float64_runs_build_float64_layouts():
    """dtype=float64 prepares the graph in float64: the stacked venue layout's values and its per-venue
    factors (1 / total weight), not only the state; a float32 layout would round every venue sum."""
    cfg = compose_config(["population.num_people=300", "steps=3", "progress=false", "dtype=float64",
                          "model.params.seir.initial_infected=1"])
    model, graph, _, run, _ = build(cfg)
    assert run.dtype == "float64" and graph.dtype == torch.float64
    stack = graph.stack(model.process("transmission").edge_types)
    assert stack.adjacency.csr.values().dtype == torch.float64
    assert stack.adjacency.csr_t.values().dtype == torch.float64
    assert stack.inverse_weight.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in model.params.as_dict().values())
    traj = model(graph, steps=3)
    assert traj.series["S"].dtype == torch.float64
    f32, g32, *_ = build(compose_config(["population.num_people=300", "steps=3", "progress=false"]))
    assert g32.stack(f32.process("transmission").edge_types).inverse_weight.dtype == torch.float32


@pytest.mark.parametrize("override, error, match", [
    ("model.params.seir.initial_infected_fraction=1.5", ConfigError,
     "model.params.seir.initial_infected_fraction must be a probability"),
    ("+model.params.seir.beta=0.1", ConfigError, "model.params.seir.beta is not read by any process"),
    ("population.num_people=0", ConfigError, "population.num_people"),
    ("steps=0", ConfigError, "steps must be a positive integer"),
    ("model.params.seir.initial_infected=301", ConfigError,
     "model.params.seir.initial_infected = 301 but the population has 300"),
])
def test_bad_input_fails_before_writing_anything(tmp_path, override, error, match):
    cfg = compose_config(["population.num_people=300", "steps=5", "progress=false", override])
    with pytest.raises(error, match=match):
        simulate(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_missing_population_file_is_an_error_the_cli_reports(tmp_path):
    # the CLI turns ConfigError and PopulationGraphError into one line and exit code 2; a plain
    # FileNotFoundError escaped as Hydra's multi-line instantiation error with exit code 1
    cfg = compose_config(["population=file", f"population.path={tmp_path / 'none.pt'}", "steps=2", "progress=false"])
    with pytest.raises(PopulationGraphError, match="population file '.*none.pt' does not exist") as info:
        simulate(cfg, tmp_path / "out")
    assert isinstance(info.value, FileNotFoundError)
    assert not (tmp_path / "out").exists()


def test_population_with_a_venue_type_the_model_does_not_cover_is_refused(tmp_path):
    cfg = compose_config(["population.num_people=300", "steps=5", "progress=false",
                          "model.processes.transmission.venue_types=[household,school,workplace]",
                          "~model.params.transmission.beta_community"])
    with pytest.raises(PopulationGraphError, match="also has \\['community'\\] \\(no beta for them"):
        simulate(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_two_writers_of_one_output_file_do_not_share_a_temporary(tmp_path):
    # the temporary was `.<stem>.tmp<suffix>` for every writer: the second writer's rename took the first's
    # temporary away, and the first failed with FileNotFoundError
    from lpm_graph.tasks.simulate import atomic_write

    target = tmp_path / "summary.json"

    def outer(p):
        p.write_text("outer")
        atomic_write(target, lambda q: q.write_text("inner"))  # another writer of the same file meanwhile

    atomic_write(target, outer)
    assert target.read_text() == "outer"  # the last rename wins; nothing is lost on the way
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary left behind
    names = []
    atomic_write(tmp_path / "plot.png", lambda p: names.append(p.name) or p.write_bytes(b"x"))
    assert names[0].endswith(".png")  # a writer may pick the format by the suffix (matplotlib does)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_output_files_follow_the_umask(tmp_path, umask):
    import os

    from lpm_graph.tasks.simulate import atomic_write

    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "a.json", lambda p: p.write_text("{}"))
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~umask
