r"""Posterior inference for ``task=calibrate``: ``task.method = map | vi | laplace | nuts | sbi``.

**The posterior.**  The learnable parameters :math:`\theta` (``model.learnable``, every element) have a
prior (``task.priors``) and the observations a likelihood: the simulator's prediction :math:`\hat y(\theta)`
(:class:`~lpm_graph.observation.ObservationModel`, the mean over ``task.replicates`` replicate columns; in
``model.mode=expected`` the mean field itself) is the mean of a Poisson or negative binomial count per observed
entry (``task.loss``; :func:`~lpm_graph.observation.log_likelihood`).  ``mse`` is no noise model: every
method but ``map`` without priors refuses it.

**Priors** (``task.priors``), elementwise per parameter, by name (dotted or nested keys)::

    task.priors: {transmission.beta_community: {dist: LogNormal, loc: -1.0, scale: 0.5}}

``dist`` is one of :data:`~lpm_graph.config.PRIORS` (torch.distributions names and arguments; each argument a
number or one value per element).  A learnable parameter bounded on both sides (``model.bounds``) without a
declared prior has the **Uniform prior over its bounds**; one bounded on one side or none must declare one
(``vi``, ``nuts``, ``sbi``).  A declared prior is **restricted to the bounds** (the learnable cannot leave them):
its density is used inside them, unnormalised.

**The unconstrained space.**  Inference runs on :math:`z`, the vector of every learnable element in the
ParameterSet's own unconstrained storage (:math:`\theta = lo + (hi - lo)\,\sigma(z)`, :math:`lo +
\operatorname{softplus}(z)`, or :math:`z`), with density :math:`p(\theta(z))\,|d\theta/dz|`.

**Methods.**

* ``map`` (default): today's optimiser (``task.optimizer`` on the loss), bit for bit; with ``task.priors`` it
  adds :math:`-\log p(\theta) / n` to the loss (:math:`n` the observed entries per series, on average), whose
  minimum is then the posterior mode in :math:`\theta` when every series has as many entries.  Its posterior
  files are **degenerate**: one draw, the fitted point, sd 0 (no Laplace approximation: the curvature of a
  normalised MSE is no posterior's).
* ``laplace``: the MAP in :math:`z` (:func:`map_point`,
  ``task.map_evaluations`` simulations from ``task.map_starts`` starts), then :class:`ConstrainedLaplace`: the
  log-likelihood replaced by its second-order expansion **in** :math:`\theta` there (``2 dim`` simulations of the
  gradient), the prior kept exact and restricted to the bounds; ``task.draws`` draws of it by importance sampling
  (``task.laplace_proposals`` draws, no simulations).  A normal in :math:`z` cannot have the tails of a posterior
  the data leave spread over a bounded parameter's range (the prior's, logistic in :math:`z`): its 90% intervals
  miss the range's ends.  ``task.importance_samples`` adds a Pareto-smoothed importance correction
  (:func:`pareto_smoothed`, its :math:`\hat k` reported), each of its draws one simulation.  No SVI:
  ``task.iterations``, ``task.optimizer``, ``task.particles`` are not used and ``task.resume`` is refused.  Not
  variational: the same expansion as ``vi``'s start, sampled exactly instead of fitted by SVI.
* ``vi``: Pyro SVI (``task.iterations`` steps of ``task.optimizer`` on the ELBO, ``task.particles`` particles,
  its gradients through the simulator, the learning rate halving every ``task.lr_half_life`` iterations;
  iteration ``i`` simulates with seed ``seed + 1 + i``) of the guide ``task.guide``:

  - ``truncated_normal`` (default; :mod:`lpm_graph.tasks.guides`): a correlated normal in the bounded
    :math:`\theta`, each element cut at its bounds given the ones before it, against the prior restricted to
    the bounds.  Started at the normal of the posterior's expansion at the MAP (:meth:`ConstrainedLaplace.normal`:
    ``task.map_evaluations`` simulations of L-BFGS from ``task.map_starts`` starts, then ``2 dim`` for the
    Hessian in :math:`\theta`), its parameters in units of that start's sd (one step of learning rate ``lr``
    moves each element by ``lr`` of its own width); ``task.map_evaluations=0``: at the config's values, a tenth
    of the prior's sd.  The family of a posterior that is the prior cut by a likelihood close to a normal: it
    keeps the mass near the bounds that a normal in :math:`z` cannot have.
  - ``normal``: Pyro's ``AutoMultivariateNormal`` (a full-covariance normal in :math:`z`), started at the MAP in
    :math:`z` with the Laplace covariance there (:func:`laplace_start`; ``task.map_evaluations=0``: at the
    config's values, scale 0.1); its 90% intervals miss the ends of a bounded range the data leave spread
    (``BENCHMARKS.md``).

  ``task.renyi_alpha`` (an order other than 1, ``task.particles >= 2``) replaces the ELBO by Pyro's
  ``RenyiELBO`` of that order (0: the importance-weighted bound), more mass-covering.  ``task.draws`` draws of
  the guide.  Checkpointed like ``map`` (guide parameters, optimiser and RNG state, loss and trace) and resumed
  bit for bit.
* ``nuts``: Pyro's NUTS with the simulator's gradients, ``task.chains`` chains one after the other (chain
  ``c`` from the start point, jittered by N(0, 0.5) in :math:`z` for ``c > 0``), ``task.warmup`` warm-up
  steps each, ``task.draws`` draws over all chains; every evaluation simulates with seed ``seed + 1`` (HMC
  needs one target: in stochastic mode it is the likelihood of one set of common random numbers).  Split
  R-hat and ESS per element (``posterior_summary.csv``) and the divergences (``fitted_params.json``).  For small
  populations and few parameters; not checkpointed: ``task.resume`` is refused.
* ``sbi``: the gradient-free reference, the ``sbi`` package's NPE (extra ``sbi``) trained on
  ``task.simulations`` draws of :math:`z` from the prior, each simulated with seed ``seed + 1 + i`` and
  noised by the observation model; the observed entries are its summary.  Not checkpointed.

**Outputs, every method, one schema.**  ``posterior.parquet`` (one float64 column per parameter element,
named as the columns of ``loss.csv``, one row per draw), ``posterior_summary.csv`` (``parameter, mean, sd, q05,
q50, q95, rhat, ess``; rhat and ess empty but for ``nuts``), and with ``task.plot`` ``posterior_pairs.png``
(histograms and pairwise scatter of the first 8 elements) and ``posterior_predictive.png``: the observed series
against the median and the 50% and 90% intervals of ``task.predictive_draws`` posterior draws, each run through
the simulator in stochastic mode with a fresh seed (``seed + 1 + task.iterations + d``, which no fit used)
and noised by the observation model (``poisson``, ``negbin``; ``mse``: the simulator's spread alone).
``fitted_params.json`` holds the posterior mean as ``fitted``.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from lpm_graph.config import LIKELIHOODS, METHODS, PRIORS, prior_entries
from lpm_graph.errors import ConfigError

__all__ = ["METHODS", "PRIORS", "Prior", "element_names", "infer", "write_posterior", "map_prior_term"]

SUMMARY_COLUMNS = ("parameter", "mean", "sd", "q05", "q50", "q95", "rhat", "ess")
_PAIRS_SHOWN = 8


def element_names(name: str, shape) -> list[str]:
    """Column names of a parameter's elements: ``name`` for a scalar, ``name[i]`` (``name[k][g]`` ...) otherwise."""
    names = [name]
    for size in shape:
        names = [f"{n}[{i}]" for n in names for i in range(size)]
    return names


def _require_pyro(method: str):
    try:
        import pyro  # noqa: F401
    except ImportError:
        raise ConfigError(f"task.method={method} needs Pyro (pyro-ppl), in the extra 'posterior': "
                          "pip install 'lpm-graph[posterior]'") from None
    return pyro


class Prior:
    """The prior of every learnable element, in :math:`\\theta` and in the unconstrained :math:`z`.

    Args:
        params: the model's :class:`~lpm_graph.core.params.ParameterSet`.
        priors: ``task.priors``.
        required: every learnable needs a prior (declared, or Uniform over two-sided bounds).
    """

    def __init__(self, params, priors: Mapping | None, required: bool):
        self.params = params
        self.names = list(params.learnable)
        declared = prior_entries(priors)
        unknown = sorted(set(declared) - set(self.names))
        if unknown:
            raise ConfigError(f"task.priors names {unknown}, which are not learnable; learnable: {self.names} "
                              "(model.learnable)")
        self.shapes, self.slices, self.dists, self.kinds = {}, {}, {}, {}
        self.columns: list[str] = []
        start = 0
        for name in self.names:
            shape = tuple(params.raw(name).shape)
            size = math.prod(shape)
            self.shapes[name], self.slices[name] = shape, slice(start, start + size)
            start += size
            self.columns += element_names(name, shape)
            bounds = params.bounds.get(name)
            lo, hi = params._bounds(name) if bounds is not None else (None, None)
            if name in declared:
                self.dists[name] = self._build(name, dict(declared[name]), shape)
                self.kinds[name] = declared[name]["dist"]
            elif lo is not None and hi is not None:
                self.dists[name] = torch.distributions.Uniform(torch.full(shape, lo, dtype=torch.float64),
                                                               torch.full(shape, hi, dtype=torch.float64),
                                                               validate_args=False)
                self.kinds[name] = "Uniform (bounds)"
            elif required:
                side = "one side" if bounds is not None else "neither side"
                raise ConfigError(f"{name} is bounded on {side} (model.bounds), so it has no default prior: declare "
                                  f"task.priors.{name}: {{dist: <name>, <arguments>}}; valid priors: "
                                  + "; ".join(f"{d}({', '.join(a)})" for d, a in PRIORS.items()))
        self.dim = start

    @staticmethod
    def _build(name: str, spec: dict, shape) -> torch.distributions.Distribution:
        dist = spec.pop("dist")
        cls = getattr(torch.distributions, dist)
        try:
            args = {k: torch.as_tensor(v, dtype=torch.float64).expand(shape).clone() for k, v in spec.items()}
            cls(**args, validate_args=True)
        except (ValueError, RuntimeError, TypeError) as e:
            raise ConfigError(f"task.priors.{name}: {dist}({', '.join(f'{k}={v}' for k, v in spec.items())}) is not "
                              f"a valid prior for a parameter of shape {list(shape)}: {e}") from None
        return cls(**args, validate_args=False)

    # -- theta ---------------------------------------------------------------
    def log_prior(self, values: Mapping[str, Tensor]) -> Tensor:
        """:math:`\\log p(\\theta)` (constrained values), over the parameters that have a prior."""
        total = torch.zeros((), dtype=torch.float64)
        for name, dist in self.dists.items():
            total = total + dist.log_prob(values[name].double().cpu()).sum()
        return total

    # -- z -------------------------------------------------------------------
    def start(self) -> Tensor:
        """The config's starting values in :math:`z` (the stored unconstrained tensors), float64 on the CPU."""
        return torch.cat([self.params.raw(n).detach().double().cpu().flatten() for n in self.names])

    def split(self, z: Tensor) -> dict[str, Tensor]:
        return {n: z[..., self.slices[n]].reshape(tuple(z.shape[:-1]) + self.shapes[n]) for n in self.names}

    def constrained(self, z: Tensor) -> dict[str, Tensor]:
        """:math:`\\theta(z)` per parameter (batch dimensions of ``z`` first)."""
        return {n: self.params._constrain(n, raw) for n, raw in self.split(z).items()}

    def theta(self, z: Tensor) -> Tensor:
        """:math:`\\theta(z)` as one ``[..., dim]`` tensor in the order of :attr:`columns`."""
        return torch.cat([v.reshape(*z.shape[:-1], -1) for v in self.constrained(z).values()], -1)

    def _log_jacobian(self, name: str, raw: Tensor) -> Tensor:
        if name not in self.params.bounds:
            return torch.zeros_like(raw)
        lo, hi = self.params._bounds(name)
        if hi is None:
            return torch.nn.functional.logsigmoid(raw)
        return math.log(hi - lo) + torch.nn.functional.logsigmoid(raw) + torch.nn.functional.logsigmoid(-raw)

    def log_jacobian(self, z: Tensor) -> Tensor:
        """:math:`\\log|d\\theta/dz|`, summed over elements: ``[...]`` for ``z`` ``[..., dim]``."""
        total = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for name, raw in self.split(z).items():
            total = total + self._log_jacobian(name, raw).reshape(*z.shape[:-1], -1).sum(-1)
        return total

    def log_density(self, z: Tensor) -> Tensor:
        """:math:`\\log p(\\theta(z)) + \\log|d\\theta/dz|`, summed over elements: ``[...]`` for ``z`` ``[..., dim]``."""
        total = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for name, raw in self.split(z).items():
            theta = self.params._constrain(name, raw)
            lp = self.dists[name].log_prob(theta) + self._log_jacobian(name, raw)
            total = total + lp.reshape(*z.shape[:-1], -1).sum(-1)
        return total

    def sample(self, n: int) -> Tensor:
        """``[n, dim]`` draws of :math:`z`: the prior restricted to the bounds (by rejection), unconstrained."""
        parts = []
        for name in self.names:
            dist = self.dists[name]
            lo, hi = self.params._bounds(name) if name in self.params.bounds else (-math.inf, None)
            hi = math.inf if hi is None else hi
            kept, tries = [], 0
            while sum(len(k) for k in kept) < n:
                draw = dist.sample((max(n, 64),))
                inside = ((draw > lo) & (draw < hi)).reshape(len(draw), -1).all(-1)
                kept.append(draw[inside])
                tries += 1
                if tries > 200:
                    raise ConfigError(f"task.priors.{name}: the prior puts almost no mass inside model.bounds.{name} "
                                      f"= {[lo, hi]}; move the prior or the bounds")
            theta = torch.cat(kept)[:n]
            raw = self.params._unconstrain(name, theta) if name in self.params.bounds else theta
            parts.append(raw.reshape(n, -1))
        return torch.cat(parts, -1)

    def distribution(self, pyro: bool, moments: tuple[Tensor, Tensor] | None = None):
        """The prior of :math:`z` as a ``torch.distributions.Distribution`` (a Pyro one with ``pyro``); ``moments``:
        its ``(mean, stddev)`` where a consumer needs them (no closed form: estimated from draws by the caller)."""
        base = torch.distributions.Distribution
        if pyro:
            import pyro.distributions as pdist

            base = pdist.TorchDistribution
        prior = self

        class UnconstrainedPrior(base):
            arg_constraints: dict = {}
            support = torch.distributions.constraints.real_vector

            def __init__(self):
                super().__init__(batch_shape=torch.Size(), event_shape=torch.Size([prior.dim]), validate_args=False)

            def sample(self, sample_shape=torch.Size()):
                shape = torch.Size(sample_shape)
                return prior.sample(max(1, math.prod(shape))).reshape(*shape, prior.dim)

            def log_prob(self, value):
                return prior.log_density(value.double()).to(value.dtype)

            @property
            def mean(self):  # without moments, the base class's "not defined" (what sbi checks for)
                return super().mean if moments is None else moments[0]

            @property
            def stddev(self):
                return super().stddev if moments is None else moments[1]

        return UnconstrainedPrior()


def map_prior_term(prior: Prior | None, model, obs) -> Tensor | float:
    """What ``map`` adds to its loss: :math:`-\\log p(\\theta) / n` (0.0 without declared priors)."""
    if prior is None or not prior.dists:
        return 0.0
    counts = [int((~torch.isnan(v)).sum()) for v in obs.values.values()]
    n = max(1.0, sum(counts) / len(counts))
    values = {name: model.params[name] for name in prior.dists}
    return -prior.log_prior(values).to(model.params[prior.names[0]].dtype) / n


# -- the simulator as the likelihood's mean --------------------------------------------------------------------
class _Simulator:
    def __init__(self, model, graph, run, obs, obs_model, prior: Prior, replicates: int, loss: str,
                 dispersion: float):
        self.model, self.graph, self.run, self.obs, self.obs_model = model, graph, run, obs, obs_model
        self.prior, self.replicates, self.loss, self.dispersion = prior, replicates, loss, dispersion
        self.calls = 0
        raw = model.params.raw(prior.names[0])
        self.device, self.dtype = raw.device, raw.dtype

    def predict(self, z: Tensor, seed: int, replicates: int | None = None, traj_only: bool = False):
        overrides = {n: v.to(device=self.device, dtype=self.dtype) for n, v in self.prior.constrained(z).items()}
        self.calls += 1
        traj = self.model(self.graph, steps=self.run.steps, seed=int(seed),
                          replicates=self.replicates if replicates is None else replicates, overrides=overrides)
        values = {**self.model.params.as_dict(), **overrides}
        if traj_only:
            return traj, values
        return self.obs_model.predict(traj, self.obs, values)

    def log_likelihood(self, z: Tensor, seed: int) -> Tensor:
        from lpm_graph.core.loop import flush_denormals
        from lpm_graph.observation import log_likelihood

        with flush_denormals():
            return log_likelihood(self.predict(z, seed), self.obs, self.loss, self.dispersion).double().cpu()


def _pyro_model(sim: _Simulator, prior_dist):
    import pyro

    def model(seed: int):
        z = pyro.sample("z", prior_dist)
        pyro.factor("observations", sim.log_likelihood(z, seed))

    return model


# -- vi --------------------------------------------------------------------------------------------------------
def _vi(sim, prior, task, run, cfg_key, out: Path, digest: str, bar):
    import pyro
    from hydra.utils import instantiate
    from pyro.infer import Trace_ELBO

    from lpm_graph.tasks import checkpoint as ckpt_io

    pyro.clear_param_store()  # AutoGuide parameters are also kept in Pyro's global store, by name
    if task.guide == "truncated_normal":
        model, guide, start_info, guide_theta = _truncated_normal_guide(sim, prior, task, run)
    else:
        model, guide, start_info, guide_theta = _normal_guide(sim, prior, task, run)
    optimizer = instantiate(task.optimizer, _convert_="all")(list(guide.parameters()))
    base_lr = [g["lr"] for g in optimizer.param_groups]  # before a checkpoint's (decayed) rates are loaded
    if task.renyi_alpha is None:
        elbo = Trace_ELBO(num_particles=task.particles)
    else:  # alpha < 1: a more mass-covering objective than the ELBO (alpha = 0: the importance-weighted bound)
        from pyro.infer import RenyiELBO

        elbo = RenyiELBO(alpha=task.renyi_alpha, num_particles=task.particles)
    history, trace, start = [], [], 0
    if task.resume:
        saved = ckpt_io.load_calibration(task.resume, cfg_key, digest, task.iterations)
        where = f"task.resume: checkpoint {str(task.resume)!r}"
        if saved.get("method") != "vi" or not isinstance(saved.get("guide"), dict):
            raise ConfigError(f"{where} was not written by task.method=vi; resume with the method that wrote it, "
                              "or rerun without task.resume")
        own = guide.state_dict()
        if set(saved["guide"]) != set(own) or any(saved["guide"][k].shape != v.shape for k, v in own.items()):
            raise ConfigError(f"{where} holds a guide for other parameters than {prior.columns}; rerun without "
                              "task.resume")
        guide.load_state_dict(saved["guide"])
        optimizer.load_state_dict(saved["optimizer"])
        history, trace, start = list(saved["history"]), [list(r) for r in saved["trace"]], int(saved["iteration"])
        torch.set_rng_state(saved["torch_rng"])

    def checkpoint(iteration: int) -> None:
        ckpt_io.write(out / "checkpoint.pt", {
            "iteration": int(iteration), "method": "vi",
            "guide": {k: v.detach().cpu().clone() for k, v in guide.state_dict().items()},
            "optimizer": optimizer.state_dict(), "history": list(history), "trace": [list(r) for r in trace],
            "torch_rng": torch.get_rng_state(), "config": json.dumps(cfg_key, sort_keys=True),
            "data_digest": digest})

    for it in bar(range(start, task.iterations)):
        for group, lr in zip(optimizer.param_groups, base_lr):  # of the iteration alone: resumes exactly
            group["lr"] = lr * 0.5 ** (it / task.lr_half_life) if task.lr_half_life else lr
        optimizer.zero_grad(set_to_none=True)
        if task.renyi_alpha is None:
            loss = elbo.differentiable_loss(model, guide, run.seed + 1 + it)
            if torch.isfinite(loss):
                loss.backward()
            loss = float(loss.detach())
        else:
            loss = float(elbo.loss_and_grads(model, guide, run.seed + 1 + it))  # its gradients, backward done
        if not math.isfinite(loss):
            raise ConfigError(f"task.method=vi: the ELBO became {loss} at iteration {it}; lower the learning "
                              "rate (task.optimizer.lr) or narrow the priors")
        optimizer.step()
        history.append(loss)
        with torch.no_grad():
            trace.append([float(x) for x in guide_theta().tolist()])
        if task.checkpoint_every and (it + 1) % task.checkpoint_every == 0:
            checkpoint(it + 1)
    checkpoint(task.iterations)
    with torch.no_grad():
        draws = guide.get_posterior().sample((task.draws,)).double()
        if task.guide == "truncated_normal":  # draws of theta: to the prior's z, as every method returns
            draws = _unconstrained(prior, draws)
    return draws, {"iterations": task.iterations, "elbo_loss": history[-1] if history else None,
                   "guide": task.guide, **start_info}, \
        (history, trace)


def _normal_guide(sim, prior, task, run):
    r"""``task.guide=normal``: Pyro's ``AutoMultivariateNormal`` in :math:`z`, at the MAP in :math:`z` with the
    Laplace covariance there (:func:`laplace_start`), or at the config's values with scale 0.1.  Returns the model,
    the guide, what its start did, and the guide's location in :math:`\theta` (the trace's row)."""
    from pyro.infer.autoguide import AutoMultivariateNormal, init_to_value

    model = _pyro_model(sim, prior.distribution(pyro=True))
    start_info: dict = {}
    loc, cov = prior.start(), None
    if task.map_evaluations and not task.resume:  # a resumed guide replaces whatever start it had
        loc, cov, start_info = laplace_start(sim, prior, loc, run.seed + 1, task.map_evaluations,
                                             task.map_starts)
    guide = AutoMultivariateNormal(model, init_loc_fn=init_to_value(values={"z": loc}))
    torch.manual_seed(run.seed)
    guide(run.seed + 1)  # builds the guide's parameters (one simulation at the start point)
    if cov is not None:
        from pyro.nn import PyroParam

        # the guide's scale_tril is diag(scale) @ U, U unit lower triangular: L = chol(cov) split so
        tril = torch.linalg.cholesky(cov).to(guide.loc.dtype)
        scale = tril.diagonal()
        guide.scale = PyroParam(scale.clone(), guide.scale_constraint)
        guide.scale_tril = PyroParam(tril / scale[:, None], guide.scale_tril_constraint)

    def guide_theta():
        return prior.theta(guide.loc.detach().double())

    return model, guide, start_info, guide_theta


def _truncated_normal_guide(sim, prior, task, run):
    """``task.guide=truncated_normal`` (:class:`~lpm_graph.tasks.guides.TruncatedNormalGuide`, site ``theta``):
    started at :meth:`ConstrainedLaplace.normal` of the expansion at the MAP (``task.map_evaluations``
    simulations from ``task.map_starts`` starts, then ``2 dim``), its mean clamped into the bounds, its sd the
    guide's unit, then fitted to the expansion itself (:func:`fit_to_expansion`, no simulation); with
    ``task.map_evaluations=0`` at the config's values, the unit the prior's sd and the scale a tenth of it.  The
    model: the prior restricted to the bounds (:class:`~lpm_graph.tasks.guides.BoundedPrior`) and the simulated
    likelihood."""
    import pyro

    from lpm_graph.tasks.guides import BoundedPrior, TruncatedNormalGuide

    lo, hi = _theta_bounds(prior)
    bounded = BoundedPrior(prior, lo, hi)

    def model(seed: int):
        theta = pyro.sample("theta", bounded)
        pyro.factor("observations", sim.log_likelihood(_unconstrained(prior, theta), seed))

    start_info: dict = {}
    approx = None
    if task.map_evaluations and not task.resume:  # a resumed guide replaces whatever start it had
        z_map, best, calls = map_point(sim, prior, prior.start(), run.seed + 1, task.map_evaluations,
                                       task.map_starts)
        approx, laplace_info = constrained_laplace(sim, prior, z_map, run.seed + 1)
        center, cov = approx.normal()
        # the expansion's maximum is clamped into the bounds: a direction the data leave flat keeps only the
        # gradient's tilt, which can put the maximum far outside (the guide's draws would pile at the corners)
        center = torch.maximum(torch.minimum(center, hi), lo)
        unit = cov.diagonal().sqrt()
        tril = torch.linalg.cholesky(cov) / unit[:, None]
        start_info = {"map_simulations": calls, "map_log_posterior": -best, **laplace_info}
    else:
        center = prior.theta(prior.start()).detach()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(run.seed)
            unit = prior.theta(prior.sample(4096)).std(0).clamp_min(1e-12)
        tril = 0.1 * torch.eye(prior.dim, dtype=torch.float64)
    guide = TruncatedNormalGuide(center, unit, tril, lo, hi)
    if approx is not None:
        start_info["expansion_elbo"] = fit_to_expansion(guide, approx, bounded, seed=run.seed)
    torch.manual_seed(run.seed)

    def guide_theta():
        return guide.center + guide.unit * guide.loc.detach()

    return model, guide, start_info, guide_theta


def fit_to_expansion(guide, approx: "ConstrainedLaplace", bounded, steps: int = 300, particles: int = 256,
                     seed: int = 0) -> float:
    r"""Fit ``guide`` to :class:`ConstrainedLaplace`'s density in :math:`\theta` (the prior restricted to the
    bounds times the log-likelihood's quadratic): the reparameterised ELBO over ``particles`` draws a step,
    ``steps`` steps of Adam (learning rate 0.05 in the guide's units, halving every ``steps / 3``), no simulation.
    The expansion's normal is not the best guide for the expansion once the bounds cut it (and its mean was
    clamped into them): this moves the start to the member of the guide's family nearest to it, which the SVI on
    the simulated likelihood then refines.  Returns the last step's ELBO estimate."""
    optimizer = torch.optim.Adam(guide.parameters(), lr=0.05)
    elbo = torch.zeros(())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for step in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = 0.05 * 0.5 ** (3 * step / steps)
            q = guide.get_posterior()
            theta = q.rsample((particles,))
            elbo = (bounded.log_prob(theta) + approx.log_likelihood_theta(theta) - q.log_prob(theta)).mean()
            optimizer.zero_grad(set_to_none=True)
            (-elbo).backward()
            optimizer.step()
    return float(elbo.detach())


def _laplace(sim, prior, task, run):
    """``task.method=laplace``: the MAP in :math:`z` (``task.map_evaluations`` simulations from
    ``task.map_starts`` starts; 0: the config's values), :class:`ConstrainedLaplace` there (``2 dim``; then
    ``task.laplace_refinements`` times again at the approximation's mode in :math:`z`, ``2 dim`` each), its draws by
    importance sampling (``task.laplace_proposals``, no simulation), and with ``task.importance_samples`` a
    Pareto-smoothed importance correction: that many draws of the approximation, each simulated, weighted by the
    simulated likelihood over its quadratic, smoothed (:func:`pareto_smoothed`) and resampled into ``task.draws``.
    Its loss history is the MAP fit's, one row per simulation."""
    if task.resume:
        raise ConfigError("task.method=laplace does not resume: its MAP fit and Hessian are not iterations and are "
                          "not checkpointed; rerun without task.resume (or resume a task.method=vi run)")
    seed = run.seed + 1
    record: list = []
    info: dict = {"iterations": 0, "approximation": "constrained_laplace"}
    z_map = prior.start()
    if task.map_evaluations:
        z_map, best, calls = map_point(sim, prior, z_map, seed, task.map_evaluations, task.map_starts, record)
        info.update(map_simulations=calls, map_log_posterior=-best)
    approx, laplace_info = constrained_laplace(sim, prior, z_map, seed)
    for _ in range(task.laplace_refinements):  # re-expanded at the approximation's own mode in z
        approx, again = constrained_laplace(sim, prior, approx.proposal().loc, seed)
        again["laplace_simulations"] += laplace_info["laplace_simulations"]
        laplace_info = again
    info.update(laplace_info, laplace_refinements=task.laplace_refinements)
    draws, sampler = approx.sample(task.draws, task.laplace_proposals, run.seed)
    info.update(sampler)
    if task.importance_samples:
        z, _ = approx.sample(task.importance_samples, task.laplace_proposals, run.seed + 1)
        with torch.no_grad():
            log_w = torch.stack([sim.log_likelihood(zi, seed) for zi in z]) - approx.log_likelihood(z)
        smoothed, khat = pareto_smoothed(log_w)
        w = torch.softmax(smoothed, 0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(run.seed + 2)
            draws = z[torch.multinomial(w, task.draws, replacement=True)]
        info.update(importance_simulations=task.importance_samples, psis_khat=khat,
                    importance_ess=float(1.0 / (w ** 2).sum()))
    history = [v for v, _ in record]
    trace = [t for _, t in record]
    return draws, info, (history, trace)


def map_point(sim, prior, z0: Tensor, seed: int, evaluations: int, starts: int = 1,
              record: list | None = None) -> tuple[Tensor, float, int]:
    """The MAP in :math:`z` by L-BFGS (see :func:`laplace_start`): ``(z_map, -log posterior there, simulations)``;
    ``record`` receives ``(-log posterior, theta)`` of every evaluation."""
    calls0 = sim.calls

    def objective(point: Tensor) -> Tensor:
        return -(sim.log_likelihood(point, seed) + prior.log_density(point.double()))

    # the reporting fraction trades against transmission (few cases: a small epidemic well reported, or a large
    # one poorly reported), so the log posterior can have several modes: L-BFGS from the start and from draws
    # of the prior, the best point of all kept
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        extra = prior.sample(starts - 1) if starts > 1 else z0.new_zeros((0, prior.dim))
    best = {"loss": math.inf, "z": z0.detach().double().clone()}
    per_start = max(1, evaluations // starts)
    for point in [z0.detach().double(), *extra.double()]:
        z = point.clone().requires_grad_(True)
        lbfgs = torch.optim.LBFGS([z], lr=1.0, max_iter=per_start, max_eval=per_start, tolerance_grad=1e-6,
                                  tolerance_change=1e-9, history_size=20, line_search_fn="strong_wolfe")

        def closure(z=z, lbfgs=lbfgs):  # called within this iteration, by lbfgs.step
            lbfgs.zero_grad()
            loss = objective(z)
            value = float(loss.detach())
            if record is not None:
                record.append((value, [float(x) for x in prior.theta(z.detach()).tolist()]))
            if math.isfinite(value) and value < best["loss"]:
                best["loss"], best["z"] = value, z.detach().clone()
            loss.backward()
            return loss

        lbfgs.step(closure)
    if not math.isfinite(best["loss"]):
        raise ConfigError("task.method=vi|laplace: the MAP fit that starts the approximation found no finite log "
                          "posterior from the start point (model.params); move the start, or set task.map_evaluations=0")
    return best["z"], best["loss"], sim.calls - calls0


def laplace_start(sim, prior, z0: Tensor, seed: int, evaluations: int,
                  starts: int = 1) -> tuple[Tensor, Tensor, dict]:
    """The guide's start: the MAP in :math:`z` and the Laplace covariance there.

    L-BFGS (strong Wolfe line search) on :math:`-\\log p(y \\mid \\theta(z)) - \\log p(z)` from ``z0`` and from
    ``starts - 1`` draws of the prior, about ``evaluations // starts`` simulations each (L-BFGS stops at the
    first iteration past them), with seed ``seed`` (one objective: in stochastic mode, one set of common random
    numbers), the best point of all kept; then the Hessian
    there by central differences of the simulator's gradient (no second derivatives through checkpointed steps or
    custom autograd functions, which Pyro's ``AutoLaplaceApproximation`` needs; ``2 dim`` simulations, step
    ``1e-3`` in :math:`z`, symmetrised), inverted with its eigenvalues floored at ``1e-6`` of the largest (a
    direction the data and the prior leave flat keeps a wide, finite variance).  Every evaluation is a simulation,
    counted in ``sim.calls``.  Returns ``(z_map, covariance, info)``.
    """
    z_map, best_loss, map_calls = map_point(sim, prior, z0, seed, evaluations, starts)

    def gradient(point: Tensor) -> Tensor:
        point = point.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(-(sim.log_likelihood(point, seed) + prior.log_density(point)), point)
        return g.detach()

    h, dim = 1e-3, prior.dim
    rows = []
    for j in range(dim):
        step = torch.zeros(dim, dtype=torch.float64)
        step[j] = h
        rows.append((gradient(z_map + step) - gradient(z_map - step)) / (2 * h))
    hess = torch.stack(rows)
    hess = 0.5 * (hess + hess.T)
    evals, evecs = torch.linalg.eigh(hess)
    floor = 1e-6 * float(evals.abs().max().clamp_min(1e-12))
    clipped = evals.clamp_min(floor)
    cov = evecs @ torch.diag(1.0 / clipped) @ evecs.T
    cov = 0.5 * (cov + cov.T)
    info = {"map_simulations": map_calls, "laplace_simulations": 2 * dim, "map_log_posterior": -best_loss,
            "laplace_eigenvalues_floored": int((evals < floor).sum())}
    return z_map, cov, info


def _theta_bounds(prior) -> tuple[Tensor, Tensor]:
    """Per element of :math:`\\theta`: its lower and upper bound (``-inf`` / ``inf`` where there is none)."""
    lo, hi = [], []
    for name in prior.names:
        size = math.prod(prior.shapes[name])
        low, high = prior.params._bounds(name) if name in prior.params.bounds else (-math.inf, None)
        lo += [low] * size
        hi += [math.inf if high is None else high] * size
    return torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64)


def _unconstrained(prior, theta: Tensor) -> Tensor:
    """:math:`z(\\theta)`, differentiable, for ``theta`` strictly inside the bounds (the inverse of
    :meth:`Prior.theta`)."""
    lo, hi = _theta_bounds(prior)
    two, one = torch.isfinite(lo) & torch.isfinite(hi), torch.isfinite(lo) & ~torch.isfinite(hi)
    span = torch.where(two, hi - lo, torch.ones_like(lo))
    base = torch.where(torch.isfinite(lo), lo, torch.zeros_like(lo))
    logistic = torch.logit(((theta - base) / span).clamp(1e-12, 1 - 1e-12))
    x = (theta - base).clamp_min(1e-12)
    softplus = x + torch.log(-torch.expm1(-x))
    return torch.where(two, logistic, torch.where(one, softplus, theta))


class ConstrainedLaplace:
    r"""The posterior with the log-likelihood replaced by its second-order expansion **in the constrained space**
    and the prior kept exact:

    .. math::
        \tilde p(\theta) \propto p(\theta)\,\mathbb 1[\theta \in \text{bounds}]\,
        \exp\big(g^\top \delta + \tfrac12 \delta^\top H \delta\big), \qquad \delta = \theta - \theta_0,

    :math:`g` and :math:`H` the gradient and Hessian of :math:`\log p(y \mid \theta)` at :math:`\theta_0`.  With a
    Uniform prior it is a normal truncated to the bounds (:math:`H` need not be negative definite: the bounds keep
    it proper).  A normal in :math:`z` (the Laplace approximation of the unconstrained posterior) is thinner in the
    tails than a posterior the data leave spread over a bounded parameter's range: there the posterior in :math:`z`
    has the prior's logistic tails, which this keeps exactly.

    Sampling costs no simulation: self-normalised importance sampling from a defensive mixture in :math:`z`
    (half a multivariate Student-t with 4 degrees of freedom at the mode of :math:`\tilde p` in :math:`z`, scaled
    by the inverse of its Hessian there, half the prior, whose share bounds the weights by twice the largest
    likelihood ratio), resampled.

    Shapes:
        theta0, g: ``[dim]``; hess: ``[dim, dim]``; ``z`` arguments ``[..., dim]``.
    """

    def __init__(self, prior, theta0: Tensor, g: Tensor, hess: Tensor):
        self.prior, self.theta0, self.g, self.hess = prior, theta0.double(), g.double(), hess.double()

    def log_likelihood(self, z: Tensor) -> Tensor:
        """The quadratic :math:`g^\\top \\delta + \\frac12 \\delta^\\top H \\delta` (up to the constant
        :math:`\\log p(y \\mid \\theta_0)`)."""
        return self.log_likelihood_theta(self.prior.theta(z))

    def log_likelihood_theta(self, theta: Tensor) -> Tensor:
        """The quadratic at ``theta`` itself (``[..., dim]`` in, ``[...]`` out)."""
        d = theta - self.theta0
        return d @ self.g + 0.5 * ((d @ self.hess) * d).sum(-1)

    def log_density(self, z: Tensor) -> Tensor:
        """:math:`\\log \\tilde p(z)` up to a constant (the prior in :math:`z`, its Jacobian included)."""
        return self.prior.log_density(z) + self.log_likelihood(z)

    def proposal(self):
        """The importance sampler's t component: Pyro's ``MultivariateStudentT`` (df 4) at the mode in :math:`z`."""
        import pyro.distributions as pdist

        z = _unconstrained(self.prior, self.theta0).detach().clone().requires_grad_(True)
        lbfgs = torch.optim.LBFGS([z], max_iter=200, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

        def closure():
            lbfgs.zero_grad()
            loss = -self.log_density(z)
            loss.backward()
            return loss

        lbfgs.step(closure)
        mode = z.detach()
        hess = torch.autograd.functional.hessian(lambda x: -self.log_density(x), mode)
        if not (bool(torch.isfinite(mode).all()) and bool(torch.isfinite(hess).all())):
            # the search left for a bound's saturated end: the t sits at theta0 with the logistic's variance (the
            # prior's half of the mixture keeps the weights bounded whatever this component is)
            mode = _unconstrained(self.prior, self.theta0).detach()
            hess = torch.eye(len(mode), dtype=torch.float64) * 3 / math.pi ** 2
        evals, evecs = torch.linalg.eigh(0.5 * (hess + hess.T))
        cov = evecs @ torch.diag(1.0 / evals.clamp_min(1e-3)) @ evecs.T  # a flat direction: sd <= 30 in z
        tril = torch.linalg.cholesky(0.5 * (cov + cov.T))
        return pdist.MultivariateStudentT(torch.tensor(4.0, dtype=torch.float64), mode, tril)

    def normal(self) -> tuple[Tensor, Tensor]:
        r"""The normal in :math:`\theta` of the posterior's expansion at :math:`\theta_0`: the quadratic plus the
        log prior's own gradient and Hessian there (no simulation; zero for a Uniform prior), its precision's
        eigenvalues floored at ``1e-6`` of the largest and at one over the square of the widest finite range (a
        flat direction spans the bounds).  Returns its mean (the expansion's maximum, which may lie outside the
        bounds where the data push against one) and covariance."""
        from lpm_graph.tasks.guides import BoundedPrior

        lo, hi = _theta_bounds(self.prior)
        bounded = BoundedPrior(self.prior, lo, hi)
        g, hess = self.g.clone(), self.hess.clone()
        if self.prior.dists and bool(((self.theta0 > lo) & (self.theta0 < hi)).all()):
            g = g + torch.autograd.functional.jacobian(bounded.log_prob, self.theta0)
            hess = hess + torch.autograd.functional.hessian(bounded.log_prob, self.theta0)
        evals, evecs = torch.linalg.eigh(-0.5 * (hess + hess.T))
        span = (hi - lo)[torch.isfinite(hi - lo)]
        floor = max(1e-6 * float(evals.max().clamp_min(1e-12)), 1.0 / float(span.max()) ** 2 if len(span) else 0.0)
        precision = evals.clamp_min(floor)
        mean = self.theta0 + evecs @ ((evecs.T @ g) / precision)
        cov = evecs @ torch.diag(1.0 / precision) @ evecs.T
        return mean, 0.5 * (cov + cov.T)

    def proposal_theta(self, mode_z: Tensor):
        r"""The second t component, in :math:`\theta`: at :meth:`normal`'s mean where it lies inside the bounds
        (else at ``theta(mode_z)``), scaled by its covariance."""
        import pyro.distributions as pdist

        lo, hi = _theta_bounds(self.prior)
        center, cov = self.normal()
        if not bool(((center > lo) & (center < hi)).all()):
            center = self.prior.theta(mode_z)
        tril = torch.linalg.cholesky(cov)
        return pdist.MultivariateStudentT(torch.tensor(4.0, dtype=torch.float64), center, tril)

    def sample(self, n: int, proposals: int, seed: int) -> tuple[Tensor, dict]:
        r"""``[n, dim]`` draws of :math:`z` (``proposals`` importance draws, resampled) and the sampler's effective
        sample size.  The mixture is a third each of the t in :math:`z` (:meth:`proposal`: the posterior the data
        leave spread, logistic in :math:`z`), the t in :math:`\theta` (:meth:`proposal_theta`: a narrow posterior,
        normal in :math:`\theta` and curved in :math:`z`; its draws outside the bounds have no density and count
        as weight 0) and the prior."""
        t_z = self.proposal()
        t_theta = self.proposal_theta(t_z.loc)
        lo, hi = _theta_bounds(self.prior)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            third = proposals // 3
            theta = t_theta.sample((third,))
            inside = ((theta > lo) & (theta < hi)).all(-1)
            z = torch.cat([t_z.sample((third,)), _unconstrained(self.prior, theta[inside]),
                           self.prior.sample(proposals - 2 * third)])
            with torch.no_grad():
                log_q = torch.logsumexp(torch.stack([
                    t_z.log_prob(z), t_theta.log_prob(self.prior.theta(z)) + self.prior.log_jacobian(z),
                    self.prior.log_density(z)]), 0) - math.log(3.0)
                w = torch.softmax(self.log_density(z) - log_q, 0)
            pick = torch.multinomial(w, n, replacement=True)
        # the dropped draws of the theta component had weight 0: they count in the effective sample size's total
        return z[pick], {"surrogate_ess": float(1.0 / (w ** 2).sum()), "surrogate_proposals": proposals,
                         "surrogate_outside_bounds": int((~inside).sum())}


def pareto_smoothed(log_weights: Tensor) -> tuple[Tensor, float]:
    """Pareto-smoothed importance weights (Vehtari, Simpson, Gelman, Yao and Gabry, 2024): the largest
    ``M = min(S / 5, 3 sqrt(S))`` of ``S`` weights replaced by the quantiles ``(i - 1/2) / M`` of the generalised
    Pareto distribution fitted to them above the next one (Pyro's ``fit_generalized_pareto``, the fit its
    ``psis_diagnostic`` makes), capped at the largest raw weight.  Returns the smoothed log weights and the fitted
    shape :math:`\\hat k` (below 0.7: the estimate is reliable; above: the proposal misses the target's tails).
    """
    from pyro.ops.stats import fit_generalized_pareto

    lw = log_weights.double()
    count = len(lw)
    m = int(min(0.2 * count, 3 * math.sqrt(count)))
    if m < 5:
        return lw.clone(), math.nan
    order = torch.argsort(lw)
    top = lw.max()
    tail, cut = (lw[order[-m:]] - top).exp(), float((lw[order[-m - 1]] - top).exp())
    k, sigma = (float(v) for v in fit_generalized_pareto(tail - cut))
    p = (torch.arange(1, m + 1, dtype=torch.float64) - 0.5) / m
    excess = -sigma * torch.log1p(-p) if abs(k) < 1e-8 else sigma / k * ((1 - p) ** -k - 1)
    smoothed = lw.clone()
    smoothed[order[-m:]] = torch.log((cut + excess).clamp(max=1.0).clamp_min(1e-300)) + top
    return smoothed, k


def constrained_laplace(sim, prior, z_point: Tensor, seed: int, step: float = 1e-3) -> tuple[ConstrainedLaplace, dict]:
    """:class:`ConstrainedLaplace` at :math:`\\theta_0 = \\theta(z_{point})`: the Hessian of the log-likelihood in
    :math:`\\theta` by central differences of the simulator's gradient in :math:`\\theta` (``2 dim`` simulations
    with seed ``seed``, steps ``step`` times each bounded element's range, at most half its distance to a bound),
    symmetrised, its positive eigenvalues set to 0; the gradient at :math:`\\theta_0` the mean of the pairs'
    midpoints (second-order accurate: no simulation of its own)."""
    theta0 = prior.theta(z_point.detach().double()).detach()
    lo, hi = _theta_bounds(prior)
    scale = torch.where(torch.isfinite(hi - lo), hi - lo, theta0.abs().clamp_min(1.0))
    room = torch.minimum(theta0 - lo, hi - theta0)

    def gradient(theta: Tensor) -> Tensor:
        theta = theta.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(sim.log_likelihood(_unconstrained(prior, theta), seed), theta)
        return g.detach()

    rows, mids = [], []
    for j in range(prior.dim):
        h = float(torch.minimum(step * scale[j], 0.5 * room[j]))
        e = torch.zeros(prior.dim, dtype=torch.float64)
        e[j] = h
        up, down = gradient(theta0 + e), gradient(theta0 - e)
        rows.append((up - down) / (2 * h))
        mids.append(0.5 * (up + down))
    hess = torch.stack(rows)
    evals, evecs = torch.linalg.eigh(0.5 * (hess + hess.T))
    # a direction of positive curvature (theta0 short of a maximum, or a saddle) would make the expansion grow to
    # the bounds' corners: such a direction is taken as flat, the prior (and the gradient's tilt) alone there
    hess = evecs @ torch.diag(evals.clamp_max(0.0)) @ evecs.T
    info = {"laplace_simulations": 2 * prior.dim, "laplace_space": "theta",
            "laplace_positive_curvatures": int((evals > 0).sum())}
    return ConstrainedLaplace(prior, theta0, torch.stack(mids).mean(0), 0.5 * (hess + hess.T)), info


# -- nuts ------------------------------------------------------------------------------------------------------
def _nuts(sim, prior, task, run):
    import pyro  # noqa: F401
    from pyro.infer import MCMC, NUTS
    from pyro.infer.autoguide import init_to_value
    from pyro.ops.stats import effective_sample_size, split_gelman_rubin

    if task.resume:
        raise ConfigError("task.method=nuts does not resume: its chains and their adaptation are not checkpointed. "
                          "Rerun without task.resume (a shorter run: lower task.warmup or task.draws)")
    model = _pyro_model(sim, prior.distribution(pyro=True))
    per_chain = -(-task.draws // task.chains)
    chains, divergences = [], []
    for c in range(task.chains):
        torch.manual_seed(run.seed + c)
        z0 = prior.start()
        if c:
            z0 = z0 + 0.5 * torch.randn(z0.shape, dtype=z0.dtype)
        kernel = NUTS(model, init_strategy=init_to_value(values={"z": z0}), max_tree_depth=task.max_tree_depth,
                      jit_compile=False)
        mcmc = MCMC(kernel, num_samples=per_chain, warmup_steps=task.warmup, disable_progbar=not run.progress)
        mcmc.run(run.seed + 1)
        chains.append(mcmc.get_samples()["z"].detach().double())
        divergences.append(len(mcmc.diagnostics().get("divergences", {}).get("chain 0", [])))
    z = torch.stack(chains)  # [C, n, dim]
    theta = prior.theta(z)
    rhat = split_gelman_rubin(theta, chain_dim=0, sample_dim=1)
    ess = effective_sample_size(theta, chain_dim=0, sample_dim=1)
    draws = z.reshape(-1, prior.dim)[:task.draws]
    info = {"chains": task.chains, "warmup": task.warmup, "draws_per_chain": per_chain,
            "divergences": sum(divergences), "divergences_per_chain": divergences,
            "rhat": dict(zip(prior.columns, map(float, rhat))), "ess": dict(zip(prior.columns, map(float, ess)))}
    return draws, info, {"rhat": rhat.tolist(), "ess": ess.tolist()}


# -- sbi -------------------------------------------------------------------------------------------------------
class _MetricsInMemory:
    """sbi's training tracker (its ``Tracker`` protocol) keeping the logged metrics in memory: its default writes
    TensorBoard files into ``./sbi-logs`` of the working directory, outside the run directory."""

    log_dir = None

    def __init__(self):
        self.metrics: dict[str, list[float]] = {}
        self.params: dict = {}

    def log_metric(self, name, value, step=None):
        self.metrics.setdefault(name, []).append(float(value))

    def log_metrics(self, metrics, step=None):
        for name, value in metrics.items():
            self.log_metric(name, value, step)

    def log_params(self, params):
        self.params = dict(params)

    def add_figure(self, name, figure, step=None):
        """Not kept: the run writes its own figures."""

    def flush(self):
        """Nothing buffered."""


def _sbi(sim, prior, task, run):
    try:
        import sbi.inference as sbi_inference
    except ImportError:
        raise ConfigError("task.method=sbi needs the sbi package, in the extra 'sbi': pip install 'lpm-graph[sbi]' "
                          "(or choose task.method=vi or nuts, which need no extra beyond 'posterior')") from None
    from lpm_graph.observation import sample_observations

    if task.resume:
        raise ConfigError("task.method=sbi does not resume: its simulations and network are not checkpointed; rerun "
                          "without task.resume")
    npe = getattr(sbi_inference, "NPE", None) or getattr(sbi_inference, "SNPE")
    torch.manual_seed(run.seed)
    z = prior.distribution(pyro=False).sample((task.simulations,)).double()
    # sbi standardises z by the prior's mean and sd; ours (a prior restricted to the bounds, in z) has no closed
    # form, so they are those of the training draws (what sbi would estimate from samples, with a warning)
    dist = prior.distribution(pyro=False, moments=(z.mean(0).float(), z.std(0).clamp_min(1e-6).float()))
    gen = torch.Generator().manual_seed(run.seed)

    def summary(values: Mapping[str, Tensor]) -> Tensor:
        return torch.cat([values[n][~torch.isnan(sim.obs.values[n])].double().cpu() for n in sim.obs_model.series])

    xs = []
    with torch.no_grad():
        for i in range(task.simulations):
            pred = sim.predict(z[i], run.seed + 1 + i)
            xs.append(summary(sample_observations(pred, sim.loss, sim.dispersion, gen)))
    x = torch.stack(xs).float()
    x_obs = summary(sim.obs.values).float()
    # an observed entry equal in every simulation (a day before the first reported case can be, with a reporting
    # delay) carries no information and cannot be standardised: it is left out of the summary
    varying = (x != x[0]).any(0)
    if not bool(varying.any()):
        raise ConfigError(f"task.method=sbi: the {task.simulations} simulations from the prior gave the same "
                          "observations in every entry; nothing to learn from (raise task.simulations, or check the "
                          "observation model and the priors)")
    x, x_obs = x[:, varying], x_obs[varying]
    # a masked autoregressive flow in θ of two or more dimensions; in one, sbi's flows are Gaussians only, and a
    # mixture density network is the estimator that is not
    estimator = "maf" if prior.dim > 1 else "mdn"
    inference = npe(prior=dist, density_estimator=estimator, show_progress_bars=run.progress,
                    tracker=_MetricsInMemory())
    with contextlib.redirect_stdout(sys.stderr if run.progress else io.StringIO()):  # its convergence line
        inference.append_simulations(z.float(), x).train(show_train_summary=False)
    posterior = inference.build_posterior()
    draws = posterior.sample((task.draws,), x=x_obs, show_progress_bars=False).double()
    return draws, {"simulations_trained_on": task.simulations, "density_estimator": estimator,
                   "summary_entries": int(varying.sum()),
                   "epochs": int(inference.summary["epochs_trained"][-1])}, None


# -- outputs ---------------------------------------------------------------------------------------------------
def write_posterior(out: Path, columns: list[str], theta: Tensor, *, rhat=None, ess=None) -> list[dict]:
    """``posterior.parquet`` and ``posterior_summary.csv`` from ``theta`` ``[draws, columns]``; the summary rows."""
    import pandas as pd

    from lpm_graph.tasks.simulate import atomic_write

    theta = theta.detach().double().cpu()
    frame = pd.DataFrame(theta.numpy(), columns=columns)
    q = torch.quantile(theta, torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64), dim=0)
    sd = theta.std(0, unbiased=True) if len(theta) > 1 else torch.zeros(theta.shape[1], dtype=torch.float64)
    rows = [{"parameter": c, "mean": float(theta[:, j].mean()), "sd": float(sd[j]), "q05": float(q[0, j]),
             "q50": float(q[1, j]), "q95": float(q[2, j]),
             "rhat": float(rhat[j]) if rhat is not None else float("nan"),
             "ess": float(ess[j]) if ess is not None else float("nan")} for j, c in enumerate(columns)]
    atomic_write(out / "posterior.parquet", lambda p: frame.to_parquet(p, index=False))
    summary = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    atomic_write(out / "posterior_summary.csv", lambda p: summary.to_csv(p, index=False))
    return rows


def _plot_pairs(columns, theta: Tensor, method: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    k = min(len(columns), _PAIRS_SHOWN)
    x = theta[:, :k].double().cpu().numpy()
    fig, axes = plt.subplots(k, k, figsize=(2.2 * k + 1, 2.2 * k + 1), squeeze=False)
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
            elif i == j:
                ax.hist(x[:, i], bins=min(40, max(1, len(x) // 10)), color="tab:blue", alpha=0.8)
                ax.set_yticks([])
            else:
                ax.plot(x[:, j], x[:, i], ".", ms=2, alpha=0.4, color="tab:blue")
            if i == k - 1:
                ax.set_xlabel(columns[j], fontsize=7)
            if j == 0 and i > 0:
                ax.set_ylabel(columns[i], fontsize=7)
            ax.tick_params(labelsize=6)
    shown = f" (first {k} of {len(columns)})" if k < len(columns) else ""
    fig.suptitle(f"posterior ({method}): {len(x)} draws{shown}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_predictive(obs, predictive: dict[str, Tensor], draws: int, note: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    n = len(predictive)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows + 0.6), squeeze=False)
    steps = obs.steps.numpy()
    qs = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.float64)
    for ax, (name, y) in zip(axes.flat, predictive.items()):
        q = torch.quantile(y.double(), qs, dim=0).numpy()
        ax.fill_between(steps, q[0], q[4], color="tab:red", alpha=0.2, lw=0, label="90%")
        ax.fill_between(steps, q[1], q[3], color="tab:red", alpha=0.35, lw=0, label="50%")
        ax.plot(steps, q[2], color="tab:red", lw=1, label="median")
        ax.plot(steps, obs.values[name].numpy(), ".", color="k", ms=3, label="observed")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"posterior predictive: {draws} posterior draws, {note}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _replicate(traj, r: int):
    from dataclasses import replace

    return replace(traj, series={k: v[:, r:r + 1] for k, v in traj.series.items()},
                   grouped={g: {k: v[..., r:r + 1] for k, v in named.items()} for g, named in traj.grouped.items()})


def predictive(run_draw, n: int, seeds: list[int], obs, loss: str, dispersion: float, model, seed: int,
               one_run=None) -> dict[str, Tensor]:
    """``[n, K]`` per series: posterior draw ``d`` run in stochastic mode with ``seeds[d]``, noised by the
    observation model.  ``run_draw(d, seed)`` returns ``(traj, values)``; ``one_run(seed, n)``, for a degenerate
    posterior, runs the point once with ``n`` replicate columns instead."""
    from lpm_graph.observation import sample_observations

    gen = torch.Generator().manual_seed(int(seed))
    out: dict[str, list] = {}
    mode = model.sampler.mode
    model.sampler.mode = "stochastic"
    try:
        with torch.no_grad():
            if one_run is not None:
                traj, values, obs_model = one_run(seeds[0], n)
                runs = [(_replicate(traj, r), values, obs_model) for r in range(n)]
            else:
                runs = (run_draw(d, seeds[d]) for d in range(n))
            for traj, values, obs_model in runs:
                pred = obs_model.predict(traj, obs, values)
                for name, y in sample_observations(pred, loss, dispersion, gen).items():
                    out.setdefault(name, []).append(y)
    finally:
        model.sampler.mode = mode
    return {k: torch.stack(v) for k, v in out.items()}


def predictive_note(loss: str, dispersion: float) -> str:
    noise = {"poisson": "Poisson noise", "negbin": f"negative binomial noise (k={dispersion:g})",
             "mse": "no observation noise (task.loss=mse)"}[loss]
    return f"stochastic simulator, fresh seeds, {noise}"


def map_outputs(out: Path, task, run, model, obs, columns: list[str], point: list[float], one_run) -> None:
    """``map``'s posterior files: the degenerate posterior of its fitted point (one draw); with ``task.plot`` its
    pairs plot and a predictive of ``task.predictive_draws`` replicate columns of the point in stochastic mode
    (``one_run(seed, replicates) -> (trajectory, values, observation model)``)."""
    from lpm_graph.tasks.simulate import atomic_write

    theta = torch.tensor([point], dtype=torch.float64)
    write_posterior(out, columns, theta)
    if task.plot:
        n = task.predictive_draws
        y = predictive(None, n, [run.seed + 1 + task.iterations], obs, task.loss, task.dispersion, model, run.seed,
                       one_run=one_run)
        note = predictive_note(task.loss, task.dispersion) + "; map: one point, its replicates"
        atomic_write(out / "posterior_predictive.png", lambda p: _plot_predictive(obs, y, n, note, p))
        atomic_write(out / "posterior_pairs.png", lambda p: _plot_pairs(columns, theta, "map, its point", p))


# -- the task --------------------------------------------------------------------------------------------------
def infer(cfg, task, run, model, graph, obs, obs_model, digest: str, out: Path, t0: float) -> dict:
    """``task.method=vi|laplace|nuts|sbi``: the posterior of ``model.learnable``; writes every output; returns metrics."""
    from lpm_graph.observation import observation_loss
    from lpm_graph.tasks.checkpoint import resumable_config
    from lpm_graph.tasks.simulate import atomic_write, peak_rss_mb, rounded

    method = task.method
    if method not in METHODS:
        raise ConfigError(f"task.method must be one of {list(METHODS)}, got {method!r}")
    if task.loss not in LIKELIHOODS:
        raise ConfigError(f"task.method={method} needs a likelihood: set task.loss to one of {list(LIKELIHOODS)}")
    if task.calibration_net:
        raise ConfigError(f"task.method={method} infers model.learnable only; task.calibration_net is fitted by "
                          "task.method=map")
    learnable = {id(model.params.raw(n)) for n in model.params.learnable}
    others = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in learnable]
    if others:
        raise ConfigError(f"task.method={method} infers model.learnable only, but the model also trains {others[:5]}; "
                          "use task.method=map for network weights")
    if not model.params.learnable:
        raise ConfigError(f"task.method={method} has nothing to infer: list parameters in model.learnable")
    if method in ("vi", "laplace", "nuts"):
        _require_pyro(method)
    prior = Prior(model.params, task.priors, required=True)
    sim = _Simulator(model, graph, run, obs, obs_model, prior, int(task.replicates), task.loss, task.dispersion)
    out.mkdir(parents=True, exist_ok=True)

    from tqdm.auto import tqdm

    def bar(it):
        return tqdm(it, desc=f"calibrate ({method})", unit="it", disable=not run.progress, leave=False)

    rhat = ess = None
    with torch.random.fork_rng(devices=[]):
        if method in ("vi", "laplace"):
            draws, info, (history, trace) = (_vi(sim, prior, task, run, resumable_config(cfg), out, digest, bar)
                                             if method == "vi" else _laplace(sim, prior, task, run))
            from lpm_graph.tasks.calibrate import _loss_csv, _plot_loss

            atomic_write(out / "loss.csv", lambda p: p.write_text(_loss_csv(history, trace, prior.columns)))
            if task.plot:
                atomic_write(out / "loss.png", lambda p: _plot_loss(history, p))
        elif method == "nuts":
            draws, info, diag = _nuts(sim, prior, task, run)
            rhat, ess = diag["rhat"], diag["ess"]
        else:
            draws, info, _ = _sbi(sim, prior, task, run)
    fitting = sim.calls
    with torch.no_grad():
        theta = prior.theta(draws)
    rows = write_posterior(out, prior.columns, theta, rhat=rhat, ess=ess)
    mean_z = {n: v.mean(0) for n, v in prior.constrained(draws).items()}

    with torch.no_grad():
        overrides = {n: v.to(device=sim.device, dtype=sim.dtype) for n, v in mean_z.items()}
        traj = model(graph, steps=run.steps, seed=run.seed, replicates=int(task.replicates), overrides=overrides)
        values = {**model.params.as_dict(), **overrides}
        pred = obs_model.predict(traj, obs, values)
        final = float(observation_loss(pred, obs, task.loss, task.dispersion))
    fitted = model.params.values_dict()
    fitted.update({n: v.cpu().tolist() for n, v in mean_z.items()})
    if task.plot:
        from lpm_graph.tasks.calibrate import _plot_fit

        n = min(task.predictive_draws, len(draws))
        pick = torch.linspace(0, len(draws) - 1, n).round().long()
        seeds = [run.seed + 1 + task.iterations + d for d in range(n)]

        def run_draw(d, seed):
            traj, values = sim.predict(draws[pick[d]], seed, replicates=1, traj_only=True)
            return traj, values, obs_model

        y = predictive(run_draw, n, seeds, obs, task.loss, task.dispersion, model, run.seed)
        atomic_write(out / "posterior_predictive.png",
                     lambda p: _plot_predictive(obs, y, n, predictive_note(task.loss, task.dispersion), p))
        atomic_write(out / "posterior_pairs.png", lambda p: _plot_pairs(prior.columns, theta, method, p))
        atomic_write(out / "fit.png", lambda p: _plot_fit(obs, pred, obs_model, model, p))
    metrics = {
        "method": method,
        "final_loss": final,
        "iterations": int(info.get("iterations", 0)),
        "simulations": fitting + 1,  # the fit and the run at the posterior mean, as map's iterations + 1
        "simulations_predictive": min(task.predictive_draws, len(draws)) if task.plot else 0,
        "draws": len(draws),
        "learnable": list(model.params.learnable),
        "fitted": fitted,
        "priors": dict(prior.kinds),
        "posterior": {r["parameter"]: {k: r[k] for k in ("mean", "sd", "q05", "q50", "q95")} for r in rows},
        "diagnostics": {k: v for k, v in info.items() if k != "iterations"},
        "runtime_seconds": round(time.perf_counter() - t0, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    atomic_write(out / "fitted_params.json", lambda p: p.write_text(json.dumps(rounded(metrics), indent=2) + "\n"))
    return metrics
