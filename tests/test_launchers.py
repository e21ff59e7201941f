"""A small sweep (two seeds x two values of a parameter) under Hydra's launchers: the same numbers as the basic one.

Member for member (matched by the overrides Hydra saved in each), a launcher's sweep must hold, byte for byte,
the trajectory numbers and outcomes of the basic launcher's, and the ensemble summary the callback writes at the
end the same numbers.  joblib (and ray, where installed) run the whole sweep; submitit, which starts one Python
per member, runs the two seeds at one value of the parameter (an ensemble the basic sweep also holds).
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
BETA = "model.params.transmission.beta_household"
LAUNCHERS = {
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", f"{BETA}=0.4"],
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


def by_overrides(sweep):
    """``{overrides: member folder}`` of a sweep folder."""
    return {tuple(yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text())): d
            for d in sweep.iterdir() if (d / ".hydra" / "overrides.yaml").is_file()}


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_a_launcher_gives_the_basic_launchers_numbers(basic, launcher, tmp_path):
    pytest.importorskip(PLUGINS[launcher])
    proc = run_cli(["-m", *SWEEP, *LAUNCHERS[launcher], "hydra.sweep.dir=sweep"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    sweep = tmp_path / "sweep"
    ours, theirs = by_overrides(sweep), by_overrides(basic)
    expected = 2 if any(o.startswith(BETA) for o in LAUNCHERS[launcher]) else 4
    assert len(ours) == expected and set(ours) <= set(theirs), (sorted(ours), sorted(theirs))
    seen = set()
    for overrides, member in ours.items():
        (_, frame, summary), (_, ref_frame, ref_summary) = numbers(member), numbers(theirs[overrides])
        assert list(frame.columns) == list(ref_frame.columns) and frame.dtypes.equals(ref_frame.dtypes)
        for c in frame.columns:
            assert frame[c].to_numpy().tobytes() == ref_frame[c].to_numpy().tobytes(), (overrides, c)
        assert summary == ref_summary
        seen.add(frame.to_numpy().tobytes())
    assert len(seen) == expected  # different runs: a launcher that ran one config for every job would fail
    assert "ensemble summary written" in proc.stderr
    table, ref = pd.read_csv(sweep / "ensemble.csv"), pd.read_csv(basic / "ensemble.csv")
    if expected == 4:
        assert (sweep / "ensemble.csv").read_bytes() == (basic / "ensemble.csv").read_bytes()
    else:  # one ensemble, "all": the basic sweep's ensemble at that value
        ref = ref[ref["ensemble"] == f"{BETA}=0.4"].reset_index(drop=True)
        assert set(table["ensemble"]) == {"all"}
        pd.testing.assert_frame_equal(table.drop(columns="ensemble"), ref.drop(columns="ensemble"), check_exact=True)


def test_a_sweep_with_one_impossible_value_fails_before_its_first_job_under_joblib(tmp_path, capsys, monkeypatch):
    pytest.importorskip(PLUGINS["joblib"])
    from lpm_graph.cli import precheck

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        precheck(["-m", "model.params.seir.susceptibility=0.5,-1", *SMALL, *LAUNCHERS["joblib"]])
    assert e.value.code == 2
    assert "model.params.seir.susceptibility must be a finite number >= 0, got -1" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_the_basic_sweeps_summary_is_its_members(basic):
    table = pd.read_csv(basic / "ensemble.csv")
    assert sorted(table["ensemble"].unique()) == ["model.params.transmission.beta_household=0.2",
                                                  "model.params.transmission.beta_household=0.4"]
    for beta, members in (("0.2", (0, 2)), ("0.4", (1, 3))):  # job order: seed outer, beta inner
        frames = [pd.read_parquet(basic / str(i) / "trajectory.parquet") for i in members]
        rows = table[(table["ensemble"] == f"model.params.transmission.beta_household={beta}")
                     & (table["observable"] == "I")].sort_values("step")
        assert rows["mean"].to_numpy() == pytest.approx(np.mean([f["I"].to_numpy() for f in frames], axis=0))
