"""Ensembles of a Hydra multirun: the members of a sweep, and their summary.

A multirun (``lpm-graph -m seed=0,1,2,3 ...``, on any Hydra launcher: basic,
joblib, submitit) writes one folder per job (a *member*) under its sweep folder
and ``multirun.yaml`` there.  :func:`summarize` reads them back:

* the jobs the sweep meant to run, from ``multirun.yaml`` with the basic
  sweeper's own expansion (:meth:`BasicSweeper.split_arguments`), matched to
  the member folders by the overrides Hydra saved in each
  (``<member>/.hydra/overrides.yaml``);
* every member is *complete* (its ``summary.json`` and trajectory are
  written), *failed* (its folder exists, its outputs do not: it raised, or
  it stopped) or *missing* (no folder: it never started).  A member that is
  not complete is an :class:`~lpm_graph.errors.EnsembleError` naming it,
  or, with ``allow_missing``, a named gap in ``ensemble.json``; never
  skipped silently;
* members are grouped into ensembles by their overrides less the keys of
  ``over`` (default ``seed``): ``seed=0,1,2 beta=0.2,0.3`` is two ensembles
  of three members.  Each replicate column of a member is one sample;
* per ensemble, observable (every trajectory column) and step: the number
  of samples, their mean and the ``quantiles`` (default 5/50/95%, numpy's
  linear interpolation), in ``<sweep>/ensemble.csv``; per ensemble and
  outcome of the members' ``summary.json`` (each member's mean over its
  replicates), the same numbers, with the members and gaps, in
  ``<sweep>/ensemble.json``.  Both are written only once everything is
  read and checked, each through a temporary file and a rename.

:class:`EnsembleSummary` is the Hydra callback that does this at the end of
every multirun of ``task=simulate`` (``hydra.callbacks.ensemble`` in
``conf/config.yaml``); ``lpm-graph ensemble <sweep dir>`` does it for a
sweep folder afterwards (a sweep that stopped, or other quantiles).  This
module is torch-free.
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from hydra.experimental.callback import Callback

from lpm_graph.errors import ConfigError, EnsembleError

__all__ = ["DEFAULT_OVER", "DEFAULT_QUANTILES", "Member", "EnsembleSummary", "expected_jobs", "members",
           "summarize", "check_quantiles", "SUMMARY_CSV", "SUMMARY_JSON"]

DEFAULT_OVER = ("seed",)
DEFAULT_QUANTILES = (0.05, 0.5, 0.95)
SUMMARY_CSV = "ensemble.csv"
SUMMARY_JSON = "ensemble.json"
TRAJECTORIES = ("trajectory.parquet", "trajectory.csv")


@dataclass(frozen=True)
class Member:
    """One job of a sweep: its number in the sweep, its overrides, its folder (``None``: never started)."""

    number: int
    overrides: tuple[str, ...]
    folder: Path | None
    status: str  # complete | failed | missing

    @property
    def name(self) -> str:
        where = f"folder {self.folder.name}" if self.folder is not None else "no folder"
        return f"member {self.number} ({' '.join(self.overrides) or 'no overrides'}; {where})"

    @property
    def problem(self) -> str:
        if self.status == "missing":
            return f"{self.name}: missing, it never started (no member folder has its overrides)"
        return (f"{self.name}: failed or unfinished, it wrote no summary.json and trajectory (its error is in the "
                "launcher's log: the console, or .submitit/ for submitit)")

    def trajectory(self) -> Path:
        assert self.folder is not None
        return next(self.folder / t for t in TRAJECTORIES if (self.folder / t).is_file())


def check_quantiles(quantiles: Sequence[float], field: str = "quantiles") -> tuple[float, ...]:
    """``quantiles`` as a sorted tuple of distinct numbers in [0, 1], or a ConfigError naming ``field``."""
    try:
        values = tuple(float(q) for q in quantiles)
    except (TypeError, ValueError):
        raise ConfigError(f"{field} must be a list of numbers in [0, 1], got {quantiles!r}") from None
    if not values or any(not (0.0 <= q <= 1.0) or math.isnan(q) for q in values):
        raise ConfigError(f"{field} must be a non-empty list of numbers in [0, 1], got {list(values)}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{field} lists a quantile twice: {list(values)}")
    return tuple(sorted(values))


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def expected_jobs(sweep_dir: str | os.PathLike) -> list[tuple[str, ...]]:
    """The override lists of the jobs the sweep in ``sweep_dir`` meant to run, in their order (job numbers)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    sweep = Path(sweep_dir)
    path = sweep / "multirun.yaml"
    if not path.is_file():
        raise EnsembleError(f"{sweep} is not a multirun folder: it has no multirun.yaml (Hydra writes one in the "
                            "sweep folder of every `lpm-graph -m ...`; pass that folder, hydra.sweep.dir)")
    cfg = OmegaConf.load(path)
    sweeper = OmegaConf.select(cfg, "hydra.sweeper._target_", default="")
    if sweeper and not sweeper.endswith("BasicSweeper"):
        raise EnsembleError(f"{path}: hydra.sweeper is {sweeper}; only the basic sweeper's jobs can be listed "
                            "(another sweeper chooses its jobs as it runs)")
    arguments = [f"{k}={v}" for k, v in (OmegaConf.select(cfg, "hydra.sweeper.params") or {}).items()]
    arguments += list(OmegaConf.select(cfg, "hydra.overrides.task") or [])
    parsed = OverridesParser.create().parse_overrides(arguments)
    return [tuple(job) for job in BasicSweeper.split_arguments(parsed, None)[0]]


def members(sweep_dir: str | os.PathLike) -> list[Member]:
    """Every job of the sweep in ``sweep_dir``, with its folder and status (complete, failed or missing)."""
    import yaml

    sweep = Path(sweep_dir)
    jobs = expected_jobs(sweep)
    found: dict[tuple[str, ...], Path] = {}
    for saved in sorted(sweep.glob("**/.hydra/overrides.yaml")):
        folder = saved.parent.parent
        if ".submitit" in folder.relative_to(sweep).parts or folder == sweep:
            continue
        overrides = tuple(str(o) for o in (yaml.safe_load(saved.read_text()) or []))
        found[overrides] = folder
    out = []
    for number, job in enumerate(jobs):
        folder = found.get(job)
        if folder is None:
            status = "missing"
        elif (folder / "summary.json").is_file() and any((folder / t).is_file() for t in TRAJECTORIES):
            status = "complete"
        else:
            status = "failed"
        out.append(Member(number, job, folder, status))
    return out


def _read_frame(path: Path):
    import pandas as pd

    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def _series(member: Member, columns: list[str] | None):
    """``(columns, steps, {column: [steps, replicates] array})`` of a member's trajectory."""
    import numpy as np

    frame = _read_frame(member.trajectory())
    for needed in ("step", "replicate"):
        if needed not in frame.columns:
            raise EnsembleError(f"{member.name}: {member.trajectory().name} has no column {needed!r}; it is not a "
                                "trajectory written by task=simulate")
    frame = frame.sort_values(["step", "replicate"], kind="stable")
    names = [c for c in frame.columns if c not in ("step", "replicate")]
    if columns is not None and names != columns:
        raise EnsembleError(f"{member.name}: its trajectory has the columns {names}, the ensemble's first member "
                            f"{columns}; members of one ensemble must run one model")
    steps = np.unique(frame["step"].to_numpy())
    reps = np.unique(frame["replicate"].to_numpy())
    if len(frame) != len(steps) * len(reps):
        raise EnsembleError(f"{member.name}: its trajectory does not hold every (step, replicate) once")
    return names, steps, {c: frame[c].to_numpy(dtype=np.float64).reshape(len(steps), len(reps)) for c in names}


def _qname(q: float) -> str:
    return f"q{100 * q:g}"


def _stats(values, quantiles: tuple[float, ...], axis: int = -1) -> dict[str, Any]:
    import numpy as np

    out = {"mean": np.mean(values, axis=axis)}
    for q, v in zip(quantiles, np.quantile(values, quantiles, axis=axis, method="linear")):
        out[_qname(q)] = v
    return out


def _write(path: Path, text: str) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(name, 0o666 & ~umask)
        os.replace(name, path)
    finally:
        if os.path.exists(name):
            os.unlink(name)


def summarize(sweep_dir: str | os.PathLike, over: Sequence[str] = DEFAULT_OVER,
              quantiles: Sequence[float] = DEFAULT_QUANTILES, allow_missing: bool = False) -> dict[str, Path]:
    """Write ``ensemble.csv`` and ``ensemble.json`` in ``sweep_dir`` (module docstring); return their paths.

    Raises :class:`~lpm_graph.errors.EnsembleError` naming every member that is not complete (unless
    ``allow_missing``: then they are listed in ``ensemble.json`` under ``gaps``, and an ensemble left with no
    complete member is still an error), or whose outputs do not fit the others'.
    """
    import numpy as np
    import pandas as pd

    quantiles = check_quantiles(quantiles)
    over = tuple(over)
    sweep = Path(sweep_dir)
    every = members(sweep)
    gaps = [m for m in every if m.status != "complete"]
    if gaps and not allow_missing:
        raise EnsembleError(f"{sweep}: {len(gaps)} of {len(every)} members are not complete, no summary written: "
                            + "; ".join(m.problem for m in gaps)
                            + ". Rerun them, or summarise the others with `lpm-graph ensemble <sweep dir> "
                              "--allow-missing` (the gaps are then named in ensemble.json)")
    groups: dict[tuple[str, ...], list[Member]] = {}
    for m in every:
        groups.setdefault(tuple(o for o in m.overrides if _key(o) not in over), []).append(m)
    # an ensemble is named by the overrides that tell it from the others (all of one sweep's: "all")
    varying = {_key(o) for label in groups for o in label if any(o not in other for other in groups)}
    rows, described = [], []
    for label, group in groups.items():
        name = " ".join(o for o in label if _key(o) in varying) or "all"
        complete = [m for m in group if m.status == "complete"]
        if not complete:
            raise EnsembleError(f"{sweep}: ensemble {name!r} has no complete member: "
                                + "; ".join(m.problem for m in group))
        columns, steps, blocks = None, None, []
        for m in complete:
            names, member_steps, series = _series(m, columns)
            if steps is not None and not np.array_equal(member_steps, steps):
                raise EnsembleError(f"{m.name}: its trajectory has steps {member_steps.min()}..{member_steps.max()}, "
                                    f"the ensemble's first member {steps.min()}..{steps.max()}")
            columns, steps = names, member_steps
            blocks.append(series)
        samples = sum(b[columns[0]].shape[1] for b in blocks)
        for c in columns:
            values = np.concatenate([b[c] for b in blocks], axis=1)  # [steps, samples]
            stats = _stats(values, quantiles)
            rows.append(pd.DataFrame({"ensemble": name, "observable": c, "step": steps, "samples": samples,
                                      **stats}))
        outcomes: dict[str, dict[str, float]] = {}
        member_outcomes = [json.loads((m.folder / "summary.json").read_text()).get("outcomes") or {}
                           for m in complete]
        for m, mo in zip(complete, member_outcomes):
            if sorted(mo) != sorted(member_outcomes[0]):
                raise EnsembleError(f"{m.name}: its summary.json has the outcomes {sorted(mo)}, the ensemble's first "
                                    f"member {sorted(member_outcomes[0])}; members of one ensemble must run one model")
            bad = [o for o, v in mo.items() if not isinstance(v.get("mean"), (int, float))]
            if bad:
                raise EnsembleError(f"{m.name}: its summary.json has no number as the mean of outcome {bad[0]!r}")
        for o in member_outcomes[0]:
            values = np.asarray([mo[o]["mean"] for mo in member_outcomes], dtype=np.float64)
            outcomes[o] = {k: float(v) for k, v in _stats(values, quantiles).items()}
        described.append({
            "ensemble": name, "overrides": list(label), "samples": samples,
            "members": [{"number": m.number, "folder": str(m.folder.relative_to(sweep)), "overrides": list(m.overrides)}
                        for m in complete],
            "gaps": [{"number": m.number, "overrides": list(m.overrides), "status": m.status, "problem": m.problem}
                     for m in group if m.status != "complete"],
            "outcomes": outcomes,
        })
    table = pd.concat(rows, ignore_index=True)
    info = {"sweep": sweep.name, "over": list(over), "quantiles": list(quantiles), "members": len(every),
            "complete": len(every) - len(gaps), "gaps": [m.problem for m in gaps], "ensembles": described,
            "samples": "each replicate column of a complete member is one sample of the trajectory statistics; "
                       "each member's outcome (its mean over its replicates) one sample of the outcome statistics"}
    paths = {"csv": sweep / SUMMARY_CSV, "json": sweep / SUMMARY_JSON}
    _write(paths["csv"], table.to_csv(index=False))
    _write(paths["json"], json.dumps(info, indent=2) + "\n")
    return paths


class EnsembleSummary(Callback):
    """Hydra callback: at the end of a multirun of one of ``tasks``, :func:`summarize` its sweep folder.

    Args:
        over: the override keys that vary within one ensemble (default ``seed``); members equal in every
            other override form one ensemble.
        quantiles: the quantiles written besides the mean (default 0.05, 0.5, 0.95).
        tasks: the tasks whose multiruns are summarised (their members write trajectories); a multirun of
            another task says on stderr that it has no ensemble summary.

    A member that is not complete, or outputs that do not fit, end the command with ``lpm-graph: error:
    ...`` and status 2 (Hydra turns a callback's exception into a warning, so the callback exits itself).
    """

    def __init__(self, over: Sequence[str] = DEFAULT_OVER, quantiles: Sequence[float] = DEFAULT_QUANTILES,
                 tasks: Sequence[str] = ("simulate",)) -> None:
        if isinstance(over, str) or not all(isinstance(k, str) for k in over):
            raise ConfigError(f"hydra.callbacks.ensemble.over must be a list of override keys, got {over!r}")
        self.over = tuple(over)
        self.quantiles = check_quantiles(quantiles, "hydra.callbacks.ensemble.quantiles")
        self.tasks = tuple(tasks)

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        task = OmegaConf.select(config, "task.name")
        if task not in self.tasks:
            print(f"lpm-graph: no ensemble summary: task={task} (summarised: {', '.join(self.tasks)})",
                  file=sys.stderr)
            return
        try:
            paths = summarize(config.hydra.sweep.dir, self.over, self.quantiles)
        except (EnsembleError, ConfigError) as e:
            print(f"lpm-graph: error: {e}", file=sys.stderr)
            sys.exit(2)
        print(f"lpm-graph: ensemble summary written: {paths['csv']} and {paths['json'].name}", file=sys.stderr)
