"""The ``lpm-graph`` command: a thin Hydra entry point over :mod:`lpm_graph.tasks`.

Configs come from ``conf/`` in a source checkout and from the copy the wheel
carries inside the package (``lpm_graph/conf``) when installed.  The value
returned to a sweeper is the summary entry named by ``metric`` (default: the
task's own, :data:`DEFAULT_METRIC`).
"""
from __future__ import annotations

import ast
import itertools
import json
import re
import sys
from pathlib import Path

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import lpm_graph.config  # noqa: F401  (registers the structured schemas)
from lpm_graph.errors import ConfigError, PopulationGraphError

#: what a task returns to a sweeper when ``metric`` is null (``None``: the model's first outcome)
DEFAULT_METRIC = {"simulate": None, "analyze": None, "calibrate": "final_loss", "build_population": "num_nodes",
                  "plan": "processes"}


def config_dir() -> str:
    """The Hydra config folder: packaged copy first, then the source tree's ``conf/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"lpm_graph: no Hydra configs found in {here / 'conf'} or {here.parent / 'conf'}; "
                            "reinstall the package (the wheel carries them in lpm_graph/conf)")


#: the numbers a task's summary holds whatever the model: what ``metric=`` may name besides the model's outcomes
#: (simulate, analyze); analyze adds ``<analysis>_seconds`` for each analysis it runs
METRICS = {
    "simulate": ("num_nodes", "steps", "replicates", "seed", "build_seconds", "simulate_seconds", "runtime_seconds",
                 "peak_rss_mb"),
    "analyze": ("num_nodes", "steps", "replicates", "seed", "build_seconds", "runtime_seconds", "peak_rss_mb"),
    "calibrate": ("final_loss", "iterations", "simulations", "trained_weights", "runtime_seconds", "peak_rss_mb"),
    "build_population": ("num_nodes", "nodes", "edges", "seconds"),
    "plan": ("processes", "parameters", "observables", "outcomes"),
}


def known_metrics(cfg, model) -> list[str]:
    """What ``metric=`` may name in a run of ``cfg`` with ``model`` (:data:`METRICS` and the model's outcomes)."""
    name = cfg.task.name
    known = list(METRICS.get(name, ()))
    if name in ("simulate", "analyze"):
        known += list(model.outcomes)
    if name == "analyze":
        known += [f"{a}_seconds" for a in cfg.task.analyses]
    return known


def check_metric(cfg, model) -> None:
    """Refuse, before the run, a ``metric=`` its summary will not hold (it was found only after the run)."""
    name, chosen = cfg.task.name, cfg.get("metric")
    if chosen is None and DEFAULT_METRIC.get(name) is None and name in METRICS and not model.outcomes:
        raise ConfigError(f"task={name}: the model declares no outcome to return; set metric=<summary entry>, one "
                          f"of {known_metrics(cfg, model)}")
    if chosen is None or name not in METRICS:
        return
    known = known_metrics(cfg, model)
    if chosen not in known:
        import difflib

        close = difflib.get_close_matches(str(chosen), known, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ConfigError(f"metric={chosen!r} is not a number the {name} summary holds{hint} It holds: "
                          f"{', '.join(known)}")


def metric_of(name: str, metrics: dict, chosen: str | None) -> tuple[str, float]:
    """The metric a run returns: ``chosen``, else the task's default, else the model's first outcome."""
    key = chosen or DEFAULT_METRIC.get(name)
    if key is None:
        outcomes = list(metrics.get("outcomes") or {})
        if not outcomes:
            raise ConfigError(f"task={name}: the model declares no outcome to return; set metric=<summary entry>")
        key = outcomes[0]
    value = metrics.get(key)
    if value is None and key in (metrics.get("outcomes") or {}):
        value = metrics["outcomes"][key]["mean"]
    if isinstance(value, dict):  # counts per kind (num_nodes): their total; anything else is not a metric
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values())
        value = sum(value.values()) if numbers else None
    if not isinstance(value, (int, float)):
        numeric = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        raise ConfigError(f"metric={key!r} is not a number in the {name} summary; numbers there: {numeric}")
    return key, float(value)


#: the config groups ``--help`` lists, with their headings
HELP_GROUPS = {"task": "Tasks", "model": "Models", "population": "Populations", "experiment": "Experiments",
               "privacy": "Private agents"}
HELP_WIDTH = 100


def _first_sentence(text: str) -> str:
    """``text`` up to its first sentence end (``. ``, ``: `` or ``; `` after a few words), in plain text."""
    text = re.sub(r"\s*\((module docstring|lpm_graph\.[\w.]+)[^)]*\)", "", text.replace("``", "`")).strip()
    for end in re.finditer(r"[.:;](\s|$)", text):
        if end.start() >= 25:
            return text[:end.start()]
    return text.rstrip(".")


def describe_config(path: Path) -> str:
    """One line about a config file: its ``# @help <text>`` line, else the first sentence of its opening comment.

    The opening comment's first paragraph ends at an empty comment line or an example command
    (``#   lpm-graph ...``); ``# @package`` lines and a leading ``task=<name>:`` are skipped.
    """
    paragraph, ended = [], False
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line.startswith("#"):
            break
        text = line[1:].strip()
        if text.startswith("@help"):
            return text[len("@help"):].strip()
        if text.startswith("@package") or ended:
            continue
        if not text or text.startswith("lpm-graph"):
            ended = bool(paragraph)
            continue
        paragraph.append(text)
    return _first_sentence(re.sub(r"^task=\w+:\s*", "", " ".join(paragraph)))


def _fit(name: str, text: str, mark: bool = False, column: int = 18) -> str:
    line = f"{' *' if mark else '  '} {name:<{column - 1}} {text}"
    return line if len(line) <= HELP_WIDTH else line[:HELP_WIDTH - 1].rstrip(" ,(") + "…"


def group_help(group: str, chosen: str = "") -> str:
    """The ``--help`` lines of a config group: one per ``conf/<group>/*.yaml``, the chosen one marked."""
    files = sorted(Path(config_dir(), group).glob("*.yaml"))
    lines = [f"{HELP_GROUPS.get(group, group)} ({group}=<name>; now {chosen}):" if chosen else
             f"{HELP_GROUPS.get(group, group)} (+{group}=<name>: a config of deltas on top of the others):"]
    lines += [_fit(f.stem, describe_config(f), mark=f.stem == chosen) for f in files]
    return "\n".join(lines)


def behaviour_help() -> str:
    """The ``--help`` lines on behaviours and interventions: what ``conf/`` and ``lpm_graph/models`` ship."""
    root = Path(__file__).resolve().parent
    behaviours = sorted(Path(config_dir(), "behavior").glob("*.yaml"))
    if behaviours:
        lines = ["Behaviours (model.behavior):"] + [_fit(f.stem, describe_config(f)) for f in behaviours]
    else:
        shipped = {}
        for f in sorted(Path(config_dir(), "model").glob("*.yaml")):
            shipped[f.stem] = (yaml.safe_load(f.read_text()) or {}).get("behavior")
        used = sorted(m for m, b in shipped.items() if b)
        lines = ["Behaviours (model.behavior): " + (f"set in model {', '.join(used)}" if used else
                                                      "none shipped; every model's behavior list is empty")]
    lines.append("Interventions (model.environment=[{_target_: <class>, ...}]; task=analyze compares them):")
    sources = [*sorted(root.glob("models/*/interventions.py")), root / "core" / "environment.py"]
    for source in sources:
        module = ".".join(source.relative_to(root.parent).with_suffix("").parts[:-1])
        for node in ast.parse(source.read_text()).body:
            doc = ast.get_docstring(node) if isinstance(node, ast.ClassDef) else None
            if doc and not doc.startswith("Base of"):
                lines.append(_fit(f"{module}.{node.name}", _first_sentence(doc.split("\n\n")[0].replace("\n", " ")),
                                  column=40))
    return "\n".join(lines)


def _help_resolver(group: str, chosen: str = "") -> str:
    # the help template goes through string.Template after OmegaConf: a literal $ is written $$
    text = behaviour_help() if group == "behavior" else group_help(group, chosen)
    return text.replace("$", "$$")


OmegaConf.register_new_resolver("lpm_graph.help", _help_resolver, replace=True)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    from lpm_graph import tasks

    from lpm_graph.distributed import runner

    name = cfg.task.name
    output_dir = HydraConfig.get().runtime.output_dir
    where = f"{runner.rank_label()}: " if runner.partitioned() else ""  # a partitioned run names the failing rank
    try:
        if runner.partitioned() and name not in runner.TASKS:
            raise ConfigError(f"task={name} does not run partitioned; a partitioned run (torchrun) supports task="
                              f"{' | '.join(runner.TASKS)}")
        metrics = tasks.get(name)(cfg, output_dir)
        key, value = metric_of(name, metrics, cfg.get("metric"))
    except (ConfigError, PopulationGraphError) as e:
        print(f"lpm-graph: error: {where}{e}", file=sys.stderr)
        sys.exit(2)
    except OmegaConfBaseException as e:  # e.g. a mandatory value (population.path) left unset
        print(f"lpm-graph: error: {where}{one_line(e)}", file=sys.stderr)
        sys.exit(2)
    except RuntimeError as e:
        if not runner.partitioned():
            raise
        # a collective failed: another rank died (its own message names it) or did not answer within
        # distributed.timeout; nothing was written by this rank, and rank 0 writes only after the whole run
        print(f"lpm-graph: error: {where}the partitioned run failed in a collective (another rank died or did not "
              f"answer within distributed.timeout={cfg.distributed.timeout:g} s): {one_line(e)}", file=sys.stderr)
        sys.exit(1)
    finally:
        if runner.partitioned():
            runner.shutdown()
    if runner.is_writer():
        print(f"lpm-graph: {name} done: {key}={value:.4g}; outputs in {output_dir}", file=sys.stderr)
    return value


#: flags that make Hydra do something other than run a task (help, printing the config, completion)
_HYDRA_ONLY = ("-h", "--help", "--hydra-help", "--info", "-i", "-c", "--cfg", "-p", "--package", "--resolve",
               "--shell-completion", "-sc", "--version", "--config-path", "-cp", "--config-name", "-cn",
               "--config-dir", "-cd", "--experimental-rerun")


def one_line(error: BaseException, causes: bool = True) -> str:
    """A Hydra or OmegaConf error as one line: its lines (and its cause's) joined, Hydra's hints dropped."""
    lines = [ln.strip() for ln in str(error).splitlines()]
    keep, choices = [], []
    for ln in lines:
        if not ln or ln.startswith(("Set the environment variable HYDRA_FULL_ERROR", "Config search path",
                                     "provider=", "object_type=")):
            continue
        if keep and keep[-1].startswith("Available options") and re.fullmatch(r"[\w.-]+", ln):
            choices.append(ln)
            continue
        if choices:
            keep[-1] += " " + ", ".join(choices)
            choices = []
        keep.append(ln)
    if choices:
        keep[-1] += " " + ", ".join(choices)
    cause = error.__cause__ or error.__context__
    if causes and cause is not None and str(cause) and str(cause) not in str(error) and "$" not in str(cause):
        keep.append(one_line(cause, causes=False))
    return "; ".join(k.rstrip(".") for k in keep if not k.startswith("full_key:"))


def _jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists of every job: one, or the product of a sweep's values (basic sweeper semantics)."""
    if not multirun:
        return [overrides]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    axes = []
    for o in parsed:
        if o.is_sweep_override():
            key = o.get_key_element()
            axes.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            axes.append([o.input_line])
    return [list(job) for job in itertools.product(*axes)]


def precheck(argv: list[str]) -> None:
    """Compose the config of every job and build its model before anything runs.

    Errors of composition (an unknown group choice, an unknown key, a wrong
    type), of the run settings and of the model come out as one line with
    status 2, like the project's own checks; a sweep with one impossible
    value fails before its first job.  Composition and the run settings are
    checked first, for every job, before torch is imported (about a second
    of start-up, torch_geometric another two): a bad value there is
    reported at once.  Then only the model is built (its checks are
    instant); the population is checked when the task builds it.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from lpm_graph.config import validate_run_config

    multirun = any(a in ("-m", "--multirun") for a in argv)
    overrides = [a for a in argv if not a.startswith("-")]
    try:
        jobs = _jobs(overrides, multirun)
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfgs = [compose(config_name="config", overrides=job) for job in jobs]
            if multirun:  # the callbacks (the ensemble summary) are built at the multirun's start: check them now
                _check_callbacks(compose(config_name="config", overrides=jobs[0], return_hydra_config=True))
        runs = [validate_run_config(cfg)[0] for cfg in cfgs]
        # the heavy imports (torch, torch_geometric) only now, when every torch-free check has passed
        import torch

        from lpm_graph.tasks.simulate import instantiate_config

        for job, cfg, run in zip(jobs, cfgs, runs):
            try:
                model = instantiate_config(cfg.model, dtype=getattr(torch, run.dtype))
            except ConfigError as e:
                raise ConfigError(f"{_pairing(job)}{e}") from None
            check_metric(cfg, model)
    except (ConfigError, PopulationGraphError) as e:
        print(f"lpm-graph: error: {e}", file=sys.stderr)
        sys.exit(2)
    except (HydraException, OmegaConfBaseException) as e:
        print(f"lpm-graph: error: {one_line(e)}{_launcher_hint(str(e))}", file=sys.stderr)
        sys.exit(2)


def _check_callbacks(cfg) -> None:
    """Build the multirun's ``hydra.callbacks`` as Hydra will, so that a bad value is one line before any job."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    for node in (OmegaConf.select(cfg, "hydra.callbacks") or {}).values():
        try:
            instantiate(node)
        except InstantiationException as e:
            if isinstance(e.__cause__, ConfigError):
                raise e.__cause__ from None
            raise


#: the extras that bring Hydra's launchers (docs/ensembles.md)
LAUNCHER_EXTRAS = {"joblib": "launchers", "submitit_local": "launchers", "submitit_slurm": "launchers",
                   "ray": "ray", "ray_aws": "ray"}


def _launcher_hint(message: str) -> str:
    """How to install the launcher an error says Hydra could not find (``hydra/launcher=<name>``), else nothing."""
    found = re.search(r"Could not find 'hydra/launcher/([\w-]+)'", message)
    if not found:
        return ""
    name = found.group(1)
    extra = LAUNCHER_EXTRAS.get(name)
    if extra is None:
        return f" (launchers this project documents: {', '.join(LAUNCHER_EXTRAS)}; docs/ensembles.md)"
    return f" (hydra/launcher={name} comes with `pip install 'lpm-graph[{extra}]'`; docs/ensembles.md)"


REPORT_USAGE = "usage: lpm-graph report <run dir>   (rebuilds <run dir>/report.html from the run's files)"


def report_main(args: list[str]) -> None:
    """``lpm-graph report <run dir>``: rebuild a run's ``report.html`` (:mod:`lpm_graph.report`); torch-free."""
    if args and args[0] in ("-h", "--help"):
        print(REPORT_USAGE)
        return
    if len(args) != 1:
        print(f"lpm-graph: error: {REPORT_USAGE}", file=sys.stderr)
        sys.exit(2)
    from lpm_graph.errors import RunDirectoryError
    from lpm_graph.report import build_report

    try:
        path = build_report(args[0])
    except RunDirectoryError as e:
        print(f"lpm-graph: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"lpm-graph: report written: {path}", file=sys.stderr)


ENSEMBLE_USAGE = ("usage: lpm-graph ensemble <sweep dir> [--over KEY ...] [--quantiles Q,Q,...] [--allow-missing]   "
                  "(writes <sweep dir>/ensemble.csv and ensemble.json from the members' outputs)")


def ensemble_main(args: list[str]) -> None:
    """``lpm-graph ensemble <sweep dir>``: the ensemble summary of a multirun (:mod:`lpm_graph.ensemble`); torch-free."""
    import argparse

    from lpm_graph.ensemble import DEFAULT_OVER, DEFAULT_QUANTILES, summarize
    from lpm_graph.errors import EnsembleError

    class Parser(argparse.ArgumentParser):
        def error(self, message):  # one line and status 2, as every other error of the command
            print(f"lpm-graph: error: {message}; {ENSEMBLE_USAGE}", file=sys.stderr)
            sys.exit(2)

    parser = Parser(prog="lpm-graph ensemble", usage=ENSEMBLE_USAGE.split("   ")[0][len("usage: "):],
                    description="The ensemble summary of a multirun's sweep folder: per ensemble, observable and "
                                "step, the mean and quantiles over the members (docs/ensembles.md).")
    parser.add_argument("sweep_dir", help="the sweep folder of `lpm-graph -m ...` (hydra.sweep.dir)")
    parser.add_argument("--over", nargs="+", default=list(DEFAULT_OVER), metavar="KEY",
                        help="override keys that vary within one ensemble (default: seed)")
    parser.add_argument("--quantiles", default=",".join(f"{q:g}" for q in DEFAULT_QUANTILES),
                        help="comma-separated quantiles in [0, 1] (default: 0.05,0.5,0.95)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="summarise the complete members and name the missing or failed ones in ensemble.json")
    ns = parser.parse_args(args)
    try:
        quantiles = [float(q) for q in ns.quantiles.split(",")]
    except ValueError:
        parser.error(f"--quantiles must be comma-separated numbers in [0, 1], got {ns.quantiles!r}")
    try:
        paths = summarize(ns.sweep_dir, ns.over, quantiles, allow_missing=ns.allow_missing)
    except (EnsembleError, ConfigError) as e:
        print(f"lpm-graph: error: {e}", file=sys.stderr)
        sys.exit(2)
    info = json.loads(paths["json"].read_text())
    gaps = f"; {len(info['gaps'])} members missing or failed, named in {paths['json'].name}" if info["gaps"] else ""
    print(f"lpm-graph: ensemble summary written: {paths['csv']} and {paths['json'].name} ({len(info['ensembles'])} "
          f"ensembles of {info['complete']} members{gaps})", file=sys.stderr)


def _pairing(job: list[str]) -> str:
    """``"model=<m> with behavior=<b>: "`` when a behaviour is chosen (an error building the model may be that the
    two do not fit), else nothing."""
    from hydra import compose, initialize_config_dir

    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            choices = compose(config_name="config", overrides=job, return_hydra_config=True).hydra.runtime.choices
    except Exception:  # the pair is a hint only: the error itself is what is reported
        return ""
    behavior = choices.get("behavior")
    return "" if behavior in (None, "none") else f"model={choices.get('model')} with behavior={behavior}: "


def main() -> None:
    argv = sys.argv[1:]
    if argv and argv[0] == "report":  # a subcommand of its own, before Hydra: it reads a run, composes nothing
        report_main(argv[1:])
        return
    if argv and argv[0] == "ensemble":  # likewise: it reads a sweep folder's members
        ensemble_main(argv[1:])
        return
    if not any(a.split("=", 1)[0] in _HYDRA_ONLY for a in argv):
        precheck(argv)
    _partitioned_output_dir()
    _hydra_main()


def _partitioned_output_dir() -> None:
    """Under torchrun every rank composes the same config; only rank 0 keeps Hydra's output folder. The others
    get a temporary one (removed at exit) for Hydra's own files, and write nothing of the run."""
    import os

    if int(os.environ.get("WORLD_SIZE", 1)) <= 1 or int(os.environ.get("RANK", 0)) == 0:
        return
    import atexit
    import shutil
    import tempfile

    scratch = tempfile.mkdtemp(prefix=f"lpm-graph-rank{os.environ['RANK']}-")
    atexit.register(shutil.rmtree, scratch, True)
    sys.argv += [f"hydra.run.dir={scratch}", "hydra.output_subdir=null"]


if __name__ == "__main__":
    main()
