"""The package works installed from a built wheel, configs included, not only editable."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                           "--quiet", "-w", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (whl,) = out.glob("lpm_graph-*.whl")
    return whl


def test_wheel_carries_configs_and_console_script(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    source_configs = {str(p.relative_to(ROOT / "conf")) for p in (ROOT / "conf").rglob("*.yaml")}
    packaged = {n.removeprefix("lpm_graph/conf/") for n in names if n.startswith("lpm_graph/conf/")}
    assert source_configs and source_configs == packaged
    # every module of the source tree, the core and the models included
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "lpm_graph").rglob("*.py")}
    assert {"lpm_graph/core/loop.py", "lpm_graph/models/epidemic/seir.py"} <= modules <= set(names)
    shipped = {str(p.relative_to(ROOT / "data")) for p in (ROOT / "data" / "observations").rglob("*") if p.is_file()}
    assert shipped <= {n.removeprefix("lpm_graph/_data/") for n in names}
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "lpm-graph = lpm_graph.cli:main" in text


def test_cli_runs_from_the_installed_wheel(wheel, tmp_path):
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target),
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    work = tmp_path / "work"
    work.mkdir()
    # the installed copy comes first on the path; the working directory holds no source tree
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = "import lpm_graph, lpm_graph.cli as c; print(lpm_graph.__file__); print(c.config_dir())"
    where = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True)
    module_file, conf = where.stdout.split()
    assert module_file.startswith(str(target)) and conf == str(target / "lpm_graph" / "conf")
    proc = subprocess.run([sys.executable, "-m", "lpm_graph", "population.num_people=800", "steps=5",
                           "model.params.seir.initial_infected=1",
                           "progress=false", "hydra.run.dir=run"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((work / "run" / "summary.json").read_text())["num_nodes"]["person"] == 800
    # the shipped observations are found inside the installed package
    proc = subprocess.run([sys.executable, "-m", "lpm_graph", "task=calibrate", "population.num_people=800",
                           "task.iterations=1", "task.plot=false", "progress=false", "hydra.run.dir=cal"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (work / "cal" / "fitted_params.json").exists()
