"""The lpm-graph command, run as a user would, in a temporary directory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SMALL = ["population.num_people=1500", "steps=12"]


def run_cli(args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "lpm_graph", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def test_cli_runs_and_writes_outputs_into_the_run_dir(tmp_path):
    proc = run_cli([*SMALL, "seed=7", "model.params.beta_household=0.3", "hydra.run.dir=run"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "run"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 7 and summary["params"]["beta_household"] == pytest.approx(0.3)
    assert summary["num_people"] == 1500 and summary["steps"] == 12
    assert (out / "trajectory.parquet").stat().st_size > 0 and (out / "epidemic_curves.png").exists()
    assert "simulate" in proc.stderr and "step" in proc.stderr  # progress bar
    assert "attack_rate=" in proc.stderr


def test_multirun_sweep_with_the_basic_launcher(tmp_path):
    proc = run_cli(["-m", *SMALL, "seed=1,2", "hydra.sweep.dir=sweep", "progress=false"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    summaries = [json.loads((tmp_path / "sweep" / str(i) / "summary.json").read_text()) for i in (0, 1)]
    assert [s["seed"] for s in summaries] == [1, 2]
    assert summaries[0]["config_hash"] != summaries[1]["config_hash"]


@pytest.mark.parametrize("override, message", [
    ("steps=0", "steps must be a positive integer"),
    ("model.params.fatality=2", ""),
    ("population.school.enrolment=1.3", "population.school.enrolment must be a probability in [0, 1]"),
    ("model.params.beta_household=-1", "model.params.beta_household must be a finite number >= 0"),
])
def test_bad_values_exit_with_one_clear_line(tmp_path, override, message):
    proc = run_cli([*SMALL, override, "hydra.run.dir=run"], tmp_path)
    assert proc.returncode != 0
    if message:
        assert proc.returncode == 2
        assert f"lpm-graph: error: {message}" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "summary.json").exists()


def test_unknown_group_choice_lists_the_available_options(tmp_path):
    proc = run_cli(["population=atlantis"], tmp_path)
    assert proc.returncode != 0
    assert "population/atlantis" in proc.stderr and "synthetic" in proc.stderr
    assert "Traceback" not in proc.stderr
