"""``task=calibrate``: fit θ to observed series by gradient descent through the simulator.

Each iteration runs the whole unrolled model (per-step checkpointing as the
model config says), maps its trajectory through the observation model, and
takes one optimiser step on the learnable parameters and on the weights of
every process holding trainable modules (a neural behaviour's network,
reported as ``trained_weights``) — and, with ``task.calibration_net``, on the
weights of a network producing the time-varying parameters from feature
series.

Iteration ``i`` draws its random numbers with seed ``seed + 1 + i``: the
result is determined by the config, the data and the iteration count.  A
checkpoint (fitted parameters, network weights, optimiser and RNG state, loss
and parameter history, the config and a data digest; see
:mod:`lpm_graph.tasks.checkpoint`) is written atomically every
``task.checkpoint_every`` iterations; ``task.resume=<checkpoint.pt>`` verifies
its SHA-256 digest, continues from it and reaches the same result, bit for
bit, as an uninterrupted run.  Fixed parameters come from the config, not the
checkpoint.  It refuses a modified, truncated or foreign file, a checkpoint
made with another config (naming the changed keys) or other data, and a
``task.iterations`` below the checkpoint's iteration.

``task.method`` (:mod:`lpm_graph.tasks.posterior`): ``map``, the default,
is the optimiser above, unchanged; with ``task.priors`` declared it adds
-log p(θ)/n to the loss (the posterior mode).  ``vi`` (Pyro
SVI, a multivariate normal guide in the unconstrained space, checkpointed
and resumed bit for bit), ``laplace`` (the MAP and the log-likelihood's
second-order expansion in the bounded parameters with the exact prior,
sampled by importance sampling), ``nuts`` (Pyro NUTS, not resumable) and ``sbi``
(the ``sbi`` package's NPE, extra ``sbi``) sample the posterior of
``model.learnable`` under a Poisson or negative binomial likelihood
(``task.loss``) around the simulator's mean.

Outputs: ``fitted_params.json`` (with ``processes.<name>``: what each process
reports over the whole calibration, :meth:`~lpm_graph.core.Process.report`), ``loss.csv`` (per iteration: the loss and
the value of every fitted parameter after that iteration's optimiser step),
``loss.png``, ``fit.png`` (observed vs fitted), ``checkpoint.pt``; for every
method the posterior files ``posterior.parquet`` (one column per parameter
element, one row per draw; ``map``: one row, its fitted point),
``posterior_summary.csv`` and, with ``task.plot``, ``posterior_pairs.png`` and
``posterior_predictive.png``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lpm_graph import report
from lpm_graph.errors import CalibrationWarning, ConfigError
from lpm_graph.core.loop import flush_denormals
from lpm_graph.core.params import flatten_params
from lpm_graph.data.cache import file_digest
from lpm_graph.observation import (ObservationModel, load_observations, observation_loss, resolve_data_path,
                                   series_for_file)
from lpm_graph.tasks.checkpoint import load_calibration, restore_fitted, resumable_config, resume_key, save_calibration
from lpm_graph.tasks.posterior import Prior, map_outputs, map_prior_term
from lpm_graph.tasks.simulate import atomic_write, build, peak_rss_mb, process_reports, rounded

__all__ = ["calibrate", "resume_key", "trained_weights"]


def trained_weights(model) -> dict[str, int]:
    """Per process holding trainable weights of its own (not the model's parameter set): their number."""
    out = {}
    for p in model.order:
        n = sum(w.numel() for w in p.parameters() if w.requires_grad)
        if n:
            out[p.name] = n
    return out

def _element_names(name: str, shape) -> list[str]:
    """Column names of a parameter's elements: ``name`` for a scalar, ``name[i]`` (``name[k][g]`` ...) otherwise."""
    names = [name]
    for size in shape:
        names = [f"{n}[{i}]" for n in names for i in range(size)]
    return names


class _ParameterTrace:
    """The constrained value of every fitted parameter, one row per iteration (columns of ``loss.csv``).

    Fitted parameters are ``model.learnable`` and the targets of a calibration network (its output series).
    """

    def __init__(self, model, net, features):
        self._model, self._net, self._features = model, net, features
        values = self.values()
        self.columns = [c for name, v in values.items() for c in _element_names(name, v.shape)]

    def values(self) -> dict:
        with torch.no_grad():
            out = {n: self._model.params[n] for n in self._model.params.learnable}
            if self._net is not None:
                out.update(self._net(self._features))
        return out

    def row(self) -> list[float]:
        return [float(x) for v in self.values().values() for x in v.detach().double().cpu().flatten().tolist()]


def _loss_csv(history: list[float], trace: list[list[float]], columns: list[str]) -> str:
    lines = [",".join(["iteration", "loss", *columns])]
    lines += [",".join([str(i + 1), repr(v), *map(repr, row)]) for i, (v, row) in enumerate(zip(history, trace))]
    return "\n".join(lines) + "\n"


def _plot_loss(history, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(1, len(history) + 1), history)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title("calibration loss")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def fit_figure(obs, pred, obs_model, model):
    """The figure of ``fit.png``: per observed series, the data and the fitted prediction.

    Each panel's y axis names what the column counts: the observable it is compared with (and its group), its
    unit, and the reporting fraction and delay applied to it.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    n = len(pred)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    steps = obs.steps.numpy()
    for ax, (name, yhat) in zip(axes.flat, pred.items()):
        source, group, reporting, delay = obs_model.series[name]
        unit = model.observables[source].unit if source in model.observables else ""
        what = source + (f" ({group[0]} {group[1]})" if group else "")
        scaled = [f"x {reporting}" if isinstance(reporting, str) or float(reporting) != 1.0 else "",
                  f"{delay} steps later" if delay else ""]
        ax.plot(steps, obs.values[name].numpy(), ".", color="k", ms=3, label="observed")
        ax.plot(steps, yhat.detach().double().cpu().numpy(), color="tab:red", label="fitted")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel(what + (f", {unit}" if unit else "") + "".join(f"\n{x}" for x in scaled if x), fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _plot_fit(obs, pred, obs_model, model, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = fit_figure(obs, pred, obs_model, model)
    fig.savefig(path, dpi=100)
    plt.close(fig)


#: a simulated-to-observed ratio of totals beyond this factor (either way) at the first iteration is warned of
SCALE_FACTOR = 10.0


def _warn_on_scale(pred, obs, obs_model, model, graph) -> None:
    """Warn when the simulated and observed totals differ by more than :data:`SCALE_FACTOR` either way.

    Compared at the starting parameters, before the first optimiser step, over the series that scale with the
    population (observables of kind ``count`` or ``sum``, summed over their groups; a mean or a variance does
    not).  A factor of that size is most often a population of another size than the one the data came from,
    or a missing reporting fraction, which the fitted parameters would then absorb.
    """
    observed = simulated = 0.0
    node_types, names = set(), []
    for name, yhat in pred.items():
        observable = model.observables[obs_model.series[name][0]]
        if observable.kind not in ("count", "sum"):
            continue
        y = obs.values[name]
        mask = ~torch.isnan(y)
        observed += float(y[mask].sum())
        simulated += float(yhat.detach().double().cpu()[mask].sum())
        node_types.add(observable.node_type)
        names.append(name)
    if not names or (observed <= 0 and simulated <= 0):
        return
    ratio = math.inf if observed <= 0 else simulated / observed
    if 1 / SCALE_FACTOR <= ratio <= SCALE_FACTOR:
        return
    factor = "none simulated" if simulated <= 0 else (
        f"{ratio:.3g}x the data" if ratio > 1 else f"1/{1 / ratio:.3g} of the data")
    sizes = ", ".join(f"{int(graph.num_nodes[t]):,} {t} nodes" for t in sorted(node_types))
    shown = ", ".join(map(repr, names[:3])) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    warnings.warn(
        f"observations and model differ in scale by more than {SCALE_FACTOR:g}x at the starting parameters: "
        f"the observed series ({shown}) total {observed:.6g} over the observed steps, the simulated ones "
        f"{simulated:.6g} ({factor}), on a population of {sizes}. If the data come from a population of another "
        "size, match population.num_people (or the reporting fraction) before calibrating, or the fitted "
        "parameters absorb the difference", CalibrationWarning, stacklevel=3)


def calibrate(cfg: DictConfig, output_dir: str | os.PathLike) -> dict:
    """Run ``task=calibrate``; write outputs to ``output_dir``; return metrics (``final_loss`` ...)."""
    t0 = time.perf_counter()
    if cfg.get("observations") is None:
        raise ConfigError("task=calibrate needs observations: choose observations=<name> (e.g. observations=synthetic)")
    model, graph, _, run, task = build(cfg, grad=True, replicates=int(cfg.task.replicates))
    ocfg = OmegaConf.to_container(cfg.observations, resolve=True)
    series, note = series_for_file(ocfg["path"], ocfg["series"], ocfg.get("time_column", "step"),
                                   model.main_observable)
    if note:
        warnings.warn(note, CalibrationWarning, stacklevel=2)
    obs_model = ObservationModel(series)
    obs_model.check(model)
    obs = load_observations(ocfg["path"], series, ocfg.get("time_column", "step"), ocfg.get("start_date"))
    if obs.last_step > run.steps:
        raise ConfigError(f"the observations reach step {obs.last_step} but steps={run.steps}; set steps >= "
                          f"{obs.last_step}")
    digest = obs.digest
    if task.method != "map":  # a posterior: lpm_graph/tasks/posterior.py
        from lpm_graph.tasks.posterior import infer

        metrics = infer(cfg, task, run, model, graph, obs, obs_model, digest, Path(output_dir), t0)
        report.finish(cfg, output_dir, observables=model.observables)  # its posterior section reads the files
        return metrics

    net, features = None, None
    if task.calibration_net:
        from lpm_graph.calibration_net import CalibrationNet, load_features

        nc = dict(task.calibration_net)
        features = load_features(nc["features"], nc.get("columns")).to(run.device)
        digest = hashlib.sha256((digest + file_digest(resolve_data_path(nc["features"]))).encode()).hexdigest()
        targets = flatten_params(nc["targets"])
        for name in targets:
            if name not in model.params.time_varying:
                raise ConfigError(f"task.calibration_net.targets: {name!r} must be time-varying "
                                  f"(model.time_varying.{name}: <period>) with one value per feature row")
        init = {n: float(model.params[n].detach().flatten()[0]) for n in targets}
        net = CalibrationNet(features.size(1), targets, int(nc.get("hidden", 16)), init, seed=run.seed).to(run.device)
    # the learnable parameters and the weights of every process holding trainable modules (a neural behaviour's
    # network is a submodule of its process, so of the model): all of model.parameters() that require grad
    trainable = [p for p in model.parameters() if p.requires_grad]
    weights = trained_weights(model)
    if net is not None:
        trainable += list(net.parameters())
    if not trainable:
        raise ConfigError("task=calibrate has nothing to fit: list parameters in model.learnable, "
                          "configure task.calibration_net, or use a process with trainable weights")
    optimizer = instantiate(task.optimizer, _convert_="all")(trainable)
    prior = Prior(model.params, task.priors, required=False) if task.priors else None  # map: a term only if declared

    from lpm_graph.distributed.halo import average_gradients
    from lpm_graph.distributed.runner import is_writer, sync_parameters

    part = getattr(graph, "partition", None)
    config = resumable_config(cfg)
    tracer = _ParameterTrace(model, net, features)
    history: list[float] = []
    trace: list[list[float]] = []  # fitted values after each iteration, columns tracer.columns
    start = 0
    if task.resume:
        ckpt = load_calibration(task.resume, config, digest, task.iterations)
        restore_fitted(ckpt, task.resume, model, net, optimizer)  # fixed parameters stay the config's
        history = list(ckpt["history"])
        trace = [list(r) for r in ckpt["trace"]]
        start = int(ckpt["iteration"])
        torch.set_rng_state(ckpt["torch_rng"])

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)

    def checkpoint(iteration: int) -> None:
        if not is_writer():  # a partitioned run: rank 0 writes
            return
        save_calibration(out / "checkpoint.pt", iteration=iteration, model=model, net=net, optimizer=optimizer,
                         history=history, trace=trace, config=config, digest=digest)

    def simulate(seed: int, replicates: int, progress: bool = False):
        overrides = net(features) if net is not None else None
        traj = model(graph, steps=run.steps, seed=seed, replicates=replicates, overrides=overrides,
                     progress=progress)
        values = {**model.params.as_dict(), **(overrides or {})}
        return obs_model.predict(traj, obs, values)

    from tqdm.auto import tqdm

    bar = tqdm(range(start, task.iterations), desc="calibrate", unit="it", disable=not run.progress or not is_writer(),
               leave=False)
    for it in bar:
        optimizer.zero_grad(set_to_none=True)
        pred = simulate(run.seed + 1 + it, task.replicates, progress=run.progress)
        if it == start:
            _warn_on_scale(pred, obs, obs_model, model, graph)
        loss = observation_loss(pred, obs, task.loss, task.dispersion)
        if prior is not None:
            loss = loss + map_prior_term(prior, model, obs)
        if not torch.isfinite(loss):
            raise ConfigError(f"task=calibrate: the loss became {float(loss)} at iteration {it}; lower the "
                              "learning rate (task.optimizer.lr) or add bounds (model.bounds)")
        with flush_denormals():
            loss.backward()
        if part is not None:  # a partitioned run: each rank holds its share of the gradient (lpm_graph.distributed)
            average_gradients(trainable, part.group)
        optimizer.step()
        if part is not None:
            sync_parameters(trainable, part.group)
        history.append(float(loss.detach()))
        trace.append(tracer.row())
        bar.set_postfix(loss=f"{history[-1]:.4g}")
        if task.checkpoint_every and (it + 1) % task.checkpoint_every == 0:
            checkpoint(it + 1)
    checkpoint(task.iterations)

    with torch.no_grad():
        pred = simulate(run.seed, task.replicates)
        final = float(observation_loss(pred, obs, task.loss, task.dispersion))
        fitted = model.params.values_dict()
        if net is not None:
            fitted.update({k: v.cpu().tolist() for k, v in net(features).items()})
    metrics = {
        "method": "map",
        "final_loss": final,
        "iterations": task.iterations,
        "simulations": task.iterations + 1,
        "learnable": model.params.learnable + (net.names if net is not None else []),
        "trained_weights": weights,
        "fitted": fitted,
        "runtime_seconds": round(time.perf_counter() - t0, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        **process_reports(model),
    }
    atomic_write(out / "fitted_params.json", lambda p: p.write_text(json.dumps(rounded(metrics), indent=2) + "\n"))
    atomic_write(out / "loss.csv", lambda p: p.write_text(_loss_csv(history, trace, tracer.columns)))
    if task.plot:
        atomic_write(out / "loss.png", lambda p: _plot_loss(history, p))
        atomic_write(out / "fit.png", lambda p: _plot_fit(obs, pred, obs_model, model, p))

    def one_run(seed: int, replicates: int):
        overrides = net(features) if net is not None else None
        traj = model(graph, steps=run.steps, seed=seed, replicates=replicates, overrides=overrides)
        return traj, {**model.params.as_dict(), **(overrides or {})}, obs_model

    map_outputs(out, task, run, model, obs, tracer.columns, tracer.row(), one_run)  # writes on rank 0 only
    if is_writer():
        report.finish(cfg, out, observables=model.observables, fit=(obs, pred, obs_model, model))
    return metrics
