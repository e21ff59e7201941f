"""Every command the documentation shows runs, as written, at a small size.

The commands are read from the files themselves (fenced ``lpm-graph ...`` and
``make run ...`` lines, and inline ones in backticks), so a command added to
them is tested without editing this file.  Each runs in-process through
:func:`lpm_graph.cli.main` (the console script's function: pre-check,
Hydra, the task) with its own overrides kept and only the sizes shrunk:
people, steps, iterations, a multirun's sweeps (:func:`small`).  Placeholders the text explains
(``outputs/<date>/<time>/checkpoint.pt``, ``my_cases.csv``) are filled with a
checkpoint of an earlier command and a file of one column of cases.
"""
from __future__ import annotations

import json
import re
import shlex
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

from lpm_graph import cli
from lpm_graph.errors import CalibrationWarning
from tests.conftest import compose_config

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "data/README.md", "docs/opinion.md")


def documented_commands() -> list[tuple[str, str]]:
    """(document, command) for every ``lpm-graph`` / ``make run`` command shown, in order, once each."""
    found = []
    for doc in DOCUMENTS:
        text = (ROOT / doc).read_text()
        fenced = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S)
        for block in fenced:
            joined = re.sub(r"\\\n\s*", " ", block)
            found += [(doc, line.strip()) for line in joined.splitlines()
                      if line.strip().startswith(("lpm-graph ", "make run"))]
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        found += [(doc, c) for c in re.findall(r"`((?:lpm-graph|make run)(?: [^`]*)?)`", prose)]
    seen, out = set(), []
    for doc, command in found:
        argv = argv_of(command)
        if argv is None or tuple(argv) in seen:
            continue
        seen.add(tuple(argv))
        out.append((doc, command))
    return out


#: placeholders this test fills (an earlier run's checkpoint or directory); any other (``<name>``: the user's own
#: model server) makes a line a shape of a command, not one to run
FILLED = {"<date>", "<time>", "<run dir>"}


def argv_of(command: str) -> list[str] | None:
    """The arguments ``lpm-graph`` receives from a shown command; None for a shape, not a command
    (``lpm-graph ...``, or one naming a placeholder of the user's own)."""
    shown = command.split("#")[0]
    if "..." in shown or set(re.findall(r"<[\w ]+>", shown)) - FILLED:
        return None
    words = shlex.split(command, comments=True)
    if words[:2] == ["make", "run"]:
        args = [w.split("=", 1)[1] for w in words[2:] if w.startswith("ARGS=")]
        return shlex.split(args[0]) if args else []
    return words[1:]


def choices(argv: list[str]):
    """The composed config of the group choices in ``argv`` (task, model, population, experiment)."""
    return compose_config([a for a in argv if a.split("=", 1)[0].lstrip("+") in
                           ("task", "model", "population", "experiment")])


def small(argv: list[str]) -> list[str]:
    """``argv`` with the sizes made small (people, steps, iterations, a multirun's sweeps cut to two values), its
    other overrides as written."""
    cfg = choices(argv)
    task = cfg.task.name
    sizes = {"progress": "false"}
    if cfg.population.get("num_people", "absent") != "absent":
        sizes["population.num_people"] = "2000" if "random_graphs" in cfg.population._target_ else "5000"
    if task == "calibrate":  # the observations fix the steps; a resumed run goes one iteration beyond its checkpoint
        sizes["task.iterations"] = "2" if any(a.startswith("task.resume=") for a in argv) else "1"
        # posterior methods: a handful of draws, one short chain, a few simulations
        sizes.update({"task.draws": "8", "task.warmup": "4", "task.chains": "1", "task.simulations": "20",
                      "task.predictive_draws": "4", "task.max_tree_depth": "3", "task.map_evaluations": "8",
                      "task.map_starts": "1"})
    else:
        sizes["steps"] = "20"
    if task == "analyze":
        sizes["task.replicates"] = "2"
        if "iterations" in (cfg.task.get("policy") or {}):
            sizes["task.policy.iterations"] = "1"
    multirun = "-m" in argv or "--multirun" in argv
    out = []
    for a in argv:
        key, _, value = a.partition("=")
        if multirun and "," in value and value[:1] not in "[{'\"" and not key.startswith("hydra."):
            out.append(f"{key}={','.join(value.split(',')[:2])}")  # a sweep: its first two values
        elif key in sizes:  # shrunk, never grown
            small_value = sizes.pop(key)
            bigger = value.isdigit() and small_value.isdigit() and int(small_value) > int(value)
            out.append(a if bigger else f"{key}={small_value}")
        else:
            out.append(a)
    return out + [f"{k}={v}" for k, v in sizes.items()]


def extra_requirements(extra: str) -> list[str]:
    """The distributions an optional extra of pyproject.toml installs."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    line = re.search(rf"^{re.escape(extra)}\s*=\s*\[(.*?)\]", section, flags=re.M | re.S)
    assert line, f"no extra {extra!r} in pyproject.toml"
    spec = re.findall(r'"([^"]+)"', line.group(1))
    return [re.split(r"[<>=!~\[ (]", s.strip(), maxsplit=1)[0] for s in spec]


def installed(distribution: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(distribution)
    except PackageNotFoundError:
        return False
    return True


COMMANDS = documented_commands()


def test_the_documents_show_the_commands_this_test_expects():
    # the extraction itself: a regression here would silently test nothing
    shown = [c.split("#")[0].strip() for _, c in COMMANDS]
    assert len(COMMANDS) >= 25
    assert "make run" in shown and "lpm-graph task=calibrate" in shown
    assert any(c.startswith("lpm-graph population=edgelist") and "community.beta=0.2" in c for c in shown)
    assert argv_of('make run ARGS="steps=200 seed=7"') == ["steps=200", "seed=7"]
    assert argv_of("lpm-graph task=plan   # print") == ["task=plan"]
    assert argv_of("lpm-graph ...") is None
    assert argv_of("lpm-graph backend.model=<name>") is None and argv_of("lpm-graph report <run dir>")
    assert small(["population.num_people=1000000", "steps=200"])[:2] == ["population.num_people=5000", "steps=20"]
    assert small(["-m", "seed=0,1,2,3", "hydra.launcher.n_jobs=2"])[:3] == ["-m", "seed=0,1", "hydra.launcher.n_jobs=2"]
    assert small(["seed=0,1,2"])[0] == "seed=0,1,2"  # not a multirun: as written


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A working directory away from the checkout (data/ paths resolve to the checkout's), holding
    my_cases.csv: the shipped reported cases as one column."""
    root = tmp_path_factory.mktemp("readme")
    shipped = pd.read_csv(ROOT / "data/observations/synthetic_cases.csv")
    pd.DataFrame({"step": shipped["step"], "cases": shipped.drop(columns="step").sum(axis=1)}).to_csv(
        root / "my_cases.csv", index=False)
    return root


#: the checkpoint each calibrate command wrote, by its arguments less the ones a resumed run may change
CHECKPOINTS: dict[frozenset, Path] = {}


def resumable(argv: list[str]) -> frozenset:
    return frozenset(a for a in argv if not a.startswith(("task.resume=", "task.iterations=")))


@pytest.mark.parametrize("doc, command", COMMANDS, ids=[f"{d}:{c[:60]}" for d, c in COMMANDS])
def test_a_documented_command_runs(doc, command, workdir, monkeypatch, capsys):
    for extra in re.findall(r"lpm-graph\[(\w[\w-]*)\]", command):  # a command of an optional extra
        missing = [d for d in extra_requirements(extra) if not installed(d)]
        if missing:
            pytest.skip(f"needs the {extra!r} extra ({', '.join(missing)} not installed)")
    if argv_of(command)[:1] == ["report"]:  # rebuilds the page of a run an earlier command made
        pages = sorted(workdir.glob("run*/report.html"), key=lambda p: int(p.parent.name[3:]))
        if not pages:
            pytest.fail(f"{doc}: {command!r} rebuilds a run's report, but no earlier command wrote one")
        written = pages[-1].read_bytes()
        filled = command.replace("<run dir>", shlex.quote(str(pages[-1].parent)))
        monkeypatch.setattr(sys, "argv", ["lpm-graph", *argv_of(filled)])
        cli.main()
        assert "report written" in capsys.readouterr().err and pages[-1].read_bytes() == written
        return
    if argv_of(command)[:1] == ["ensemble"]:  # summarises the members of a multirun an earlier command ran
        sweeps = sorted(workdir.glob("run*/ensemble.csv"), key=lambda p: int(p.parent.name[3:]))
        if not sweeps:
            pytest.fail(f"{doc}: {command!r} summarises a multirun, but no earlier command ran one")
        written = sweeps[-1].read_bytes()
        sweeps[-1].unlink()
        filled = command.replace("multirun/<date>/<time>", shlex.quote(str(sweeps[-1].parent)))
        monkeypatch.setattr(sys, "argv", ["lpm-graph", *argv_of(filled)])
        cli.main()
        assert "ensemble summary written" in capsys.readouterr().err and sweeps[-1].read_bytes() == written
        return
    argv = small(argv_of(command))
    if any("<date>/<time>/checkpoint.pt" in a for a in argv):
        if resumable(argv) not in CHECKPOINTS:
            pytest.fail(f"{doc}: {command!r} resumes a checkpoint, but no earlier command of that config wrote one")
        argv = [a.replace("outputs/<date>/<time>/checkpoint.pt", str(CHECKPOINTS[resumable(argv)])) for a in argv]
    assert not any(re.search(r"<\w+>", a) for a in argv), f"unfilled placeholder: {argv}"
    run_dir = workdir / f"run{len(list(workdir.glob('run*')))}"
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, "argv", ["lpm-graph", *argv, f"hydra.run.dir={run_dir}", f"hydra.sweep.dir={run_dir}"])
    with warnings.catch_warnings():
        # at a small size the shipped observations (100,000 people) are rightly warned of; nothing else may warn
        warnings.simplefilter("ignore", CalibrationWarning)
        # sbi's z-scoring warns of outliers among 20 simulations (the shrunk task.simulations), not of the command
        warnings.filterwarnings("ignore", message="Data has extreme outliers", category=UserWarning)
        try:
            cli.main()
        except SystemExit as e:
            if e.code not in (0, None):
                pytest.fail(f"{doc}: {command!r} (run as {argv}) exited with {e.code}: "
                            f"{capsys.readouterr().err[-2000:]}")
    captured = capsys.readouterr()
    if "--help" in argv:
        assert "Examples:" in captured.out, captured.out
        return
    err = captured.err
    if "-m" in argv or "--multirun" in argv:  # members may run in other processes (a launcher): their files speak
        assert "ensemble summary written" in err and (run_dir / "ensemble.csv").exists(), err[-2000:]
    else:
        assert "done:" in err, err[-2000:]
    summaries = [p for p in run_dir.rglob("*.json") if p.name in ("summary.json", "fitted_params.json")]
    task = choices(argv).task.name
    if task in ("simulate", "calibrate", "analyze", "build_population"):
        assert summaries, f"{command!r} wrote no summary in {run_dir}"
        json.loads(summaries[0].read_text())
    if (run_dir / "checkpoint.pt").exists():
        CHECKPOINTS[resumable(argv)] = run_dir / "checkpoint.pt"
