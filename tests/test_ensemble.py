"""The ensemble summary of a multirun (lpm_graph/ensemble.py), on sweep folders written here by hand.

The folders have the layout Hydra writes (``multirun.yaml`` with the command line's overrides, one folder per
job with ``.hydra/overrides.yaml``, ``summary.json`` and a trajectory); the expected numbers are computed here
from the member files with a quantile written out (linear interpolation between order statistics), not numpy's.
"""
from __future__ import annotations

import json
import math
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from lpm_graph import cli
from lpm_graph.ensemble import EnsembleSummary, members, summarize
from lpm_graph.errors import ConfigError, EnsembleError

COMMON = ["steps=4", "progress=false"]
SEEDS = [1, 2, 3]
BETAS = ["0.2", "0.4"]
REPLICATES = 2


def write_sweep(root, seeds=SEEDS, betas=BETAS, order=None, fmt="parquet"):
    """A sweep ``seed=<seeds> beta=<betas>`` of ``REPLICATES`` replicates each, with random trajectories.

    Folder ``i`` holds job ``order[i]`` (default: job ``i``), as a custom ``hydra.sweep.subdir`` may.
    """
    sweep = root / "sweep"
    sweep.mkdir()
    task = [*COMMON, "seed=" + ",".join(map(str, seeds)), "model.params.transmission.beta_household=" + ",".join(betas)]
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": task}}, "task": {"name": "simulate"}}))
    jobs = [[*COMMON[:1], "progress=False", f"seed={s}", f"model.params.transmission.beta_household={b}"]
            for s in seeds for b in betas]
    rng = np.random.default_rng(0)
    order = order or list(range(len(jobs)))
    for folder, number in enumerate(order):
        out = sweep / f"job{folder}"
        (out / ".hydra").mkdir(parents=True)
        (out / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(jobs[number]))
        frame = pd.DataFrame({"step": np.repeat(np.arange(5), REPLICATES), "replicate": np.tile(np.arange(REPLICATES), 5),
                              "I": rng.integers(0, 50, 5 * REPLICATES).astype(np.float32),
                              "mean_opinion": rng.random(5 * REPLICATES)})
        frame = frame.sample(frac=1.0, random_state=folder)  # rows in any order: read by (step, replicate)
        if fmt == "parquet":
            frame.to_parquet(out / "trajectory.parquet", index=False)
        else:
            frame.to_csv(out / "trajectory.csv", index=False)
        (out / "summary.json").write_text(json.dumps({"outcomes": {"peak": {"mean": float(rng.random())}}}))
    return sweep, jobs


def quantile(values, q):
    """The linear-interpolation quantile (Hyndman & Fan type 7), written out."""
    xs = sorted(values)
    h = (len(xs) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def by_hand(sweep, beta, observable, step):
    """The samples of one (ensemble, observable, step): every replicate of every member of that beta."""
    values = []
    for folder in sorted(sweep.glob("job*")):
        overrides = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
        path = folder / "trajectory.parquet"
        complete = (folder / "summary.json").exists() and (path.exists() or (folder / "trajectory.csv").exists())
        if f"model.params.transmission.beta_household={beta}" not in overrides or not complete:
            continue
        frame = pd.read_parquet(path) if path.exists() else pd.read_csv(folder / "trajectory.csv")
        values += [float(v) for v in frame.loc[frame["step"] == step, observable]]
    return values


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_the_summary_is_the_mean_and_quantiles_of_each_ensembles_members(tmp_path, fmt):
    sweep, _ = write_sweep(tmp_path, order=[3, 0, 5, 1, 4, 2], fmt=fmt)  # folders not in job order
    paths = summarize(sweep, quantiles=[0.05, 0.5, 0.95])
    table = pd.read_csv(paths["csv"])
    assert list(table.columns) == ["ensemble", "observable", "step", "samples", "mean", "q5", "q50", "q95"]
    # one ensemble per beta (the seeds are its members), one row per observable and step
    assert sorted(table["ensemble"].unique()) == [f"model.params.transmission.beta_household={b}" for b in BETAS]
    assert len(table) == len(BETAS) * 2 * 5
    for row in table.itertuples():
        values = by_hand(sweep, row.ensemble.split("=")[1], row.observable, row.step)
        assert len(values) == len(SEEDS) * REPLICATES == row.samples
        assert row.mean == pytest.approx(sum(values) / len(values), rel=1e-12, abs=1e-12)
        for q, got in ((0.05, row.q5), (0.5, row.q50), (0.95, row.q95)):
            assert got == pytest.approx(quantile(values, q), rel=1e-12, abs=1e-12)
    info = json.loads(paths["json"].read_text())
    assert info["complete"] == info["members"] == 6 and info["gaps"] == []
    for ensemble in info["ensembles"]:
        beta = ensemble["ensemble"].split("=")[1]
        assert sorted(m["overrides"][2] for m in ensemble["members"]) == [f"seed={s}" for s in SEEDS]
        peaks = [json.loads((sweep / m["folder"] / "summary.json").read_text())["outcomes"]["peak"]["mean"]
                 for m in ensemble["members"]]
        assert all(f"beta_household={beta}" in m["overrides"][3] for m in ensemble["members"])
        assert ensemble["outcomes"]["peak"]["mean"] == pytest.approx(sum(peaks) / 3, rel=1e-12)
        assert ensemble["outcomes"]["peak"]["q95"] == pytest.approx(quantile(peaks, 0.95), rel=1e-12)


def test_over_names_what_varies_within_an_ensemble(tmp_path):
    sweep, _ = write_sweep(tmp_path)
    table = pd.read_csv(summarize(sweep, over=["seed", "model.params.transmission.beta_household"])["csv"])
    assert set(table["ensemble"]) == {"all"} and set(table["samples"]) == {len(SEEDS) * len(BETAS) * REPLICATES}
    row = table[(table["observable"] == "I") & (table["step"] == 3)].iloc[0]
    values = by_hand(sweep, BETAS[0], "I", 3) + by_hand(sweep, BETAS[1], "I", 3)
    assert row["q50"] == pytest.approx(quantile(values, 0.5))


def test_members_match_the_jobs_hydra_would_run(tmp_path):
    sweep, jobs = write_sweep(tmp_path, order=[2, 0, 1, 3, 5, 4])
    found = members(sweep)
    assert [m.overrides for m in found] == [tuple(j) for j in jobs]
    assert [m.folder.name for m in found] == ["job1", "job2", "job0", "job3", "job5", "job4"]
    assert {m.status for m in found} == {"complete"}


@pytest.mark.parametrize("damage, status", [("folder", "missing"), ("summary", "failed"), ("trajectory", "failed")])
def test_a_member_that_is_not_complete_is_named_and_nothing_is_written(tmp_path, damage, status):
    sweep, _ = write_sweep(tmp_path)
    job = sweep / "job2"  # seed=2, beta=0.2
    if damage == "folder":
        for f in sorted(job.rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
        job.rmdir()
    else:
        (job / ("summary.json" if damage == "summary" else "trajectory.parquet")).unlink()
    with pytest.raises(EnsembleError, match=r"1 of 6 members are not complete") as e:
        summarize(sweep)
    assert "member 2 (steps=4 progress=False seed=2 model.params.transmission.beta_household=0.2;" in str(e.value)
    assert status in str(e.value) and "--allow-missing" in str(e.value)
    assert not (sweep / "ensemble.csv").exists() and not (sweep / "ensemble.json").exists()
    assert not list(sweep.glob(".ensemble*"))  # no temporary left behind

    # allowed: the others are summarised, the gap is named, and its ensemble has one member fewer
    paths = summarize(sweep, allow_missing=True)
    info = json.loads(paths["json"].read_text())
    assert info["complete"] == 5 and len(info["gaps"]) == 1 and "seed=2" in info["gaps"][0]
    (gapped,) = [e for e in info["ensembles"] if e["gaps"]]
    assert gapped["ensemble"].endswith("=0.2") and gapped["gaps"][0]["status"] == status
    table = pd.read_csv(paths["csv"])
    assert set(table.loc[table["ensemble"] == gapped["ensemble"], "samples"]) == {2 * REPLICATES}
    row = table[(table["ensemble"] == gapped["ensemble"]) & (table["observable"] == "I") & (table["step"] == 4)]
    assert row["mean"].item() == pytest.approx(np.mean(by_hand(sweep, "0.2", "I", 4)))


def test_members_that_ran_different_models_are_refused(tmp_path):
    sweep, _ = write_sweep(tmp_path)
    path = sweep / "job4" / "trajectory.parquet"
    pd.read_parquet(path).rename(columns={"I": "infected"}).to_parquet(path, index=False)
    with pytest.raises(EnsembleError, match=r"member 4 .*columns \['infected', 'mean_opinion'\].*must run one model"):
        summarize(sweep)


def test_members_with_different_outcomes_are_refused(tmp_path):
    sweep, _ = write_sweep(tmp_path)
    (sweep / "job3" / "summary.json").write_text(json.dumps({"outcomes": {"attack_rate": {"mean": 0.1}}}))
    with pytest.raises(EnsembleError, match=r"member 3 .*outcomes \['attack_rate'\], the ensemble's first member "
                                            r"\['peak'\]"):
        summarize(sweep)
    assert not (sweep / "ensemble.csv").exists()


def test_a_folder_that_is_no_sweep_and_bad_quantiles_are_refused(tmp_path):
    with pytest.raises(EnsembleError, match=r"has no multirun.yaml"):
        summarize(tmp_path)
    sweep, _ = write_sweep(tmp_path)
    with pytest.raises(ConfigError, match=r"quantiles must be a non-empty list of numbers in \[0, 1\], got \[0.5, 1.5\]"):
        summarize(sweep, quantiles=[0.5, 1.5])
    with pytest.raises(ConfigError, match=r"hydra.callbacks.ensemble.quantiles lists a quantile twice"):
        EnsembleSummary(quantiles=[0.5, 0.5])
    with pytest.raises(ConfigError, match=r"hydra.callbacks.ensemble.over must be a list of override keys"):
        EnsembleSummary(over="seed")


def run_main(monkeypatch, args):
    monkeypatch.setattr(sys, "argv", ["lpm-graph", *args])
    try:
        cli.main()
    except SystemExit as e:
        return e.code
    return 0


def test_the_ensemble_command(tmp_path, monkeypatch, capsys):
    sweep, _ = write_sweep(tmp_path)
    assert run_main(monkeypatch, ["ensemble", str(sweep), "--quantiles", "0.1,0.9"]) == 0
    assert "2 ensembles of 6 members" in capsys.readouterr().err
    assert list(pd.read_csv(sweep / "ensemble.csv").columns)[-3:] == ["mean", "q10", "q90"]
    (sweep / "job0" / "summary.json").unlink()
    (sweep / "ensemble.csv").unlink()
    assert run_main(monkeypatch, ["ensemble", str(sweep)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lpm-graph: error: ") and "member 0 (" in err[0]
    assert not (sweep / "ensemble.csv").exists()
    assert run_main(monkeypatch, ["ensemble", str(sweep), "--allow-missing"]) == 0
    assert "1 members missing or failed, named in ensemble.json" in capsys.readouterr().err
    assert run_main(monkeypatch, ["ensemble", str(sweep), "--quantiles", "a,b"]) == 2
    assert "--quantiles must be comma-separated numbers" in capsys.readouterr().err


def test_bad_callback_values_stop_a_multirun_before_its_first_job(capsys):
    with pytest.raises(SystemExit) as e:
        cli.precheck(["-m", "seed=0,1", "steps=2", "hydra.callbacks.ensemble.quantiles=[0.5,3]"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == ("lpm-graph: error: hydra.callbacks.ensemble.quantiles must be a "
                                               "non-empty list of numbers in [0, 1], got [0.5, 3.0]")
