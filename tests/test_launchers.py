"""A small sweep (two seeds x two values of a parameter) under Hydra's launchers: the same numbers as the basic one.

Every launcher runs the same four jobs of ``lpm-graph -m``; member ``i`` of each sweep must hold the same
overrides and, byte for byte, the same trajectory numbers and outcomes as member ``i`` of the basic launcher's
sweep, and the ensemble summary the callback writes at the end must be the same file.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.test_cli import SMALL, run_cli

pytestmark = pytest.mark.slow
SWEEP = [*SMALL, "seed=1,2", "model.params.transmission.beta_household=0.2,0.4", "task.plot=false",
         "task.report=false", "progress=false"]
LAUNCHERS = {
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"],
    # only where the ray extra is installed (an environment of its own: it pins cloudpickle<3, joblib needs >=3)
    "ray": ["hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2"],
}
PLUGINS = {"joblib": "hydra_plugins.hydra_joblib_launcher", "submitit_local": "hydra_plugins.hydra_submitit_launcher",
           "ray": "hydra_plugins.hydra_ray_launcher"}


def numbers(member):
    frame = pd.read_parquet(member / "trajectory.parquet")
    summary = json.loads((member / "summary.json").read_text())
    overrides = yaml.safe_load((member / ".hydra" / "overrides.yaml").read_text())
    return overrides, frame, {k: summary[k] for k in ("outcomes", "params", "seed", "num_nodes")}


@pytest.fixture(scope="module")
def basic(tmp_path_factory):
    where = tmp_path_factory.mktemp("basic")
    proc = run_cli(["-m", *SWEEP, "hydra.sweep.dir=sweep"], where)
    assert proc.returncode == 0, proc.stderr
    return where / "sweep"


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_a_launcher_gives_the_basic_launchers_numbers(basic, launcher, tmp_path):
    pytest.importorskip(PLUGINS[launcher])
    proc = run_cli(["-m", *SWEEP, *LAUNCHERS[launcher], "hydra.sweep.dir=sweep"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    sweep = tmp_path / "sweep"
    seen = set()
    for i in range(4):
        (ours, frame, summary), (theirs, ref_frame, ref_summary) = numbers(sweep / str(i)), numbers(basic / str(i))
        assert ours == theirs
        assert list(frame.columns) == list(ref_frame.columns) and frame.dtypes.equals(ref_frame.dtypes)
        for c in frame.columns:
            assert frame[c].to_numpy().tobytes() == ref_frame[c].to_numpy().tobytes(), (i, c)
        assert summary == ref_summary
        seen.add(frame.to_numpy().tobytes())
    assert len(seen) == 4  # the four jobs are four different runs: a launcher that ran one config 4x would fail
    assert (sweep / "ensemble.csv").read_bytes() == (basic / "ensemble.csv").read_bytes()
    assert "ensemble summary written" in proc.stderr


def test_a_sweep_with_one_impossible_value_fails_before_its_first_job_under_joblib(tmp_path):
    pytest.importorskip(PLUGINS["joblib"])
    proc = run_cli(["-m", "model.params.seir.susceptibility=0.5,-1", *SMALL, *LAUNCHERS["joblib"]], tmp_path)
    assert proc.returncode == 2
    assert "model.params.seir.susceptibility must be a finite number >= 0, got -1" in proc.stderr
    assert not (tmp_path / "multirun").exists()


def test_the_basic_sweeps_summary_is_its_members(basic):
    table = pd.read_csv(basic / "ensemble.csv")
    assert sorted(table["ensemble"].unique()) == ["model.params.transmission.beta_household=0.2",
                                                  "model.params.transmission.beta_household=0.4"]
    for beta, members in (("0.2", (0, 2)), ("0.4", (1, 3))):  # job order: seed outer, beta inner
        frames = [pd.read_parquet(basic / str(i) / "trajectory.parquet") for i in members]
        rows = table[(table["ensemble"] == f"model.params.transmission.beta_household={beta}")
                     & (table["observable"] == "I")].sort_values("step")
        assert rows["mean"].to_numpy() == pytest.approx(np.mean([f["I"].to_numpy() for f in frames], axis=0))
