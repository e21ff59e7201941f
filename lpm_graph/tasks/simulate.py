"""``task=simulate``: a forward run and its outputs, for any model.

:func:`simulate` builds the model (checking its wiring and parameters), checks
the memory the run needs, builds the population (checking it), runs the
model and writes what the model declares:

* ``trajectory.parquet`` (or ``.csv``): one row per (step, replicate) with
  every observable, and every grouped observable per group
  (``<observable>_<grouping>_<label>``);
* ``summary.json``: every outcome (mean and sd over replicates), node
  counts, runtimes, the config hash, the parameter values and what the
  population cache did (``population_cache``: status hit / built / rebuilt,
  its reason and file; null for a population without a cache), and, where a
  process has something to report, under ``processes.<name>`` what it reports of the run
  (:meth:`~lpm_graph.core.Process.report`: e.g. a behaviour's calls to a
  language model);
* ``trajectory.png``: one panel per observable panel (as the model's
  processes group them), mean over replicates with the range of the
  replicates shaded, and one panel per grouped mean (a decision share by
  age group) with a line per group;

and returns the summary (the CLI returns its ``metric`` to sweepers).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lpm_graph import report
from lpm_graph.config import validate_run_config

__all__ = ["simulate", "config_hash", "build", "build_model", "summarize", "process_reports", "plot_trajectory", "atomic_write",
           "instantiate_config", "peak_rss_mb", "rounded"]


def config_hash(cfg: DictConfig) -> str:
    """SHA-256 (first 16 hex digits) of the resolved config as YAML."""
    return hashlib.sha256(OmegaConf.to_yaml(cfg, resolve=True).encode()).hexdigest()[:16]


def instantiate_config(node, **kwargs):
    """``hydra.utils.instantiate`` that re-raises our own errors (config values) unwrapped."""
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, ValueError):
            raise cause from None
        raise


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (:func:`lpm_graph.memory.peak_rss`)."""
    from lpm_graph.memory import peak_rss

    return peak_rss() / 2**20


def rounded(value, digits: int = 7):
    """Floats rounded to ``digits`` significant digits (float32 precision), recursively."""
    if isinstance(value, float):
        if not math.isfinite(value) or value == 0:
            return value
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


def build_model(cfg: DictConfig, run, node=None):
    """The model of ``cfg.model`` (or ``node``), built and checked, on the run's device and dtype."""
    dtype = getattr(torch, run.dtype)
    model = instantiate_config(cfg.model if node is None else node, dtype=dtype)
    return model.to(device=run.device, dtype=dtype)


def build(cfg: DictConfig, grad: bool = False, replicates: int | None = None):
    """Validate the config, then build (model, prepared graph, data, run settings, task settings).

    The model is built first (its checks are instant); then the memory of a
    run of it (``grad``: with a backward pass; ``replicates``: default the
    top-level ``replicates``) is checked where the population's size is known
    from its config, before the population is built; then the population is
    built and the run checked again from the graph's sizes.  Sets torch's
    intra-op thread count for the process (``threads``, or the default of
    :mod:`lpm_graph.threads`).
    """
    from lpm_graph import memory, threads
    from lpm_graph.data import cache, progress

    run, task = validate_run_config(cfg)
    threads.configure(run.threads)
    dtype = getattr(torch, run.dtype)
    reps = run.replicates if replicates is None else replicates
    model = instantiate_config(cfg.model, dtype=dtype)
    from lpm_graph.distributed import runner

    if runner.partitioned():  # one of several processes (torchrun): this rank's part (lpm_graph/distributed/)
        return runner.build(cfg, model, run, task, dtype, grad=grad, replicates=reps)
    planned = memory.estimate_config(cfg, model, grad=grad, replicates=reps)
    if planned is not None:
        memory.check_memory(planned)
    cache.clear_last_record()  # what the build did is then cache.last_record()
    with progress.shown(run.progress):
        data = instantiate_config(cfg.population)
    graph = model.prepare(data, dtype)
    model = model.to(device=run.device, dtype=dtype)
    graph = graph.to(run.device)
    memory.check_memory(memory.estimate_run(model, graph, run.steps, reps, grad=grad, dtype=dtype,
                                            device=run.device))
    return model, graph, data, run, task


def summarize(traj, model) -> dict:
    """Every outcome of the model: mean (and sd over replicates) of each."""
    out = {"num_nodes": dict(traj.num_nodes), "steps": traj.steps, "replicates": traj.replicates, "outcomes": {}}
    for name, outcome in model.outcomes.items():
        v = outcome(traj).detach().double().cpu()
        out["outcomes"][name] = {"mean": float(v.mean()), "sd": float(v.std()) if v.numel() > 1 else 0.0,
                                 "unit": outcome.unit, "definition": outcome.description}
        out[name] = float(v.mean())
    return out


def process_reports(model) -> dict:
    """``{"processes": {process name: its report()}}`` for the processes with something to report; ``{}`` when
    none has (a summary then has no ``processes`` entry, and an empty one is not taken for a number by ``metric=``)."""
    reports = {p.name: report for p in model.order if (report := p.report())}
    return {"processes": reports} if reports else {}


def plot_trajectory(traj, path: Path, title: str = "") -> None:
    """One panel per observable panel: mean over replicates, the replicates' range shaded."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    panels: dict[str, list] = {}
    for name, o in traj.observables.items():
        panels.setdefault(o.panel or o.kind, []).append((name, o))
    # a mean observed by groups (a share, e.g. a behaviour's decision by age) also gets a panel of its groups
    by_group = [(name, o, g) for name, o in traj.observables.items() if o.kind == "mean"
                for g in o.by if name in traj.grouped.get(g, {})]
    for name, o, g in by_group:
        panels[f"{name} by {g}"] = [(name, o, g)]
    n = len(panels)
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.6 * n + 0.8), sharex=True, squeeze=False)
    steps = torch.arange(traj.steps + 1).numpy()
    for ax, (panel, items) in zip(axes[:, 0], panels.items()):
        units = sorted({item[1].unit for item in items if item[1].unit})
        if len(items[0]) == 3:  # one line per group
            name, o, g = items[0]
            v = traj.grouped[g][name].detach().double().cpu().mean(-1)
            for k, label in enumerate(traj.labels[g]):
                ax.plot(steps, v[:, k].numpy(), label=f"{g} {label}")
            ax.set_ylabel(", ".join(units) if units else panel)
            ax.set_title(panel, fontsize=10, loc="left")
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
            continue
        for name, o in items:
            v = traj.series[name].detach().double().cpu()
            mean = v.mean(1).numpy()
            if o.style == "bar":
                ax.bar(steps[1:], mean[1:], width=1.0, alpha=0.7, label=name)
            else:
                line, = ax.plot(steps, mean, label=name)
                if traj.replicates > 1:
                    ax.fill_between(steps, v.min(1).values.numpy(), v.max(1).values.numpy(), alpha=0.2,
                                    color=line.get_color())
        ax.set_ylabel(", ".join(units) if units else panel)
        ax.set_title(panel, fontsize=10, loc="left")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    axes[-1, 0].set_xlabel("step")
    note = (f"lines: mean of {traj.replicates} replicates; shaded: their min-max range"
            if traj.replicates > 1 else "one replicate")
    fig.suptitle(f"{title}\n{note}" if title else note, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: a reader never sees half a file.

    The temporary is unique to the call (two writers of one file do not share it) and ends with the file's own
    suffix (``write`` may pick a format by it); the file gets the user's umask, as any file they write.  In a
    partitioned run only rank 0 writes: elsewhere this does nothing (``write`` is not called).
    """
    import tempfile

    from lpm_graph.distributed.runner import is_writer

    if not is_writer():
        return

    from lpm_graph.data.io import publish

    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def nodes_title(traj, seed: int) -> str:
    counts = ", ".join(f"{n:,} {nt}" for nt, n in traj.num_nodes.items())
    return f"{counts}; seed {seed}"


def simulate(cfg: DictConfig, output_dir: str | os.PathLike) -> dict:
    """Run ``task=simulate`` for a composed config; write outputs to ``output_dir``; return the summary."""
    t0 = time.perf_counter()
    model, graph, data, run, task = build(cfg)
    t_build = time.perf_counter() - t0
    from lpm_graph.data.cache import last_record

    record = last_record()
    t1 = time.perf_counter()
    with torch.no_grad():
        traj = model(graph, steps=run.steps, seed=run.seed, replicates=run.replicates, progress=run.progress)
    if run.device.startswith("cuda"):
        torch.cuda.synchronize()
    t_sim = time.perf_counter() - t1

    from lpm_graph.distributed import runner

    summary = summarize(traj, model)
    if not runner.is_writer():  # a partitioned run: rank 0 writes the outputs
        return summary
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary.update({
        "seed": run.seed,
        "device": run.device,
        "build_seconds": round(t_build, 3),
        "simulate_seconds": round(t_sim, 3),
        "runtime_seconds": round(time.perf_counter() - t0, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "config_hash": config_hash(cfg),
        "population_cache": None if record is None else {"status": record.status, "reason": record.reason,
                                                         "file": str(record.path)},
        "params": model.params.values_dict(),
        **process_reports(model),
        **runner.summary_entry(graph),
    })
    frame = traj.to_frame()
    if task.trajectory_format == "parquet":
        atomic_write(out / "trajectory.parquet", lambda p: frame.to_parquet(p, index=False))
    else:
        atomic_write(out / "trajectory.csv", lambda p: frame.to_csv(p, index=False))
    if task.plot:
        atomic_write(out / "trajectory.png", lambda p: plot_trajectory(traj, p, nodes_title(traj, run.seed)))
    if task.save_population:
        from lpm_graph.data import save_population

        save_population(data, out / "population.pt")
    atomic_write(out / "summary.json", lambda p: p.write_text(json.dumps(rounded(summary), indent=2) + "\n"))
    report.finish(cfg, out, observables=model.observables)
    return summary
