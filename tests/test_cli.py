"""The lpm-graph command, run as a user would, in a temporary directory.

Each test starts ``python -m lpm_graph`` in a fresh interpreter with this checkout first on ``PYTHONPATH``,
so that the command under test is this source tree, whatever else is installed.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SMALL = ["population.num_people=1500", "steps=12", "model.params.seir.initial_infected=5"]


def env():
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


def run_cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "lpm_graph", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env())


def done_line(stderr: str) -> tuple[str, str, float]:
    """``(task, metric, value)`` of the CLI's closing line."""
    (match,) = re.findall(r"^lpm-graph: (\w+) done: (\w+)=([-+0-9.e]+|nan|inf); outputs in ", stderr, re.M)
    return match[0], match[1], float(match[2])


def test_cli_runs_this_checkout_and_returns_the_configured_metric(tmp_path):
    where = subprocess.run([sys.executable, "-c", "import lpm_graph; print(lpm_graph.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, env=env())
    assert Path(where.stdout.strip()) == ROOT / "lpm_graph" / "__init__.py", where.stderr
    proc = run_cli([*SMALL, "seed=7", "model.params.transmission.beta_household=0.3", "metric=peak_size",
                    "hydra.run.dir=run"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "run"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 7 and summary["params"]["transmission.beta_household"] == pytest.approx(0.3)
    assert summary["num_nodes"]["person"] == 1500 and summary["steps"] == 12
    assert (out / "trajectory.parquet").stat().st_size > 0 and (out / "trajectory.png").exists()
    assert "simulate" in proc.stderr and "step" in proc.stderr  # progress bar
    task, metric, value = done_line(proc.stderr)
    assert (task, metric) == ("simulate", "peak_size") and summary["peak_size"] > 5
    assert value == pytest.approx(summary["peak_size"], rel=1e-3)  # printed to 4 significant digits
    # the saved Hydra config is this run's
    assert "peak_size" in (out / ".hydra" / "config.yaml").read_text()


def test_multirun_sweep_with_the_basic_launcher(tmp_path):
    proc = run_cli(["-m", *SMALL, "seed=1,2", "hydra.sweep.dir=sweep", "progress=false"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    summaries = [json.loads((tmp_path / "sweep" / str(i) / "summary.json").read_text()) for i in (0, 1)]
    assert [s["seed"] for s in summaries] == [1, 2]
    assert summaries[0]["config_hash"] != summaries[1]["config_hash"]
    # without metric: the model's first outcome, once per job
    assert [m for _, m, _ in re.findall(r"^lpm-graph: (\w+) done: (\w+)=([^;]+);", proc.stderr, re.M)] == \
        ["attack_rate", "attack_rate"]


def test_task_plan_prints_the_processes(tmp_path):
    proc = run_cli(["task=plan", "model=seird", "hydra.run.dir=plan"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for line in ("  1. infectiousness [emission] Infectiousness", "  2. transmission [interaction] VenueTransmission",
                 "  3. seir [update] SEIR"):
        assert line in proc.stdout.splitlines(), line
    assert "seir.fatality = [" in proc.stdout
    assert done_line(proc.stderr)[:2] == ("plan", "processes") and done_line(proc.stderr)[2] == 3
    assert (tmp_path / "plan" / "plan.txt").read_text() == proc.stdout


@pytest.mark.parametrize("override, field, message", [
    ("steps=0", "steps", "steps must be a positive integer"),
    ("model=seird model.params.seir.fatality=2", "model.params.seir.fatality",
     "model.params.seir.fatality must be a probability in [0, 1], got 2"),
    ("population.school.enrolment=1.3", "population.school.enrolment",
     "population.school.enrolment must be a probability in [0, 1]"),
    ("model.params.transmission.beta_household=-1", "model.params.transmission.beta_household",
     "model.params.transmission.beta_household must be a finite number >= 0"),
    ("population=file population.path=none.pt", "none.pt", "population file 'none.pt' does not exist"),
])
def test_bad_values_exit_with_code_2_and_one_line_naming_the_field(tmp_path, override, field, message):
    args = override.split()
    small = [a for a in SMALL if not a.startswith("population.")] if args[0].startswith("population=") else SMALL
    proc = run_cli([*small, *args, "hydra.run.dir=run"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("lpm-graph: error: ")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith(f"lpm-graph: error: {message}") and field in errors[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "summary.json").exists()


def test_unknown_group_choice_lists_the_available_options(tmp_path):
    proc = run_cli(["population=atlantis"], tmp_path)
    assert proc.returncode == 2
    assert "population/atlantis" in proc.stderr and "synthetic" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_two_runs_started_together_get_two_run_directories(tmp_path):
    # the run folder used to be outputs/<date>/<HH-MM-SS>: two runs in one second shared it and the second
    # overwrote the first
    cmd = [sys.executable, "-m", "lpm_graph", *SMALL, "task.plot=false"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
             for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    runs = sorted(p.parent for p in (tmp_path / "outputs").glob("*/*/summary.json"))
    assert len(runs) == 2 and runs[0] != runs[1]


@pytest.mark.parametrize(("args", "message"), [
    (["model=seirr"], r"Could not find 'model/seirr'; Available options in 'model': contact, .*seir, seird"),
    (["foo=1"], r"Could not override 'foo'; To append to your config use \+foo=1"),
    (["task=calibrate", "task.iterations=abc"], r"task.iterations=abc; Value 'abc' of type 'str' could not be converted"),
    (["population=file"], r"Missing mandatory value: population.path"),
])
def test_errors_of_hydras_layer_are_one_line_with_status_2(args, message, tmp_path):
    # they came out as Hydra's 6-12 lines with status 1, unlike the project's own checks
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lpm-graph: error: ") and re.search(message, lines[0]), lines


def test_a_sweep_with_one_impossible_value_fails_before_its_first_job(tmp_path):
    proc = run_cli(["-m", "model.params.seir.susceptibility=0.5,-1", *SMALL], tmp_path)
    assert proc.returncode == 2
    assert "model.params.seir.susceptibility must be a finite number >= 0, got -1" in proc.stderr
    assert not (tmp_path / "multirun").exists()


#: runs the command in this interpreter and says, on the way out, whether torch had been imported
WITH_TORCH_REPORT = ("import atexit, sys\n"
                     "atexit.register(lambda: print('torch imported:', 'torch' in sys.modules, file=sys.stderr))\n"
                     "sys.argv = ['lpm-graph', *sys.argv[1:]]\n"
                     "from lpm_graph.cli import main\n"
                     "main()\n")


@pytest.mark.parametrize("args, message", [
    (["steps=-1"], "steps must be a positive integer"),
    (["dtype=float16"], "dtype must be one of"),
    (["task=calibrate", "task.iterations=0"], "task.iterations must be a positive integer"),
    (["model=seirr"], "Could not find 'model/seirr'"),
    (["-m", "seed=1,-2"], "seed must be a non-negative integer, got -2"),
])
def test_a_bad_run_setting_is_reported_before_torch_is_imported(tmp_path, args, message):
    # composition and the run settings are checked before the heavy imports (torch, torch_geometric: seconds),
    # so such a mistake is reported at once; the model's own checks come after
    proc = subprocess.run([sys.executable, "-c", WITH_TORCH_REPORT, *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=env())
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert "torch imported: False" in proc.stderr.splitlines(), proc.stderr


def test_importing_the_cli_imports_neither_torch_nor_torch_geometric(tmp_path):
    code = ("import sys, lpm_graph.cli\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torch_geometric')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_help_says_what_the_program_does_and_lists_every_shipped_choice(tmp_path):
    # it printed Hydra's generic text, the *_schema entries as task choices and 150 lines of config
    proc = run_cli(["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    lines = out.splitlines()
    # one line per shipped choice and intervention, and a frame of at most 30 lines (no config dump)
    choices = sum(len(list((ROOT / "conf" / g).glob("*.yaml"))) for g in ("task", "model", "population", "experiment",
                                                                          "behavior", "privacy"))
    assert len(lines) <= choices + 8 + 30, out  # 8: the interventions shipped at most
    assert "_schema" not in out and "Powered by Hydra" not in out and "== Config ==" not in out
    assert "simulate" in lines[0] and "population" in lines[0]
    listed = {m.group(1) for m in re.finditer(r"^ [ *] (\S+) +\S", out, re.M)}
    for group in ("task", "model", "population", "experiment", "privacy"):
        shipped = {f.stem for f in (ROOT / "conf" / group).glob("*.yaml")}
        assert shipped and shipped <= listed, (group, shipped - listed)
    assert re.search(r"^ \* seir +Age-structured SEIR on the venue graph$", out, re.M)  # from its first comment line
    assert "Behaviours" in out and "lpm_graph.models.epidemic.Vaccination" in out
    examples = lines[lines.index("Examples:") + 1:]
    commands = [ln for ln in examples[:examples.index("")] if ln.lstrip().startswith("lpm-graph ")]
    assert len(commands) == 4 and commands[-1].split("#")[0].split() == ["lpm-graph", "report", "outputs/<date>/<time>"]


def test_help_lines_come_from_the_config_files(tmp_path):
    from lpm_graph.cli import describe_config

    plain = tmp_path / "plain.yaml"
    plain.write_text("# @package _global_\n# task=fit: the model to data by gradient. More text\n"
                     "#   lpm-graph task=fit\nname: fit\n")
    assert describe_config(plain) == "the model to data by gradient"
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text("# A long opening comment\n# @help what --help shows\nx: 1\n")
    assert describe_config(tagged) == "what --help shows"


@pytest.mark.parametrize("args, message", [
    (["metric=attack_rat"], r"metric='attack_rat' is not a number the simulate summary holds; did you mean "
                            r"'attack_rate'\? It holds: num_nodes, .*peak_day"),
    (["task=calibrate", "metric=final_los"], r"did you mean 'final_loss'"),
    # the timing of an analysis that does not run is not held
    (["task=analyze", "metric=policy_seconds", "task.analyses=[sensitivity]"], r"holds: [^\n]*sensitivity_seconds\n"),
])
def test_a_metric_the_summary_will_not_hold_is_refused_before_the_run(tmp_path, args, message):
    # it was found after the whole run, which then exited with an error
    proc = run_cli([*args, *SMALL, "hydra.run.dir=run"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert re.search(message, proc.stderr), proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.filterwarnings("ignore::lpm_graph.errors.CalibrationWarning")  # 1,500 people, data of 100,000
def test_the_metrics_a_task_declares_are_the_numbers_its_summary_holds(tmp_path):
    from lpm_graph import tasks
    from lpm_graph.cli import known_metrics, metric_of
    from lpm_graph.tasks.simulate import instantiate_config
    from tests.conftest import compose_config

    for name, extra in [("simulate", []), ("plan", []), ("build_population", []),
                        ("calibrate", ["task.iterations=1", "steps=100", "task.plot=false"]),
                        ("analyze", ["task.policy.iterations=1", "task.replicates=2", "task.plot=false"])]:
        cfg = compose_config([f"task={name}", *SMALL, "progress=false", *extra])
        metrics = tasks.get(name)(cfg, tmp_path / name)
        numbers = []
        for key in [*metrics, *(metrics.get("outcomes") or {} if isinstance(metrics.get("outcomes"), dict) else {})]:
            try:
                metric_of(name, metrics, key)
            except Exception:  # noqa: BLE001 (not a number: not a metric)
                continue
            numbers.append(key)
        assert sorted(set(numbers)) == sorted(known_metrics(cfg, instantiate_config(cfg.model))), name
