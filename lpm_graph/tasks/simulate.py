"""``task=simulate``: a forward run and its outputs.

:func:`simulate` is a pure function of the composed config and an output
folder: it builds the model (checking its parameters), then the population
(checking it), runs the model, writes

* ``trajectory.parquet`` (or ``.csv``): one row per (step, replicate) with
  compartment counts, new infections and deaths, by age group too;
* ``summary.json``: peak, peak day, attack rate, deaths, runtimes, the config
  hash and the parameter values;
* ``epidemic_curves.png``: compartments and daily new infections;

and returns the summary (the CLI returns its ``attack_rate`` to sweepers).
"""
from __future__ import annotations

import hashlib
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lpm_graph.config import validate_run_config

__all__ = ["simulate", "config_hash", "build", "summarize", "plot_trajectory"]


def config_hash(cfg: DictConfig) -> str:
    """SHA-256 (first 16 hex digits) of the resolved config as YAML."""
    return hashlib.sha256(OmegaConf.to_yaml(cfg, resolve=True).encode()).hexdigest()[:16]


def _instantiate(node, what: str):
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, ValueError):
            raise cause from None
        raise


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux: ru_maxrss in KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def build(cfg: DictConfig):
    """Validate the config, then build (model, prepared graph, run settings, task settings).

    The model is built first: its parameter checks are instant, the population
    build is not.
    """
    run, task = validate_run_config(cfg)
    if run.threads:
        torch.set_num_threads(run.threads)
    dtype = getattr(torch, run.dtype)
    model = _instantiate(cfg.model, "model")
    data = _instantiate(cfg.population, "population")
    graph = model.prepare(data)
    model = model.to(device=run.device, dtype=dtype)
    return model, graph.to(run.device), data, run, task


def summarize(traj, num_people: int) -> dict:
    """Outcome metrics averaged over replicates."""
    s = {k: v.detach().double().cpu() for k, v in traj.series.items()}
    infectious = s["I"].mean(1)
    attack = 1.0 - s["S"][-1] / num_people
    out = {
        "num_people": num_people,
        "steps": traj.steps,
        "replicates": traj.replicates,
        "peak_infectious": float(infectious.max()),
        "peak_day": int(infectious.argmax()),
        "attack_rate": float(attack.mean()),
        "attack_rate_sd": float(attack.std()) if traj.replicates > 1 else 0.0,
        "total_infections": float((num_people - s["S"][-1]).mean()),
    }
    if "D" in s:
        out["deaths"] = float(s["D"][-1].mean())
    return out


def plot_trajectory(traj, path: Path, title: str = "") -> None:
    """Compartments over time and daily new infections (mean, min-max band over replicates)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    days = torch.arange(traj.steps + 1).numpy()
    for c in traj.compartments:
        v = traj.series[c].detach().double().cpu()
        ax1.plot(days, v.mean(1).numpy(), label=c)
        if traj.replicates > 1:
            ax1.fill_between(days, v.min(1).values.numpy(), v.max(1).values.numpy(), alpha=0.2)
    ax1.set_ylabel("people")
    ax1.legend(loc="center right")
    ax1.set_title(title or "epidemic curves")
    new = traj.series["new_infections"].detach().double().cpu()
    ax2.bar(days[1:], new.mean(1).numpy()[1:], width=1.0, color="tab:red", alpha=0.7, label="new infections")
    ax2.set_xlabel("day")
    ax2.set_ylabel("new infections per day")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def simulate(cfg: DictConfig, output_dir: str | os.PathLike) -> dict:
    """Run ``task=simulate`` for a composed config; write outputs to ``output_dir``; return the summary."""
    from lpm_graph import memory

    t0 = time.perf_counter()
    validate_run_config(cfg)
    planned = memory.estimate_config(cfg)  # synthetic populations: known before they are built
    if planned is not None:
        memory.check_memory(planned)
    model, graph, data, run, task = build(cfg)
    t_build = time.perf_counter() - t0
    memory.check_memory(memory.estimate_run(model, graph, run.steps, run.replicates,
                                            dtype=getattr(torch, run.dtype), device=run.device))
    t1 = time.perf_counter()
    with torch.no_grad():
        traj = model(graph, steps=run.steps, seed=run.seed, replicates=run.replicates, progress=run.progress)
    if run.device.startswith("cuda"):
        torch.cuda.synchronize()
    t_sim = time.perf_counter() - t1

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(traj, graph.num_people)
    summary.update({
        "seed": run.seed,
        "device": run.device,
        "build_seconds": round(t_build, 3),
        "simulate_seconds": round(t_sim, 3),
        "runtime_seconds": round(time.perf_counter() - t0, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "config_hash": config_hash(cfg),
        "params": model.params.values_dict(),
    })
    frame = traj.to_frame()
    if task.trajectory_format == "parquet":
        _atomic_write(out / "trajectory.parquet", lambda p: frame.to_parquet(p, index=False))
    else:
        _atomic_write(out / "trajectory.csv", lambda p: frame.to_csv(p, index=False))
    if task.plot:
        _atomic_write(out / "epidemic_curves.png",
                      lambda p: plot_trajectory(traj, p, f"{graph.num_people:,} people, seed {run.seed}"))
    if task.save_population:
        from lpm_graph.data import save_population

        save_population(data, out / "population.pt")
    _atomic_write(out / "summary.json", lambda p: p.write_text(json.dumps(summary, indent=2) + "\n"))
    return summary
