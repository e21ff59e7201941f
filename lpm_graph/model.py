r"""The time-unrolled population model.

One step :math:`t \to t+1`, in this order (the only place it is written):

0. **Parameters** :math:`\theta(t)`: time-varying parameters take their
   entry for step :math:`t` (``ParameterSet.at``).
1. **Environment** :math:`e(t) = g_K(\dots g_1(t, s(t), \theta, e_0))`:
   every module of ``environment`` in config order, from a neutral
   environment (closures, vaccination, isolation); an intervention with
   state of its own (``V``, vaccinated) updates it here.
2. **Emission**: each person's infectiousness :math:`x_j(t)` from its state
   (``disease.infectiousness``).
3. **Interaction** :math:`\lambda_i = \sum_c \sum_j m^{(c)}_{ij}`: every
   channel of ``interactions`` (PyG ``MessagePassing`` layers over sparse
   layouts) adds its force of infection.
4. **Update** :math:`s(t+1) = f(s(t), \lambda, e(t), \theta)`: the disease
   progression draws its transitions from the counter-based random numbers
   of step :math:`t`.
5. **Observe**: compartment counts (and intervention states such as
   ``V``), new infections (total and by age group) and deaths are reduced to
   ``[R]`` / ``[G, R]`` on the fly.

``T`` steps unrolled form a GNN differentiable in every learnable parameter;
with ``checkpoint=True`` each step is recomputed in the backward pass
(``torch.utils.checkpoint``, non-reentrant), so memory holds ``O(T N)``
state, not every step's intermediates.  Replaying a step draws the same
random numbers because they are a function of (seed, step, stream, uid).
"""
from __future__ import annotations

import contextlib
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from lpm_graph.data.prepare import PreparedPopulation
from lpm_graph.errors import ConfigError
from lpm_graph.dynamics.sampling import Sampler
from lpm_graph.dynamics.transmission import Environment
from lpm_graph.memory import release_free_memory
from lpm_graph.nn.sparse import SparseAdjacency, spmm
from lpm_graph.params import ParameterSet, check_domain
from lpm_graph.random import CounterRNG

__all__ = ["PopulationModel", "Trajectory"]


@dataclass
class StepContext:
    """What the step's modules may read besides state and parameters."""

    graph: PreparedPopulation
    rng: CounterRNG | None
    sampler: Sampler
    dt: float


@dataclass
class Trajectory:
    """Observables of a run, stacked over time (index 0 is the initial state).

    ``series[name]`` is ``[T + 1, R]`` for compartments (``S``, ``E``, ...)
    and event counts (``new_infections``, ``new_deaths``); ``by_age[name]`` is
    ``[T + 1, G, R]``.  ``final_state`` holds the per-person compartment
    indicators after the last step (``[N, R]`` each).
    """

    series: dict[str, Tensor]
    by_age: dict[str, Tensor]
    compartments: tuple[str, ...]
    age_bins: list[float]
    final_state: dict[str, Tensor] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return next(iter(self.series.values())).size(0) - 1

    @property
    def replicates(self) -> int:
        return next(iter(self.series.values())).size(1)

    def age_labels(self) -> list[str]:
        b = [int(x) if float(x).is_integer() else x for x in self.age_bins]
        return [f"{lo}-{hi}" for lo, hi in zip(b[:-1], b[1:])] + [f"{b[-1]}+"]

    def to_frame(self):
        """Long-format ``pandas.DataFrame``: one row per (step, replicate)."""
        import pandas as pd

        T1, R = self.steps + 1, self.replicates
        cols = {"step": torch.arange(T1).repeat_interleave(R).numpy(),
                "replicate": torch.arange(R).repeat(T1).numpy()}
        for name, s in self.series.items():
            cols[name] = s.detach().cpu().reshape(-1).numpy()
        for name, s in self.by_age.items():
            for g, label in enumerate(self.age_labels()):
                cols[f"{name}_age_{label}"] = s[:, g].detach().cpu().reshape(-1).numpy()
        return pd.DataFrame(cols)


#: steps between returns of freed heap memory to the system (CPU runs; see lpm_graph.memory)
TRIM_EVERY = 10

_AGE_ADJ: "weakref.WeakKeyDictionary[PreparedPopulation, SparseAdjacency]" = weakref.WeakKeyDictionary()


def age_adjacency(graph: PreparedPopulation) -> SparseAdjacency:
    """The ``[G, N]`` person -> age-group indicator as a CSR layout, built once per prepared graph.

    Summing events by age group is then one sparse product (``spmm``, with
    the transposed product as its backward): ~0.7 ms for 1M people on 2
    cores against ~1.9 ms for ``index_add`` into ``[G, R]``.
    """
    adj = _AGE_ADJ.get(graph)
    if adj is None:
        n = graph.num_people
        people = torch.arange(n, device=graph.age_group.device)
        adj = SparseAdjacency.from_edge_index(torch.stack([people, graph.age_group]), None,
                                              (n, graph.num_age_groups), graph.venue_inv_size.dtype)
        _AGE_ADJ[graph] = adj
    return adj


def observe(state: dict[str, Tensor], events: dict[str, Tensor],
            age: SparseAdjacency) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Reduce a step to its observables: compartment counts and event totals ``[R]``, events by
    age group ``[G, R]`` (one sparse product with :func:`age_adjacency`)."""
    series = {c: s.sum(0) for c, s in state.items()}
    by_age = {}
    for name, ev in events.items():
        if name in ("new_infections", "new_deaths"):
            series[name] = ev.sum(0)
            by_age[name] = spmm(age, ev)
    return series, by_age


@contextlib.contextmanager
def flush_denormals():
    """Flush denormal floats to zero on the CPU inside the block, then restore the setting.

    Mean-field probabilities decay into denormal floats, which make every CPU
    elementwise op ~50-80x slower (measured: 4 ms instead of 0.05 ms for a
    100k-element multiply).  ``PopulationModel.forward`` runs inside this;
    wrap a backward pass in it too when it is slow.
    """
    probe = torch.tensor([1e-30], dtype=torch.float32)
    was_on = float(probe * 1e-10) == 0.0  # 1e-40 is denormal in float32
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not was_on:
            torch.set_flush_denormal(False)


class PopulationModel(nn.Module):
    r"""Holds the step stack and runs it for ``T`` steps.

    Args:
        interactions (Sequence[nn.Module]): channels computing the force of
            infection (e.g. :class:`~lpm_graph.dynamics.VenueTransmission`).
        disease (nn.Module): the state update (e.g. :class:`~lpm_graph.dynamics.SEIR`).
        params (Mapping[str, float | list[float]]): named parameter values.
        learnable (Sequence[str]): names of the parameters to optimise. (default: none)
        bounds (Mapping[str, [lo, hi]]): bounds of learnable parameters
            (see :class:`~lpm_graph.params.ParameterSet`). (default: none)
        time_varying (Mapping[str, int]): period in steps of time-varying
            parameters. (default: none)
        environment (Sequence[nn.Module]): environment functions
            (interventions), applied in order. (default: none)
        age_bins (Sequence[float]): lower edges of the age groups, from 0.
        mode (str): ``"stochastic"`` or ``"expected"`` (mean field). (default: ``"stochastic"``)
        surrogate (str): backward of discrete events, ``"straight_through"``
            or ``"gumbel"``. (default: ``"gumbel"``)
        temperature (float): temperature of the ``"gumbel"`` surrogate. (default: 0.1)
        dt (float): step length in days. (default: 1.0)
        checkpoint (bool): recompute each step in the backward pass. (default: ``False``)
        compile (bool): run the elementwise part of the step (the disease's
            kernel, e.g. :func:`~lpm_graph.dynamics.seir.seir_update`,
            random draws included) through ``torch.compile``, which fuses it
            into one pass over the people; the sparse products stay as they are.  The
            first step of each population size compiles (10-40 s on a CPU);
            worth it for large or long runs (``scripts/bench.py`` measures
            both). (default: ``False``)
    """

    def __init__(self, interactions: Sequence[nn.Module], disease: nn.Module, params: Mapping[str, object],
                 learnable: Sequence[str] = (), environment: Sequence[nn.Module] = (),
                 bounds: Mapping[str, Sequence] | None = None, time_varying: Mapping[str, int] | None = None,
                 age_bins: Sequence[float] = (0, 10, 20, 30, 40, 50, 60, 70, 80), mode: str = "stochastic",
                 surrogate: str = "gumbel", temperature: float = 0.1, dt: float = 1.0,
                 checkpoint: bool = False, compile: bool = False):
        super().__init__()
        self.interactions = nn.ModuleList(interactions)
        self.disease = disease
        self.environment = nn.ModuleList(environment)
        self.sampler = Sampler(mode, surrogate, temperature)
        age_bins = [float(a) for a in age_bins]
        if not age_bins or age_bins[0] != 0 or any(b <= a for a, b in zip(age_bins, age_bins[1:])):
            raise ConfigError(f"model.age_bins must be strictly increasing lower edges starting at 0, got {age_bins}")
        if not (isinstance(dt, (int, float)) and dt > 0):
            raise ConfigError(f"model.dt must be a positive number of days, got {dt}")
        self.age_bins, self.dt, self.use_checkpoint = age_bins, float(dt), bool(checkpoint)
        self._check_params(dict(params), dict(time_varying or {}))
        self.params = ParameterSet(params, learnable, bounds, time_varying)
        self.compiled = bool(compile)
        for module in [*self.interactions, self.disease, *self.environment]:
            if hasattr(module, "compile_kernel"):
                module.compile_kernel(self.compiled)

    # -- construction-time checks: before any simulation work ---------------
    def _check_params(self, values: dict, time_varying: dict) -> None:
        domains: dict[str, str] = {}
        for module in [*self.interactions, self.disease, *self.environment]:
            domains.update(getattr(module, "param_domains", {}))
        missing = sorted(n for n in domains if n not in values)
        if missing:
            raise ConfigError(f"model.params is missing {missing}, read by the configured step stack "
                              f"(given: {sorted(values)})")
        groups = len(self.age_bins)
        for name, domain in domains.items():
            check_domain(name, values[name], domain)
            v = values[name]
            if name in time_varying:
                v = v[0] if isinstance(v, Sequence) and not isinstance(v, str) and len(v) else v
            if isinstance(v, Sequence) and not isinstance(v, str) and len(v) not in (1, groups):
                raise ConfigError(f"model.params.{name} has {len(v)} values but model.age_bins defines "
                                  f"{groups} age groups; give one value or {groups}")

    @property
    def compartments(self) -> tuple[str, ...]:
        return self.disease.compartments

    def prepare(self, data, dtype: torch.dtype = torch.float32) -> PreparedPopulation:
        """Validate a ``HeteroData`` population and build its sparse layouts (once per graph)."""
        graph = data if isinstance(data, PreparedPopulation) else PreparedPopulation(data, self.age_bins, dtype)
        if graph.age_bins != self.age_bins:
            raise ConfigError(f"the population was prepared with age_bins {graph.age_bins} but the model uses "
                              f"{self.age_bins}; prepare it with model.prepare(data)")
        for channel in self.interactions:
            if hasattr(channel, "check_graph"):
                channel.check_graph(graph)
        return graph

    # -- the step ------------------------------------------------------------
    def environment_at(self, t: int, state: dict[str, Tensor], params: dict,
                       ctx: StepContext) -> tuple[Environment, dict[str, Tensor]]:
        env = Environment()
        for g in self.environment:
            env, state = g(t, state, params, env, ctx)
        return env, state

    def step(self, t: int, state: dict[str, Tensor], values: dict[str, Tensor],
             ctx: StepContext) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        """One step in the documented order; returns (new state, series, by-age observables)."""
        if t % TRIM_EVERY == 0 and ctx.graph.uid.device.type == "cpu":
            release_free_memory()  # keeps glibc's heap from growing over an unroll (lpm_graph.memory)
        params = self.params.at(t, values)
        env, state = self.environment_at(t, state, params, ctx)
        x = self.disease.infectiousness(state, ctx.graph, params, env)
        lam = None
        for channel in self.interactions:
            out = channel(x, ctx.graph, params, env, t)
            lam = out if lam is None else lam + out
        lam = torch.zeros_like(x) if lam is None else lam
        compartments, events = self.disease(state, lam, t, ctx.graph, params, env, ctx.rng, self.sampler, self.dt)
        state = {**state, **compartments}
        series, by_age = self._observe(state, events, ctx.graph)
        return state, series, by_age

    def _observe(self, state, events, graph) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        return observe(state, events, age_adjacency(graph))

    def initial_state(self, graph: PreparedPopulation, values: dict[str, Tensor], ctx: StepContext,
                      dtype: torch.dtype) -> dict[str, Tensor]:
        params = self.params.at(0, values)
        state = self.disease.initial_state(graph, params, ctx.rng, self.sampler, dtype)
        for g in self.environment:
            state.update(g.initial_state(graph, params, ctx.rng, self.sampler, dtype))
        return state

    def forward(self, graph, steps: int, seed: int = 0, replicates: int = 1, progress: bool = False,
                dtype: torch.dtype | None = None, overrides: Mapping[str, Tensor] | None = None) -> Trajectory:
        """Run ``steps`` steps from the seeded initial state.

        Args:
            graph: a ``HeteroData`` population or a :class:`PreparedPopulation`
                (prepare once with :meth:`prepare` to reuse across runs).
            steps (int): number of steps ``T`` (> 0).
            seed (int): keys every random draw (with step, stream and uid).
            replicates (int): replicate columns ``R`` run side by side.
            progress (bool): show a progress bar.
            dtype: floating type of the state; defaults to the parameters' dtype.
            overrides (Mapping[str, Tensor], optional): constrained parameter
                values to use instead of the stored ones (e.g. the time series
                a calibration network produces); gradients flow into them.
        """
        if not isinstance(steps, int) or isinstance(steps, bool) or steps <= 0:
            raise ConfigError(f"steps must be a positive integer, got {steps!r}")
        if not isinstance(replicates, int) or replicates < 1:
            raise ConfigError(f"replicates must be a positive integer, got {replicates!r}")
        with flush_denormals():
            return self._run(graph, steps, seed, replicates, progress, dtype, overrides)

    def _run(self, graph, steps, seed, replicates, progress, dtype, overrides) -> Trajectory:
        graph = self.prepare(graph)
        values = self.params.as_dict()
        if overrides:
            unknown = sorted(set(overrides) - set(values))
            if unknown:
                raise ConfigError(f"overrides name {unknown}, which are not in model.params")
            values.update(overrides)
        ref = self.params.raw(self.params.names[0])
        dtype = dtype or ref.dtype
        if graph.uid.device != ref.device:
            raise ConfigError(f"the population is on {graph.uid.device} but the model on {ref.device}; "
                              "move both with .to(device)")
        rng = CounterRNG(graph.uid, seed, replicates) if self.sampler.stochastic else None
        ctx = StepContext(graph=graph, rng=rng, sampler=self.sampler, dt=self.dt)
        state = self.initial_state(graph, values, ctx, dtype)
        series0, by_age0 = self._observe(state, {"new_infections": 1.0 - state["S"]}, graph)
        if "D" in self.compartments:
            series0["new_deaths"] = torch.zeros_like(series0["new_infections"])
            by_age0["new_deaths"] = torch.zeros_like(by_age0["new_infections"])
        series = {k: [v] for k, v in series0.items()}
        by_age = {k: [v] for k, v in by_age0.items()}

        from tqdm.auto import tqdm

        for t in tqdm(range(steps), desc="simulate", unit="step", disable=not progress, leave=False):
            if self.use_checkpoint and torch.is_grad_enabled():
                state, s, a = _checkpoint(self.step, t, state, values, ctx,
                                          use_reentrant=False, preserve_rng_state=False)
            else:
                state, s, a = self.step(t, state, values, ctx)
            for k, v in s.items():
                series[k].append(v)
            for k, v in a.items():
                by_age[k].append(v)
        return Trajectory(series={k: torch.stack(v) for k, v in series.items()},
                          by_age={k: torch.stack(v) for k, v in by_age.items()},
                          compartments=self.compartments, age_bins=self.age_bins, final_state=dict(state))
