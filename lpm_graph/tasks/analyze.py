"""``task=analyze``: sensitivity, counterfactuals and policy optimisation on one population, for any model.

:func:`analyze` builds every model it needs from ``cfg.model`` (a scenario's
environment and behaviour processes added to the model's, the mode set
where an analysis needs it) and checks them all, then builds the population
once and runs the selected analyses (``task.analyses``):

``sensitivity`` (:mod:`lpm_graph.analysis.sensitivity`)
    derivative and elasticity of every outcome the model declares in every
    element of the chosen parameters, one backward pass per outcome ->
    ``sensitivity.csv``, ``sensitivity.png``.
``counterfactuals`` (:mod:`lpm_graph.analysis.counterfactual`)
    every scenario with the same seed and replicates; paired differences to
    the baseline with 95% intervals -> ``counterfactuals.csv``,
    ``counterfactuals.png``.
``policy`` (:mod:`lpm_graph.analysis.policy`)
    the policy parameters of ``task.policy.environment`` optimised by
    gradient (expected mode by default) against the objective, then
    evaluated in stochastic mode with common random numbers against the
    reference policies, on a seed the optimisation did not use ->
    ``policy.csv``, ``policy_parameters.csv``, ``policy.png``.

The scenarios and the policy of a model are configured in
``conf/task_model/analyze_<model>.yaml``.

With ``task.posterior`` (the ``posterior.parquet`` of a ``task=calibrate`` run
with ``task.method=vi | laplace | nuts | sbi``), every analysis runs over
``task.posterior_draws`` of its draws (:mod:`lpm_graph.analysis.uncertainty`):
each draw with the run's seed and replicates in every scenario (common random
numbers), intervals over parameter uncertainty and stochastic noise; the
policy is optimised at the posterior mean and evaluated at every draw; the
baseline summary is at the posterior mean.  ``summary.json`` holds the
baseline's summary (as ``task=simulate`` writes it), the headline numbers
of each analysis, runtimes, the config hash, the parameter values and the
baseline model's process reports (``processes.<name>``); the function returns it.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from lpm_graph import memory, report, threads
from lpm_graph.analysis.counterfactual import compare, plot_comparison, run_scenarios
from lpm_graph.analysis.outcomes import check_outcomes
from lpm_graph.analysis.policy import optimise, plot_policies
from lpm_graph.analysis.counterfactual import ScenarioRun
from lpm_graph.analysis.sensitivity import parameter_elements, plot_sensitivity, sensitivity
from lpm_graph.analysis.uncertainty import compare_over_draws, load_posterior, pick, summarize_sensitivities
from lpm_graph.config import validate_run_config
from lpm_graph.errors import ConfigError
from lpm_graph.observation import resolve_data_path
from lpm_graph.tasks.simulate import (atomic_write, build, build_model, config_hash, nodes_title, peak_rss_mb,
                                      process_reports, rounded, summarize)

__all__ = ["analyze", "POLICY_SEED_OFFSET"]

#: the optimisation of a stochastic policy draws with ``seed + POLICY_SEED_OFFSET``; its evaluation with
#: ``seed``, so that it is judged on random numbers it was not fitted to
POLICY_SEED_OFFSET = 1_000_003


def _model(cfg: DictConfig, run, *, mode: str | None = None, environment=(), behavior=(), params=None,
           time_varying=None):
    """A model from ``cfg.model`` with extra processes, parameters and mode (checked when built)."""
    node = OmegaConf.to_container(cfg.model, resolve=True)
    if mode is not None:
        node["mode"] = mode
    node["params"] = dict(node.get("params") or {})
    for key, extra in (("environment", environment), ("behavior", behavior)):
        node[key] = _with_processes(node.get(key), extra, node["params"])
    node["params"] = {**node["params"], **(params or {})}
    if time_varying:
        node["time_varying"] = {**(node.get("time_varying") or {}), **time_varying}
    return build_model(cfg, run, node)


def _laid_out_for_every_run(model, others, graph, data, run):
    """The population laid out for every model the analyses run, not only the base one: a scenario's or a
    policy's processes may read node attributes, edge types or groupings that the base model's do not."""
    from lpm_graph.core.graph import Graph, Requirements

    base = model.requirements()
    merged = Requirements()
    for m in (model, *others):
        merged.merge(m.requirements())

    def key(req):
        return ({nt: frozenset(a) for nt, a in req.attributes.items()}, frozenset(req.edge_types),
                frozenset(req.stacks), frozenset(req.groupings))

    if key(merged) == key(base):
        return graph
    laid_out = Graph(data, merged, graph.dtype)
    return model.prepare(laid_out).to(run.device)


def _with_processes(base, extra, params: dict):
    """A model's processes (``model.environment`` or ``model.behavior``: a list, or a mapping by name) with a
    scenario's: a list is appended (to a mapping's entries, each then named by its key); a mapping is merged
    by name, an entry ``null`` removing the process of that name and its parameters (``params[name]``)."""
    base = base or []
    if isinstance(extra, dict):
        merged = dict(base) if isinstance(base, dict) else {}
        listed = [] if isinstance(base, dict) else [dict(e) for e in base]
        for name, entry in extra.items():
            if entry is None:
                if name not in merged:
                    raise ConfigError(f"a scenario removes process {name!r}, which the model does not have "
                                      f"(it has {sorted(merged)})")
                del merged[name]
                params.pop(name, None)
            else:
                merged[name] = dict(entry)
        if listed:  # a list with named additions: one list, each addition named by its key
            return listed + [{**e, "name": n} for n, e in merged.items()]
        return merged
    extra = [dict(e) for e in extra or []]
    if isinstance(base, dict):
        if not extra:
            return base
        return [{**e, "name": n} for n, e in base.items() if e is not None] + extra
    return list(base) + extra


def _write_csv(frame, path: Path) -> None:
    atomic_write(path, lambda p: frame.to_csv(p, index=False))


def _finite(x: float) -> float | None:
    return None if isinstance(x, float) and math.isnan(x) else x


def _nested(flat: dict) -> dict:
    """``{'a.b': v}`` -> ``{'a': {'b': v}}`` (model.params takes namespaces)."""
    out: dict = {}
    for name, value in flat.items():
        node = out
        *path, last = name.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return out


class _Plan:
    """Every model the selected analyses need, built (and so checked) before the population."""

    def __init__(self, cfg: DictConfig, run, task):
        self._cfg, self._run, self._task = cfg, run, task
        self.base = _model(cfg, run)
        self.outcomes = list(task.outcomes) if task.outcomes else list(self.base.outcomes)
        check_outcomes(self.outcomes, self.base)
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
                    self.scenarios[s["name"]] = _model(cfg, run, environment=s.get("environment", []),
                                                       behavior=s.get("behavior", []))
                except ConfigError as e:
                    raise ConfigError(f"task.scenarios ({s['name']}): {e}") from None
        if "policy" in task.analyses:
            self.policy = self._policy_models(cfg, run, task.policy)

    def runs(self, run, replicates: int) -> list[tuple]:
        """``(model, steps, replicates, grad)`` of every run the analyses make."""
        out = []
        if self.sensitivity is not None:
            out.append((self.sensitivity, run.steps, 1 if self.sensitivity.sampler.mode == "expected" else replicates,
                        True))
        for m in (self.scenarios or {}).values():
            out.append((m, run.steps, replicates, False))
        if self.policy is not None:
            p = self._task.policy
            for name, m in self.policy.items():
                grad = name == "optimise"
                out.append((m, self.policy_steps, 1 if grad and p.mode == "expected" else replicates, grad))
        return out

    def _policy_models(self, cfg, run, p):
        check_outcomes([p.objective], self.base, "task.policy.objective")
        self.policy_steps = p.steps or run.steps
        probe = self._policy_model(None, p.mode)
        missing = [n for n in p.parameters if n not in probe.params]
        if missing:
            raise ConfigError(f"task.policy.parameters {missing} are not parameters of the model with the policy's "
                              f"processes (known: {probe.params.names})")
        start = {}
        for name in p.parameters:
            value = probe.params[name].detach()
            period = p.time_varying.get(name)
            spec = probe.param_specs.get(name, (None, None))[1]
            if spec is not None and spec.shape and value.dim() < len(spec.shape):  # a default scalar: full shape
                sizes = probe.group_sizes()
                value = value.expand([sizes.get(spec.grouping, 1) if d == "group" else int(d) for d in spec.shape])
            if period is not None:
                phases = max(1, math.ceil(self.policy_steps / period))
                value = value.unsqueeze(0).expand(phases, *value.shape)
            start[name] = value.tolist()
        self.policy_start = start
        models = {"optimise": self._policy_model(start, p.mode)}
        for name, entries in p.references.items():
            models[name] = _model(cfg, run, mode="stochastic", environment=list(entries))
        return models

    def _policy_model(self, values, mode):
        p = self._task.policy
        return _model(self._cfg, self._run, mode=mode, environment=list(p.environment),
                      params=_nested(values) if values else None,
                      time_varying={k: v for k, v in p.time_varying.items()} if values else None)


class _Draws:
    """The posterior draws an analysis runs at (``task.posterior``), cast for the model; or none."""

    def __init__(self, posterior, rows: list[int], dtype, device):
        self.posterior, self.rows = posterior, rows
        self._cast = lambda values: {n: v.to(dtype=dtype, device=device) for n, v in values.items()}

    def __iter__(self):
        return (self._cast(self.posterior.at(d)) for d in self.rows)

    def __len__(self):
        return len(self.rows)

    def mean(self) -> dict:
        picked = {n: v[torch.tensor(self.rows)] for n, v in self.posterior.values.items()}
        return self._cast({n: v.mean(0) for n, v in picked.items()})

    def summary(self) -> dict:
        return {"file": str(self.posterior.path), "rows": self.posterior.draws, "draws_used": len(self.rows),
                "parameters": sorted(self.posterior.values), "ignored_columns": self.posterior.ignored,
                "interval": "95% quantiles of the mixture over draws of each draw's Student-t of the paired mean "
                            "(parameter uncertainty and stochastic noise; common random numbers)"}


def _sensitivity(plan, graph, run, task, replicates, out: Path, draws: _Draws | None = None) -> dict:
    model = plan.sensitivity
    reps = 1 if model.sampler.mode == "expected" else replicates

    def one(at=None):
        return sensitivity(model, graph, steps=run.steps, outcome_names=plan.outcomes, parameters=task.parameters,
                           seed=run.seed, replicates=reps, temperature=task.peak_temperature, progress=run.progress,
                           at=at)

    table = one() if draws is None else summarize_sensitivities([one(at) for at in draws])
    _write_csv(table, out / "sensitivity.csv")
    if task.plot:
        counts = ", ".join(f"{n:,} {nt}" for nt, n in graph.num_nodes.items())
        atomic_write(out / "sensitivity.png", lambda p: plot_sensitivity(
            table, p, f"elasticities, {counts}, {run.steps} steps, {model.sampler.mode} mode"))
    top = {}
    for name, sub in table.groupby("outcome", sort=False):
        row = sub.loc[sub.elasticity.abs().idxmax()] if sub.elasticity.notna().any() else sub.iloc[0]
        element = row.element if isinstance(row.element, str) else None
        top[name] = {"value": float(sub.outcome_value.iloc[0]),
                     "largest_elasticity": {"parameter": row.parameter, "element": element,
                                            "elasticity": _finite(float(row.elasticity))}}
        if draws is not None:
            top[name]["largest_elasticity"]["ci95"] = [_finite(float(row.elasticity_low)),
                                                       _finite(float(row.elasticity_high))]
    return {"mode": model.sampler.mode, "replicates": reps,
            "parameter_elements": int(len(table) / len(plan.outcomes)), "outcomes": top}


def _over_draws(models, graph, steps, run, replicates, outcome_names, draws: _Draws, reference: str):
    """Every model at every draw with the same seed and replicates: the table and per-scenario runs pooled over
    draws (outcomes concatenated, curves averaged) for the plots."""
    per_draw = [run_scenarios(models, graph, steps=steps, seed=run.seed, replicates=replicates,
                              outcome_names=outcome_names, progress=run.progress, overrides=at) for at in draws]
    table = compare_over_draws(per_draw, reference)
    pooled = {s: ScenarioRun(outcomes={k: torch.cat([r[s].outcomes[k] for r in per_draw])
                                       for k in per_draw[0][s].outcomes},
                             curves={k: torch.stack([r[s].curves[k] for r in per_draw]).mean(0)
                                     for k in per_draw[0][s].curves})
              for s in per_draw[0]}
    return table, pooled


def _counterfactuals(plan, graph, run, task, replicates, out: Path,
                     draws: _Draws | None = None) -> tuple[dict, object]:
    kept = {}

    def keep(name, traj):
        if name == task.baseline:
            kept["traj"] = traj

    if draws is None:
        runs = run_scenarios(plan.scenarios, graph, steps=run.steps, seed=run.seed, replicates=replicates,
                             outcome_names=plan.outcomes, progress=run.progress, on_trajectory=keep)
        table = compare(runs, task.baseline)
    else:
        table, runs = _over_draws(plan.scenarios, graph, run.steps, run, replicates, plan.outcomes, draws,
                                  task.baseline)
    _write_csv(table, out / "counterfactuals.csv")
    if task.plot:
        units = {n: o.unit for n, o in plan.base.outcomes.items()}
        curve = next((n for n, o in plan.base.observables.items() if o.kind == "sum"), None)
        how = f"{replicates} paired replicates" + (f" at each of {len(draws)} posterior draws" if draws else "")
        atomic_write(out / "counterfactuals.png", lambda p: plot_comparison(
            table, runs, p, plan.outcomes, how, curve=curve, units=units))
    diffs = {}
    for s in plan.scenarios:
        if s == task.baseline:
            continue
        sub = table[(table.scenario == s) & table.outcome.isin(plan.outcomes)].set_index("outcome")
        diffs[s] = {o: {"difference": float(sub.loc[o, "diff_mean"]),
                        "ci95": [_finite(float(sub.loc[o, "diff_ci_low"])), _finite(float(sub.loc[o, "diff_ci_high"]))]}
                    for o in plan.outcomes}
    return {"baseline": task.baseline, "replicates": replicates, "differences": diffs}, kept.get("traj")


def _policy(plan, graph, run, task, replicates, out: Path, draws: _Draws | None = None) -> dict:
    import pandas as pd

    p = task.policy
    steps = plan.policy_steps
    model = plan.policy["optimise"]
    opt_seed = run.seed + POLICY_SEED_OFFSET
    result = optimise(model, graph, parameters=p.parameters, steps=steps, iterations=p.iterations, lr=p.lr,
                      objective=p.objective, maximize=p.maximize, seed=opt_seed,
                      replicates=1 if p.mode == "expected" else replicates, progress=run.progress,
                      fixed=draws.mean() if draws is not None else None)
    evaluated = {name: m for name, m in plan.policy.items() if name != "optimise"}
    evaluated["optimised"] = plan._policy_model({k: v.tolist() for k, v in result.values.items()}, "stochastic")
    outcome_names = list(dict.fromkeys([p.objective, *plan.outcomes]))
    reference = p.reference or next(iter(p.references), "optimised")
    if draws is None:
        runs = run_scenarios(evaluated, graph, steps=steps, seed=run.seed, replicates=replicates,
                             outcome_names=outcome_names, progress=run.progress)
        table = compare(runs, reference)
    else:
        table, _ = _over_draws(evaluated, graph, steps, run, replicates, outcome_names, draws, reference)
    _write_csv(table, out / "policy.csv")
    elements = parameter_elements(evaluated["optimised"], p.parameters, graph)
    values = pd.DataFrame([{"parameter": name, "element": label or None,
                            "start": float(torch.as_tensor(plan.policy_start[name])[index]) if index else
                            float(torch.as_tensor(plan.policy_start[name])),
                            "optimised": float(result.values[name][index]) if index else float(result.values[name])}
                           for name, index, label in elements])
    _write_csv(values, out / "policy_parameters.csv")
    unit = plan.base.outcomes[p.objective].unit
    if task.plot:
        atomic_write(out / "policy.png", lambda path: plot_policies(
            table, path, p.objective, unit, f"optimised in {p.mode} mode ({p.iterations} iterations"
            + ("; at the posterior mean" if draws else "") + f"); evaluated over {replicates} paired stochastic "
            "replicates on other random numbers" + (f", at each of {len(draws)} posterior draws" if draws else "")))
    sub = table[table.outcome == p.objective].set_index("scenario")
    return {
        "objective": p.objective, "maximize": p.maximize, "steps": steps, "optimisation_mode": p.mode,
        "optimisation_seed": opt_seed, "evaluation_seed": run.seed, "iterations": p.iterations,
        "objective_trace": result.trace, "reference": reference,
        "evaluation": {name: {"mean": float(sub.loc[name, "mean"]), "sd": _finite(float(sub.loc[name, "sd"])),
                              f"difference_to_{reference}": float(sub.loc[name, "diff_mean"]),
                              "ci95": [_finite(float(sub.loc[name, "diff_ci_low"])),
                                       _finite(float(sub.loc[name, "diff_ci_high"]))]}
                       for name in sub.index},
        "replicates": replicates,
    }


def analyze(cfg: DictConfig, output_dir: str | os.PathLike) -> dict:
    """Run ``task=analyze`` for a composed config; write outputs to ``output_dir``; return the summary."""
    t0 = time.perf_counter()
    run, task = validate_run_config(cfg)
    threads.configure(run.threads)
    plan = _Plan(cfg, run, task)  # every model built and checked before the population
    posterior = None
    if task.posterior is not None:  # read and checked against the model's parameters before the population
        posterior = load_posterior(resolve_data_path(task.posterior),
                                   {n: plan.base.params[n] for n in plan.base.params.names}, task.posterior_ignore)
    elif task.posterior_ignore:
        raise ConfigError("task.posterior_ignore is set but task.posterior is not; give the posterior file")
    replicates = task.replicates or run.replicates
    model, graph, data, run, task = build(cfg, replicates=replicates)
    graph = _laid_out_for_every_run(model, [m for m, *_ in plan.runs(run, replicates)], graph, data, run)
    for m, steps, reps, grad in plan.runs(run, replicates):  # every run's memory, before any of them
        memory.check_memory(memory.estimate_run(m, graph, steps, reps, grad=grad, dtype=getattr(torch, run.dtype),
                                                device=run.device))
    t_build = time.perf_counter() - t0
    draws = None
    if posterior is not None:
        draws = _Draws(posterior, pick(posterior, task.posterior_draws), model._dtype(), run.device)

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings, analyses, baseline_traj = {}, {}, None
    if plan.sensitivity is not None:
        t = time.perf_counter()
        analyses["sensitivity"] = _sensitivity(plan, graph, run, task, replicates, out, draws)
        timings["sensitivity_seconds"] = round(time.perf_counter() - t, 3)
    if plan.scenarios is not None:
        t = time.perf_counter()
        analyses["counterfactuals"], baseline_traj = _counterfactuals(plan, graph, run, task, replicates, out,
                                                                      draws)
        timings["counterfactuals_seconds"] = round(time.perf_counter() - t, 3)
    if plan.policy is not None:
        t = time.perf_counter()
        analyses["policy"] = _policy(plan, graph, run, task, replicates, out, draws)
        timings["policy_seconds"] = round(time.perf_counter() - t, 3)
    if baseline_traj is None:  # with a posterior: the baseline at its mean
        with torch.no_grad():
            baseline_traj = model(graph, steps=run.steps, seed=run.seed, replicates=replicates, progress=run.progress,
                                  overrides=draws.mean() if draws is not None else None)
    summary = summarize(baseline_traj, model)
    summary.update({
        "seed": run.seed,
        "device": run.device,
        "analyses": analyses,
        **({"posterior": draws.summary()} if draws is not None else {}),
        "build_seconds": round(t_build, 3),
        **timings,
        "runtime_seconds": round(time.perf_counter() - t0, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "config_hash": config_hash(cfg),
        "params": model.params.values_dict(),
        **process_reports(model),
        "title": nodes_title(baseline_traj, run.seed),
    })
    atomic_write(out / "summary.json", lambda p: p.write_text(json.dumps(rounded(summary), indent=2) + "\n"))
    report.finish(cfg, out, observables=model.observables)
    return summary
