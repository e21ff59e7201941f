"""``task=analyze``: sensitivity, counterfactuals and policy optimisation on one population.

:func:`analyze` is a pure function of the composed config and an output
folder, like :func:`~lpm_graph.tasks.simulate.simulate`.  It builds every
model it needs from ``cfg.model`` (a scenario's environment entries appended
to ``model.environment``, the mode set where an analysis needs it) and checks
them all, then builds the population once and runs the selected analyses
(``task.analyses``):

``sensitivity`` (:mod:`lpm_graph.analysis.sensitivity`)
    derivative and elasticity of every outcome in every element of the chosen
    parameters, one backward pass per outcome -> ``sensitivity.csv``,
    ``sensitivity.png``.
``counterfactuals`` (:mod:`lpm_graph.analysis.counterfactual`)
    every scenario with the same seed and replicates; paired differences to
    the baseline with 95% intervals -> ``counterfactuals.csv``,
    ``counterfactuals.png``.
``policy`` (:mod:`lpm_graph.analysis.policy`)
    a daily vaccine budget allocated across age groups, optimised by gradient
    (expected mode by default), then evaluated in stochastic mode with common
    random numbers against no vaccination, uniform (population-share) and
    oldest-first allocation -> ``policy.csv``, ``policy_allocation.csv``,
    ``policy.png``.

``summary.json`` holds the baseline's summary (as ``task=simulate`` writes
it: attack rate, peak, deaths ...), the headline numbers of each analysis,
runtimes, the config hash and the parameter values; the function returns it
(the CLI returns ``attack_rate`` to sweepers).
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from lpm_graph.analysis.counterfactual import compare, plot_comparison, run_scenarios
from lpm_graph.analysis.outcomes import age_labels, check_outcomes
from lpm_graph.analysis.policy import optimise_allocation, plot_policies, population_share_logits
from lpm_graph.analysis.sensitivity import plot_sensitivity, sensitivity
from lpm_graph.config import validate_run_config
from lpm_graph.errors import ConfigError
from lpm_graph.dynamics import Vaccination
from lpm_graph.tasks.simulate import _atomic_write, _instantiate, build, config_hash, peak_rss_mb, summarize

__all__ = ["analyze"]

VACCINATION = "lpm_graph.dynamics.Vaccination"


def _model(cfg: DictConfig, run, *, mode: str | None = None, environment=(), params=None, time_varying=None):
    """A model from ``cfg.model`` with extra environment entries, parameters and mode (checked when built)."""
    node = OmegaConf.to_container(cfg.model, resolve=True)
    if mode is not None:
        node["mode"] = mode
    node["environment"] = list(node.get("environment") or []) + [dict(e) for e in environment]
    node["params"] = {**node["params"], **(params or {})}
    if time_varying:
        node["time_varying"] = {**(node.get("time_varying") or {}), **time_varying}
    model = _instantiate(node, "model")
    return model.to(device=run.device, dtype=getattr(torch, run.dtype))


def _write_csv(frame, path: Path) -> None:
    _atomic_write(path, lambda p: frame.to_csv(p, index=False))


def _finite(x: float) -> float | None:
    return None if isinstance(x, float) and math.isnan(x) else x


class _Plan:
    """Every model the selected analyses need, built (and so checked) before the population."""

    def __init__(self, cfg: DictConfig, run, task):
        self._cfg, self._run, self._task = cfg, run, task
        self.base = _model(cfg, run)
        check_outcomes(task.outcomes, self.base.compartments)
        self.sensitivity = self.scenarios = self.policy = None
        if "sensitivity" in task.analyses:
            mode = None if task.sensitivity_mode == "model" else task.sensitivity_mode
            self.sensitivity = _model(cfg, run, mode=mode)
            unknown = [p for p in (task.parameters or []) if p not in self.sensitivity.params]
            if unknown:
                raise ConfigError(f"task.parameters names {unknown}, which are not in model.params "
                                  f"(known: {self.sensitivity.params.names})")
        if "counterfactuals" in task.analyses:
            self.scenarios = {}
            for s in task.scenarios:
                try:
                    self.scenarios[s["name"]] = _model(cfg, run, environment=s.get("environment", []))
                except ConfigError as e:
                    raise ConfigError(f"task.scenarios ({s['name']}): {e}") from None
        if "policy" in task.analyses:
            self.policy = self._policy_models(cfg, run, task.policy)

    def _policy_models(self, cfg, run, p):
        if p.objective not in ("attack_rate", "peak_size", "deaths"):
            raise ConfigError(f"task.policy.objective {p.objective!r} cannot be optimised through the unroll; "
                              "use deaths, attack_rate or peak_size")
        check_outcomes([p.objective], self.base.compartments)
        if any(isinstance(g, Vaccination) for g in self.base.environment):
            raise ConfigError("task=analyze policy: model.environment already holds a Vaccination; two campaigns "
                              "would share the vaccinated state V and compound their efficacy; remove it")
        if p.parameter in self.base.params:
            raise ConfigError(f"task.policy.parameter {p.parameter!r} is already in model.params; choose another name")
        G = len(self.base.age_bins)
        self.policy_steps = p.steps or run.steps
        last_day = min(p.end, self.policy_steps) if p.end is not None else self.policy_steps
        self.policy_phases = 1 if p.period is None else max(1, math.ceil(last_day / p.period))
        # spill_over: doses a covered group cannot use go to the others, so no policy wastes its budget
        self.policy_campaign = dict(_target_=VACCINATION, daily_fraction=p.daily_fraction, efficacy=p.efficacy,
                                    start=p.start, end=p.end, spill_over=True)
        return {
            "optimise": self.allocation_model([[0.0] * G] * self.policy_phases, p.mode),
            "no_vaccination": _model(cfg, run, mode="stochastic"),
            "uniform": _model(cfg, run, mode="stochastic", environment=[self.policy_campaign]),
            "oldest_first": _model(cfg, run, mode="stochastic",
                                   environment=[{**self.policy_campaign, "priority": list(range(G - 1, -1, -1))}]),
        }

    def allocation_model(self, logits: list, mode: str):
        """The campaign with allocation ``softmax(logits)`` (``[K, G]``: one row per phase of ``task.policy.period``
        days; one row: the same all along), held in the parameter ``task.policy.parameter``."""
        p = self._task.policy
        one = len(logits) == 1
        return _model(self._cfg, self._run, mode=mode,
                      environment=[{**self.policy_campaign, "allocation": p.parameter}],
                      params={p.parameter: logits[0] if one else logits},
                      time_varying=None if one else {p.parameter: p.period})


def _sensitivity(plan, graph, run, task, replicates, out: Path) -> dict:
    model = plan.sensitivity
    reps = 1 if model.sampler.mode == "expected" else replicates
    table = sensitivity(model, graph, steps=run.steps, outcome_names=task.outcomes, parameters=task.parameters,
                        seed=run.seed, replicates=reps, temperature=task.peak_temperature, progress=run.progress)
    _write_csv(table, out / "sensitivity.csv")
    if task.plot:
        _atomic_write(out / "sensitivity.png", lambda p: plot_sensitivity(
            table, p, f"elasticities, {graph.num_people:,} people, {run.steps} days, {model.sampler.mode} mode"))
    top = {}
    for name, sub in table.groupby("outcome", sort=False):
        row = sub.loc[sub.elasticity.abs().idxmax()] if sub.elasticity.notna().any() else sub.iloc[0]
        top[name] = {"value": float(sub.outcome_value.iloc[0]),
                     "largest_elasticity": {"parameter": row.parameter, "element": row.element,
                                            "elasticity": _finite(float(row.elasticity))}}
    return {"mode": model.sampler.mode, "replicates": reps, "parameter_elements": int(len(table) / len(task.outcomes)),
            "outcomes": top}


def _counterfactuals(plan, graph, run, task, replicates, out: Path) -> tuple[dict, object]:
    kept = {}

    def keep(name, traj):
        if name == task.baseline:
            kept["traj"] = traj

    runs = run_scenarios(plan.scenarios, graph, steps=run.steps, seed=run.seed, replicates=replicates,
                         outcome_names=task.outcomes, progress=run.progress, on_trajectory=keep)
    table = compare(runs, task.baseline)
    _write_csv(table, out / "counterfactuals.csv")
    if task.plot:
        _atomic_write(out / "counterfactuals.png", lambda p: plot_comparison(
            table, runs, p, task.outcomes, f"{graph.num_people:,} people, {replicates} paired replicates"))
    diffs = {}
    for s in plan.scenarios:
        if s == task.baseline:
            continue
        sub = table[(table.scenario == s) & table.outcome.isin(task.outcomes)].set_index("outcome")
        diffs[s] = {o: {"difference": float(sub.loc[o, "diff_mean"]),
                        "ci95": [_finite(float(sub.loc[o, "diff_ci_low"])), _finite(float(sub.loc[o, "diff_ci_high"]))]}
                    for o in task.outcomes}
    return {"baseline": task.baseline, "replicates": replicates, "differences": diffs}, kept["traj"]


def _phase_labels(phases: int, period: int | None, steps: int) -> list[str]:
    if phases == 1:
        return [f"days 0-{steps - 1}"]
    return [f"days {k * period}-{(k + 1) * period - 1}" if k < phases - 1 else f"days {k * period}+"
            for k in range(phases)]


def _policy(plan, graph, run, task, replicates, out: Path) -> dict:
    import pandas as pd

    p = task.policy
    steps, phases = plan.policy_steps, plan.policy_phases
    model = plan.policy["optimise"]
    start = population_share_logits(graph, model.params.raw(model.params.names[0]).dtype)
    with torch.no_grad():
        model.params.raw(p.parameter).copy_(start.expand_as(model.params.raw(p.parameter)))
    result = optimise_allocation(model, graph, parameter=p.parameter, steps=steps, iterations=p.iterations, lr=p.lr,
                                 objective=p.objective, seed=run.seed,
                                 replicates=1 if p.mode == "expected" else replicates, progress=run.progress)
    evaluated = {name: plan.policy[name] for name in ("no_vaccination", "uniform", "oldest_first")}
    evaluated["optimised"] = plan.allocation_model(result.logits.reshape(phases, -1).tolist(), "stochastic")
    outcome_names = list(dict.fromkeys([p.objective, *task.outcomes]))
    runs = run_scenarios(evaluated, graph, steps=steps, seed=run.seed, replicates=replicates,
                         outcome_names=outcome_names, progress=run.progress)
    table = compare(runs, "uniform")
    _write_csv(table, out / "policy.csv")
    labels = age_labels(model.age_bins)
    uniform = torch.softmax(start, 0).tolist()
    shares = result.shares.reshape(phases, -1).tolist()
    phase_labels = _phase_labels(phases, p.period, steps)
    columns = {"age_group": labels, "uniform": uniform}
    columns.update({f"optimised {d}" if phases > 1 else "optimised": s for d, s in zip(phase_labels, shares)})
    allocation = pd.DataFrame(columns)
    _write_csv(allocation, out / "policy_allocation.csv")
    if task.plot:
        bars = {"uniform": uniform, **{k: v for k, v in columns.items() if k.startswith("optimised")}}
        _atomic_write(out / "policy.png", lambda path: plot_policies(
            table, bars, labels, path, p.objective,
            f"daily budget {p.daily_fraction:g} of the population, days {p.start}-{p.end}; optimised in {p.mode} "
            f"mode, evaluated over {replicates} paired stochastic replicates"))
    sub = table[table.outcome == p.objective].set_index("scenario")
    return {
        "objective": p.objective, "steps": steps, "optimisation_mode": p.mode, "iterations": p.iterations,
        "objective_trace": result.trace,
        "optimised_shares": {d: dict(zip(labels, s)) for d, s in zip(phase_labels, shares)},
        "evaluation": {name: {"mean": float(sub.loc[name, "mean"]), "sd": _finite(float(sub.loc[name, "sd"])),
                              "difference_to_uniform": float(sub.loc[name, "diff_mean"]),
                              "ci95": [_finite(float(sub.loc[name, "diff_ci_low"])),
                                       _finite(float(sub.loc[name, "diff_ci_high"]))]}
                       for name in sub.index},
        "replicates": replicates,
    }


def analyze(cfg: DictConfig, output_dir: str | os.PathLike) -> dict:
    """Run ``task=analyze`` for a composed config; write outputs to ``output_dir``; return the summary."""
    t0 = time.perf_counter()
    run, task = validate_run_config(cfg)
    if run.threads:
        torch.set_num_threads(run.threads)
    plan = _Plan(cfg, run, task)  # every model built and checked before the population
    model, graph, _, run, task = build(cfg)
    replicates = task.replicates or run.replicates
    t_build = time.perf_counter() - t0

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings, analyses, baseline_traj = {}, {}, None
    if plan.sensitivity is not None:
        t = time.perf_counter()
        analyses["sensitivity"] = _sensitivity(plan, graph, run, task, replicates, out)
        timings["sensitivity_seconds"] = round(time.perf_counter() - t, 3)
    if plan.scenarios is not None:
        t = time.perf_counter()
        analyses["counterfactuals"], baseline_traj = _counterfactuals(plan, graph, run, task, replicates, out)
        timings["counterfactuals_seconds"] = round(time.perf_counter() - t, 3)
    if plan.policy is not None:
        t = time.perf_counter()
        analyses["policy"] = _policy(plan, graph, run, task, replicates, out)
        timings["policy_seconds"] = round(time.perf_counter() - t, 3)
    if baseline_traj is None:
        with torch.no_grad():
            baseline_traj = model(graph, steps=run.steps, seed=run.seed, replicates=replicates, progress=run.progress)
    summary = summarize(baseline_traj, graph.num_people)
    summary.update({
        "seed": run.seed,
        "device": run.device,
        "analyses": analyses,
        "build_seconds": round(t_build, 3),
        **timings,
        "runtime_seconds": round(time.perf_counter() - t0, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "config_hash": config_hash(cfg),
        "params": model.params.values_dict(),
    })
    _atomic_write(out / "summary.json", lambda p: p.write_text(json.dumps(summary, indent=2) + "\n"))
    return summary
