r"""SEIR(D) disease progression, the epidemic's state update :math:`f`, and what people emit.

Each person is in one compartment, held as one-hot indicator states
``S, E, I, R`` (and ``D``) of shape ``[N, R]`` (R replicates), owned by
:class:`SEIR`.  One step of length :math:`\Delta t`, for person :math:`i` in
group :math:`a(i)` (age group by default):

.. math::

    p^{\mathrm{inf}}_i &= 1 - \exp(-\sigma_{a(i)}\, e_\sigma\, \lambda_i\, \Delta t)
        && S \to E \\
    p^{\mathrm{onset}}_i &= \min(1, \Delta t / T^{E}_{a(i)}) && E \to I \\
    p^{\mathrm{end}}_i &= \min(1, \Delta t / T^{I}_{a(i)})
        && I \to R \text{ (or } D \text{ w.p. } \mu_{a(i)}\text{)}

with force of infection :math:`\lambda_i` (field ``person.force_of_infection``,
the sum of the interactions), relative susceptibility :math:`\sigma`, the
environment's susceptibility factor :math:`e_\sigma` (field
``person.susceptibility_factor``, e.g. from vaccination), exposed and
infectious periods :math:`T^E, T^I` (days) and infection fatality
:math:`\mu`.  The time in a compartment is geometric in steps of
:math:`\Delta t` with success probability :math:`p = \Delta t / T`, so its
mean is exactly :math:`T` (for :math:`T \ge \Delta t`; shorter periods last
one step) and an epidemic's :math:`R_0` is :math:`\beta T^I` times the
contact structure's factor.  ``infectious_duration="fixed"`` makes the
infectious period last exactly :math:`\operatorname{round}(T^I/\Delta t)`
steps instead (a queue of the days left, state ``I_days``).
Transitions are drawn
with :class:`~lpm_graph.core.sampling.Sampler` from the counter-based
uniforms (:class:`~lpm_graph.core.random.CounterRNG`): infection and onset
are lanes 0 and 1 of stream ``infection``, removal and death lanes 0 and 1
of stream ``removal`` (in ``float32`` one 64-bit hash per pair); all happen
from the compartments at the start of the step.

The elementwise work is one pure function, :func:`seir_update`, which
``torch.compile`` can fuse into a single pass over the people
(:meth:`SEIR.compile_kernel`, ``Model(compile=True)``).  Rates are turned
into probabilities on the per-group vectors before they are gathered per
person.

:class:`Infectiousness` (an emission) writes what each person sends into
the interactions, :math:`x_i = I_i\,\iota_{a(i)}\,e_\iota`: its infectious
indicator, relative infectiousness and the environment's factor (field
``person.infectiousness_factor``, e.g. isolation).
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor

from lpm_graph.core.graph import Requirements
from lpm_graph.core.observe import Observable, Outcome
from lpm_graph.core.params import GROUP, ParamSpec
from lpm_graph.core.process import Output, Process, StepContext
from lpm_graph.core.random import uniform_from_salts, uniform_pair_from_salts
from lpm_graph.core.sampling import needs_refinement
from lpm_graph.core.state import EventSpec, FieldSpec, Read, StateSpec
from lpm_graph.errors import ConfigError, SimulationWarning

__all__ = ["SEIR", "SIR", "SIS", "Infectiousness", "seir_update", "per_person"]


def per_person(value: Tensor, group: Tensor | None, dtype: torch.dtype) -> Tensor:
    """A scalar stays a scalar; a per-group vector becomes ``[N, 1]`` (one ``index_select``)."""
    value = value.to(dtype)
    return value if value.dim() == 0 else value.index_select(0, group).unsqueeze(1)


def seir_update(S: Tensor, E: Tensor | None, I: Tensor, R: Tensor | None, D: Tensor | None, lam: Tensor,
                age_group: Tensor, susceptibility: Tensor, env_susceptibility: Tensor | float, p_onset: Tensor | None,
                p_end: Tensor | None, mu: Tensor | None, dt: float, keys: tuple[Tensor, Tensor, Tensor] | None,
                sampler, removed: Tensor | None = None,
                refine: tuple[bool, bool] = (False, False)) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    r"""The elementwise part of one SEIR(D) / SIR(D) / SIS step: draws, events, new compartments.

    A pure tensor function (no Python state, no step number: the step enters
    through the salts in ``keys``), so ``torch.compile`` fuses it — the
    per-group gathers, the hashing of the random numbers, the sampling and
    the update — into one loop over people (:meth:`SEIR.compile_kernel`).

    Args:
        S, E, I, R, D: compartments ``[N, R]``; ``E`` ``None`` without a
            latent period (infections enter ``I``), ``R`` ``None`` when the
            recovered return to ``S`` (SIS), ``D`` ``None`` without fatality.
        lam: force of infection ``[N, R]``.
        age_group: group of each person ``[N]``.
        susceptibility: :math:`\sigma`, scalar or ``[G]``.
        env_susceptibility: the environment's factor :math:`e_\sigma`, a number or ``[N, R]``.
        p_onset, p_end: per-step onset and removal probabilities, scalar or ``[G]``.
        mu: fatality among the removed, scalar or ``[G]`` (``None`` without ``D``).
        dt: step length.
        keys: ``(base, infection salts, removal salts)`` of the counter-based
            generator (:meth:`~lpm_graph.core.random.CounterRNG.pair_salts`), or
            ``None`` in expected mode.
        sampler: the :class:`~lpm_graph.core.sampling.Sampler`.
        removed: who leaves ``I`` this step, if decided outside (a fixed
            infectious period); ``None``: drawn with ``p_end``.
        refine: whether the onset draw and the removal/death draws need the
            exact rare-probability comparison (:data:`~lpm_graph.core.sampling.REFINE_BELOW`);
            the infection draw, of a per-person probability, always has it.
    """
    dtype = S.dtype
    coef = per_person(susceptibility * -dt, age_group, dtype)
    if not (isinstance(env_susceptibility, (int, float)) and env_susceptibility == 1):
        coef = coef * env_susceptibility
    p_inf = -torch.expm1(lam * coef)
    u_inf = u_onset = u_end = u_death = j_inf = j_onset = j_removal = None
    if keys is not None:
        base, salt_infection, salt_removal = keys
        if E is not None:
            u_inf, u_onset, j_inf = uniform_pair_from_salts(base, salt_infection, dtype, refine=True)
            j_onset = j_inf if refine[0] else None
        else:
            u_inf, j_inf = uniform_from_salts(base, salt_infection, dtype, refine=True)
        if mu is None:
            if removed is None:
                u_end, j_removal = uniform_from_salts(base, salt_removal, dtype, refine=True)
        else:
            u_end, u_death, j_removal = uniform_pair_from_salts(base, salt_removal, dtype, refine=True)
        j_removal = j_removal if refine[1] else None
    new_inf = S * sampler(p_inf, u_inf, j_inf)
    new_onset = E * sampler(per_person(p_onset, age_group, dtype).expand_as(E), u_onset, j_onset) \
        if E is not None else new_inf
    if removed is None:
        removed = I * sampler(per_person(p_end, age_group, dtype).expand_as(I), u_end, j_removal)
    events = {"new_infections": new_inf, "new_onsets": new_onset, "new_removals": removed}
    # in place on fresh sums: autograd saves neither (one temporary less each)
    out = {"S": S - new_inf}
    if E is not None:
        out["E"] = (E + new_inf).sub_(new_onset)
    out["I"] = (I + new_onset).sub_(removed)
    if mu is not None:
        died = removed * sampler(per_person(mu, age_group, dtype).expand_as(I), u_death, j_removal)
        events["new_deaths"] = died
        recovered = removed - died
        out["D"] = D + died
    else:
        recovered = removed
    if R is not None:
        out["R"] = R + recovered
    else:
        out["S"] = out["S"] + recovered
    return out, events


class SEIR(Process):
    """Age-structured SEIR / SEIRD progression (module docstring); :class:`SIR` and :class:`SIS` are its
    variants without a latent period.

    Args:
        fatality (bool): add compartment ``D`` with fatality ``fatality``
            among those leaving ``I``. (default: ``False``)
        initial_compartment (str): where the initially infected start,
            ``"E"`` or ``"I"``. (default: ``"I"``)
        grouping (str, optional): the grouping of people that per-group
            parameters and grouped observables use (``model.groupings``);
            ``None``: scalar parameters only. (default: ``"age"``)
        infectious_steps (int, optional): a fixed infectious period of this
            many steps instead of the geometric one of mean
            ``infectious_period`` (state ``I_days``: the infectious by steps
            left). (default: ``None``)
        node_type (str): the node type of the hosts. (default: ``"person"``)
        prefix (str): prefix of the compartment names, so that two pathogens
            can share a population (``flu_S``). (default: none)
        force (str): the field read as force of infection.
        susceptibility_factor (str): the field read as the environment's
            susceptibility factor (optional: 1 without a writer).
        require_infection (bool): a run in which no replicate starts with an
            infection is an error (a replicate without one is a
            :class:`~lpm_graph.errors.SimulationWarning` with the count);
            ``False`` allows it. (default: ``True``)
        name (str): the process name and parameter namespace. (default: ``"seir"``)

    Parameters (``model.params.<name>``): ``exposed_period``,
    ``infectious_period`` (days; not with ``infectious_steps``),
    ``susceptibility``, ``initial_infected_fraction`` and, with ``fatality``,
    ``fatality``, each a scalar or one value per group; ``initial_infected``
    (default 0). **Seeding**: exactly ``initial_infected`` people per
    replicate, chosen uniformly from the counter-based random numbers
    (stream ``seed_choice``: the smallest draws), plus every other person
    with probability ``initial_infected_fraction`` (stream ``seed``); in
    expected mode a person starts infected with probability
    :math:`1 - (1 - k/N)(1 - f)`.
    """

    role = "update"
    default_name = "seir"
    partitionable = True  # per person, draws by uid; seeding of exactly k people is refused on a part (init)
    exposed = True
    recovery = "R"

    def __init__(self, fatality: bool = False, initial_compartment: str = "I", grouping: str | None = "age",
                 infectious_steps: int | None = None, node_type: str = "person", prefix: str = "",
                 force: str = "person.force_of_infection", susceptibility_factor: str = "person.susceptibility_factor",
                 require_infection: bool = True, name: str | None = None):
        super().__init__(name)
        self.require_infection = bool(require_infection)
        if initial_compartment not in (("E", "I") if self.exposed else ("I",)):
            raise ConfigError(f"{type(self).__name__}.initial_compartment must be "
                              f"{'E or I' if self.exposed else 'I'}, got {initial_compartment!r}")
        if infectious_steps is not None and (not isinstance(infectious_steps, int) or isinstance(infectious_steps, bool)
                                             or infectious_steps < 1):
            raise ConfigError(f"{type(self).__name__}.infectious_steps must be a positive integer number of steps "
                              f"or null, got {infectious_steps!r}")
        self.fatality = bool(fatality)
        self.initial_compartment = initial_compartment
        self.grouping = grouping
        self.infectious_steps = infectious_steps
        self.node_type = node_type
        self.prefix = prefix
        self.force = force
        self.susceptibility_factor = susceptibility_factor
        self.compartments = tuple(c for c in ("S", "E", "I", "R", "D")
                                  if (c != "E" or self.exposed) and (c != "R" or self.recovery == "R")
                                  and (c != "D" or self.fatality))
        self._update = seir_update

    def key(self, compartment: str) -> str:
        return f"{self.node_type}.{self.prefix}{compartment}"

    def event(self, name: str) -> str:
        return f"{self.node_type}.{self.prefix}{name}"

    # -- declarations --------------------------------------------------------
    def state_specs(self):
        docs = {"S": "susceptible", "E": "exposed (infected, not yet infectious)", "I": "infectious",
                "R": "recovered", "D": "dead"}
        specs = [StateSpec(self.node_type, f"{self.prefix}{c}", "indicator", init=None, unit="people", doc=docs[c])
                 for c in self.compartments]
        if self.infectious_steps is not None:
            specs.append(StateSpec(self.node_type, f"{self.prefix}I_days", "indicator", (self.infectious_steps,),
                                   init=None, unit="people",
                                   doc="the infectious by steps left in I: slot d has d + 1 steps left"))
        return specs

    def event_specs(self):
        names = ["new_infections", "new_onsets", "new_removals"] + (["new_deaths"] if self.fatality else [])
        return [EventSpec(self.node_type, f"{self.prefix}{n}", "people") for n in names]

    def param_specs(self):
        shape = (GROUP,) if self.grouping else ()
        g = self.grouping
        specs = []
        if self.exposed:
            specs.append(ParamSpec("exposed_period", "positive", shape, grouping=g, unit="days",
                                   doc="mean time exposed"))
        if self.infectious_steps is None:
            specs.append(ParamSpec("infectious_period", "positive", shape, grouping=g, unit="days",
                                   doc="mean time infectious"))
        specs += [
            ParamSpec("susceptibility", "nonnegative", shape, grouping=g, unit="relative",
                      doc="relative susceptibility"),
            ParamSpec("initial_infected_fraction", "probability", shape, grouping=g, unit="probability",
                      doc="probability of being infected at step 0"),
            ParamSpec("initial_infected", "count", default=0, unit="people",
                      doc="people infected at step 0, chosen uniformly in each replicate"),
        ]
        if self.fatality:
            specs.append(ParamSpec("fatality", "probability", shape, grouping=g, unit="probability",
                                   doc="probability of death on leaving I"))
        return specs

    def reads(self):
        keys = [self.key(c) for c in self.compartments]
        if self.infectious_steps is not None:
            keys.append(self.key("I_days"))
        return [*keys, Read(self.force, optional=True, default=0.0),
                Read(self.susceptibility_factor, optional=True, default=1.0)]

    def streams(self):
        return [(self.node_type, self.stream(s)) for s in ("seed", "seed_choice", "infection", "removal")]

    def workspace(self):
        # what lives at once inside seir_update beyond its inputs and outputs, in [N, R] float32 units:
        # a hashed word and its scratch (int64: 2 + 2), the uniform pair and its refinement (3), the
        # per-person gathers of susceptibility and coef (2), p_inf (1), a sampler's hard events and the
        # product with its compartment (2), the random-number base of the node type (int64: 2)
        return {self.node_type: 14.0}

    def saved(self):
        # autograd keeps lam * coef's operands, p_inf, and each sampler's product operands (S, E, I and the
        # drawn events): the state is counted separately
        return {self.node_type: 6.0}

    def observables(self):
        by = (self.grouping,) if self.grouping else ()
        out = [Observable(f"{self.prefix}{c}", self.key(c), "count", panel="compartments", unit="people")
               for c in self.compartments]
        out.append(Observable(f"{self.prefix}new_infections", self.event("new_infections"), "sum", by=by,
                              panel="new infections", style="bar", unit="people per day"))
        if self.fatality:
            out.append(Observable(f"{self.prefix}new_deaths", self.event("new_deaths"), "sum", by=by,
                                  panel="deaths", style="bar", unit="people per day"))
        return out

    def outcomes(self):
        p = self.prefix
        if self.recovery == "R":
            out = [Outcome(f"{p}attack_rate", f"{p}S", "final", normalize=True, complement=True,
                           doc="1 - S_T/N (fraction ever infected)"),
                   Outcome(f"{p}total_infections", f"{p}S", "final", complement=True, unit="people",
                           doc="N - S_T (people ever infected)")]
        else:  # SIS: the susceptible come back; count infections instead
            out = [Outcome(f"{p}total_infections", f"{p}new_infections", "total", unit="people",
                           doc="infections over the run, the initial ones included (people)"),
                   Outcome(f"{p}final_prevalence", f"{p}I", "final", normalize=True,
                           doc="I_T/N (fraction infectious at the end)")]
        out += [Outcome(f"{p}peak_size", f"{p}I", "max", unit="people", doc="max_t I_t (people), mean over replicates"),
                Outcome(f"{p}peak_day", f"{p}I", "argmax", unit="days", doc="argmax_t I_t (days)")]
        if self.fatality:
            out.append(Outcome(f"{p}deaths", f"{p}D", "final", unit="people", doc="D_T (people)"))
        return out

    def _groups(self, ctx: StepContext) -> Tensor | None:
        return ctx.graph.group_index(self.grouping) if self.grouping in ctx.graph.groupings else None

    # -- running -------------------------------------------------------------
    def init(self, ctx: StepContext) -> Output:
        """Seed infections: exactly ``initial_infected`` per replicate plus each other person with
        probability ``initial_infected_fraction`` (streams ``seed_choice`` and ``seed``, step -1)."""
        n, r, dtype = ctx.graph.num_nodes[self.node_type], ctx.replicates, ctx.dtype
        frac = self.value(ctx, "initial_infected_fraction").to(dtype)
        p = per_person(frac, self._groups(ctx), dtype).expand(n, r) if frac.dim() else frac.expand(n, r)
        rng = ctx.rng(self.node_type) if ctx.stochastic else None
        u, j = rng.uniform_refined(-1, self.stream("seed"), dtype) if ctx.stochastic else (None, None)
        seeded = ctx.sampler(p, u, j)
        k = int(self.value(ctx, "initial_infected"))
        if k and ctx.graph.partition is not None:
            raise ConfigError(f"process {self.name!r}: model.params.{self.param('initial_infected')} = {k} chooses "
                              "exactly k people of the whole population, which a partitioned run does not support; "
                              f"seed with model.params.{self.param('initial_infected_fraction')} instead, or run in "
                              "one process")
        if k > n:
            raise ConfigError(f"model.params.{self.param('initial_infected')} = {k} but the population has {n} "
                              f"{self.node_type} nodes")
        if k:
            if ctx.stochastic:
                draws = rng.uniform(-1, self.stream("seed_choice"), torch.float64)
                chosen = torch.zeros(n, r, dtype=dtype, device=ctx.graph.device)
                chosen.scatter_(0, torch.topk(draws, k, dim=0, largest=False).indices, 1.0)
                seeded = torch.maximum(seeded, chosen)
            else:
                seeded = 1.0 - (1.0 - seeded) * (1.0 - k / n)
        if self.require_infection:
            self._check_seeds(seeded, ctx.graph)
        # one tensor per compartment: a shared zero would alias E, R and D
        comp = {self.key(c): torch.zeros(n, r, dtype=dtype, device=ctx.graph.device) for c in self.compartments}
        comp[self.key("S")] = 1.0 - seeded
        comp[self.key(self.initial_compartment)] = seeded
        if self.infectious_steps is not None:
            days = torch.zeros(n, r, self.infectious_steps, dtype=dtype, device=ctx.graph.device)
            if self.initial_compartment == "I":
                days[..., -1] = seeded
            comp[self.key("I_days")] = days
        return Output(state=comp, events={self.event("new_infections"): 1.0 - comp[self.key("S")]})

    def _check_seeds(self, seeded: Tensor, graph=None) -> None:
        """Refuse a run that starts without any infection; warn of replicates that do (over every part of a
        partitioned graph)."""
        counts = seeded.detach().sum(0)
        nodes = seeded.size(0)
        if graph is not None:
            counts, nodes = graph.all_sum(counts), graph.total_nodes().get(self.node_type, nodes)
        empty = int((counts <= 0).sum())
        fix = (f"raise model.params.{self.param('initial_infected_fraction')}, or seed exactly "
               f"model.params.{self.param('initial_infected')}=<k> people per replicate")
        if empty == counts.numel():
            raise ConfigError(f"process {self.name!r}: no replicate starts with an infection ({counts.numel()} "
                              f"replicate(s) of {nodes} {self.node_type} nodes): the run would simulate "
                              f"nothing; {fix}, or set model.processes.{self.name}.require_infection=false if that is "
                              "meant")
        if empty:
            warnings.warn(SimulationWarning(f"process {self.name!r}: {empty} of {counts.numel()} replicates start "
                                            f"without any infection and will stay so; {fix}"), stacklevel=2)

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        """One step: the new compartments and per-person events ``new_infections``, ``new_onsets``,
        ``new_removals`` (and ``new_deaths``), each ``[N, R]``."""
        S = state[self.key("S")]
        dtype = S.dtype
        dt = ctx.dt
        # Periods become probabilities on the per-group vectors [G]; the kernel gathers them per person.
        p_onset = (dt / self.value(ctx, "exposed_period")).clamp(max=1.0) if self.exposed else None
        fixed = self.infectious_steps is not None
        p_end = None if fixed else (dt / self.value(ctx, "infectious_period")).clamp(max=1.0)
        mu = self.value(ctx, "fatality") if self.fatality else None
        keys = None
        if ctx.stochastic:
            rng = ctx.rng(self.node_type)
            keys = (rng.base, rng.pair_salts(ctx.t, self.stream("infection"), dtype),
                    rng.pair_salts(ctx.t, self.stream("removal"), dtype))
        lam = fields.get(self.force, 0.0)
        days = state[self.key("I_days")] if fixed else None
        refine = (False, False)
        if ctx.stochastic and dtype == torch.float32:
            refine = (bool(p_onset is not None and needs_refinement(p_onset)),
                      bool((p_end is not None and needs_refinement(p_end)) or (mu is not None and needs_refinement(mu))))
        comps, events = self._update(S, state.get(self.key("E")), state[self.key("I")], state.get(self.key("R")),
                                     state.get(self.key("D")), lam, self._groups(ctx),
                                     self.value(ctx, "susceptibility"), fields.get(self.susceptibility_factor, 1.0),
                                     p_onset, p_end, mu, float(dt), keys, ctx.sampler,
                                     days[..., 0] if fixed else None, refine)
        out = {self.key(c): v for c, v in comps.items()}
        if fixed:
            out[self.key("I_days")] = torch.cat([days[..., 1:], events["new_onsets"].unsqueeze(-1)], dim=-1)
        return Output(state=out, events={self.event(n): v for n, v in events.items()})

    def compile_kernel(self, enabled: bool = True) -> None:
        """Run :func:`seir_update` through ``torch.compile`` (one fused loop) or, with
        ``enabled=False``, eagerly.

        The first call of each population size compiles; a gradient run
        compiles a few more variants in its first steps, as the compartments
        start to require gradients one by one, so the recompile limit is
        raised to 64.  Hard events agree with the eager kernel except where a
        uniform lies within rounding of its probability (the fused ``expm1``
        may differ in the last bit).
        """
        if enabled:
            import torch._dynamo

            cfg = torch._dynamo.config
            name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
            setattr(cfg, name, max(getattr(cfg, name), 64))
            compiled = torch.compile(seir_update)

            def update(*args):
                # Dynamo reads ``.grad`` of its (non-leaf) tensor inputs when it traces,
                # which warns; nothing here uses ``.grad``.
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="The .grad attribute of a Tensor that is not a leaf",
                                            category=UserWarning)
                    return compiled(*args)

            self._update = update
        else:
            self._update = seir_update

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, compartments={self.compartments}, "
                f"initial_compartment={self.initial_compartment!r}, grouping={self.grouping!r}")


class SIR(SEIR):
    """SIR / SIRD: :class:`SEIR` without the latent period; infections enter ``I`` at once.

    Takes the arguments of :class:`SEIR` (``initial_compartment`` is ``"I"``);
    no ``exposed_period`` parameter.  The process's default name is ``sir``.
    """

    default_name = "sir"
    exposed = False


class SIS(SEIR):
    """SIS: no latent period and no immunity; those leaving ``I`` are susceptible again (or, with
    ``fatality``, die).

    Takes the arguments of :class:`SEIR` (``initial_compartment`` is ``"I"``).
    Its outcomes are the infections over the run, the final prevalence and
    the peak, not an attack rate.  The process's default name is ``sis``.
    """

    default_name = "sis"
    exposed = False
    recovery = "S"


class Infectiousness(Process):
    r"""What each host emits into the interactions: :math:`x_i = I_i\,\iota_{a(i)}\,e_\iota`.

    Args:
        source (str): the infectious indicator state. (default: ``"person.I"``)
        target (str): the field written. (default: ``"person.infectiousness"``)
        factor (str): the environment's factor read, optional (1 without a
            writer). (default: ``"person.infectiousness_factor"``)
        grouping (str, optional): grouping of per-group values. (default: ``"age"``)
        name (str): the process name. (default: ``"infectiousness"``)

    Parameters: ``relative`` (relative infectiousness :math:`\iota`, a scalar
    or one value per group; default 1).
    """

    role = "emission"
    default_name = "infectiousness"
    partitionable = True

    def __init__(self, source: str = "person.I", target: str = "person.infectiousness",
                 factor: str = "person.infectiousness_factor", grouping: str | None = "age", name: str | None = None):
        super().__init__(name)
        self.source, self.target, self.factor, self.grouping = source, target, factor, grouping
        self.node_type = target.split(".", 1)[0]

    def param_specs(self):
        return [ParamSpec("relative", "nonnegative", (GROUP,) if self.grouping else (), grouping=self.grouping,
                          default=1.0, unit="relative", doc="relative infectiousness")]

    def reads(self):
        return [self.source, Read(self.factor, optional=True, default=1.0)]

    def field_specs(self):
        return [FieldSpec(self.node_type, self.target.split(".", 1)[1], doc="infectiousness sent to contacts")]

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        infectious = state[self.source]
        groups = ctx.graph.group_index(self.grouping) if self.grouping in ctx.graph.groupings else None
        x = infectious * per_person(self.value(ctx, "relative"), groups, infectious.dtype)
        ei = fields.get(self.factor, 1.0)
        return Output(fields={self.target: x if isinstance(ei, (int, float)) and ei == 1 else x * ei})
