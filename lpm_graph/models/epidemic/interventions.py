r"""Interventions: environment processes of the epidemic.

Each is a process of role ``environment`` (:mod:`lpm_graph.core.process`)
run at the start of every step, before the epidemic's own processes.  They
act through fields the epidemic reads as optional factors —
``<venue type>.contact_scale``, ``person.susceptibility_factor``,
``person.infectiousness_factor`` — and may own state (who is vaccinated).
Their effects are parameters in their own namespace
(``vaccination.efficacy``), so they can be learned, calibrated or optimised
like any other :math:`\theta`.  Random decisions (who is vaccinated today,
who complies with isolation) come from the counter-based generator, so a
scenario and its baseline share every other random number.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lpm_graph.core.environment import Scale, Window
from lpm_graph.core.graph import Requirements
from lpm_graph.core.observe import Observable
from lpm_graph.core.params import GROUP, ParamSpec, check_domain
from lpm_graph.core.process import Output, StepContext
from lpm_graph.core.state import FieldSpec, Read, StateSpec
from lpm_graph.errors import ConfigError
from lpm_graph.models.epidemic.transmission import contact_scale

__all__ = ["VenueClosure", "Vaccination", "Isolation"]


class VenueClosure(Scale):
    r"""Scale the contact intensity of a venue type (or contact relation) over a window.

    .. math::

        e_\tau(t) \leftarrow e_\tau(t)\cdot
        \begin{cases} f & t_0 \le t < t_1 \\ 1 & \text{otherwise} \end{cases}

    Args:
        venue_type (str): venue node type (``"school"``) or contact relation
            name (``"contact"``).
        start (int): first step of the closure, inclusive.
        end (int): step at which it ends, exclusive; ``None`` for never.
        factor (float): remaining fraction of contact in ``[0, 1]`` (0 closes
            the venues); the default of the parameter ``<name>.factor``.
            (default: ``0.0``)
        name (str): the process name. (default: ``close_<venue_type>``)
    """

    def __init__(self, venue_type: str, start: int, end: int | None = None, factor: float = 0.0,
                 name: str | None = None):
        self.default_name = f"close_{venue_type}"
        check_domain("factor", factor, "probability", where=f"VenueClosure({venue_type})")
        super().__init__(contact_scale(venue_type), start, end, factor, "probability", name)
        self.venue_type = venue_type


class Vaccination(Window):
    r"""A vaccination campaign with a daily budget allocated across groups (age groups by default).

    Each step of the window, a fraction :math:`b` of the population
    (``daily_fraction``) is vaccinated, split over groups by the allocation
    :math:`a_g` (:math:`\sum_g a_g = 1`).  Doses go to eligible people of
    the group — not yet vaccinated, and not in any state of ``exclude``
    (the dead, by default, where the model has a ``D`` state) — regardless
    of infection status (no testing), each with probability

    .. math::

        q_g = \min\Big(1,\; \frac{b\,N\,a_g\,\Delta t}{\sum_{i \in g} e_i}\Big),
        \qquad e_i = (1 - V_i) \prod_{x \in \text{exclude}} (1 - x_i),

    and a vaccinated person's susceptibility is multiplied by
    :math:`1 - \varepsilon` (parameter ``efficacy``, leaky protection) through
    the field ``person.susceptibility_factor``.  State ``V`` (``[N, R]``)
    marks the vaccinated; draws use stream ``vaccination``.

    Allocations: ``None`` gives each group its population share; a list
    gives shares (normalised); ``"logits"`` makes the allocation the
    parameter ``<name>.allocation`` of :math:`G` logits :math:`\phi`, with
    :math:`a = \operatorname{softmax}(\phi + \log s)` where :math:`s` are the
    population shares — so the default :math:`\phi = 0` is the
    population-share allocation — for policy optimisation by gradient.

    With ``priority`` (groups in order, e.g. oldest first) instead of an
    allocation, the day's budget :math:`B = bN\Delta t` goes to the first
    listed group that still has unvaccinated people and what it cannot use
    spills over to the next: group :math:`g` at position :math:`k` gets
    :math:`\min\big(r_g, \max(0, B - \sum_{k' < k} r_{g_{k'}})\big)` doses,
    :math:`r_g` its unvaccinated count (per replicate); unlisted groups get
    none.  With ``spill_over=True`` an allocation behaves alike: doses a
    group cannot use (:math:`B a_g > r_g`) go to the groups that still have
    unvaccinated people, in proportion to their shares (water-filling, at
    most :math:`G` rounds), so no dose is wasted while anyone with a positive
    share is left; the default ``False`` keeps :math:`B a_g` per group.

    **Doses from a field.** With ``doses`` (the name of a per-person field
    ``[N, R]``, e.g. the doses a supply chain delivers to each person this
    step) instead of ``daily_fraction``, group :math:`g`'s doses today are
    :math:`d_g = \sum_{i \in g} x_i` of that field and
    :math:`q_g = \min(1, d_g / \sum_{i \in g} e_i)`: the doses that reached
    a group (a clinic's catchment, say) are spread over its eligible
    members.  Allocation, priority and spill-over do not apply (the doses
    are already allocated); in expected mode exactly :math:`\min(d_g,
    \sum_{i\in g} e_i)` people of the group are vaccinated.

    **Acceptance (the decision** ``person.vaccinates`` **).** A person offered
    a dose accepts it with probability :math:`c_i`, the state ``accepts``
    (default ``person.last_vaccinates``, which a behaviour deciding
    ``vaccinates`` keeps), so its probability of being vaccinated today is
    :math:`q_g c_i`; a dose refused is not passed on to anyone else.  The
    campaign runs in the environment, before behaviours, so it reads the
    decision of the *previous* step (a one-step lag; 0 before the first step,
    so a run with such a behaviour vaccinates nobody on its first step).
    Without a process owning that state everybody accepts (:math:`c_i = 1`).

    Args:
        daily_fraction (float): doses per day as a fraction of the population (or ``doses``).
        doses (str, optional): the per-person field of doses delivered this step, instead of a daily
            budget. (default: ``None``)
        allocation (Sequence[float] | str, optional): see above.
        efficacy (float): default of the parameter ``<name>.efficacy``, the
            reduction of susceptibility in [0, 1]. (default: ``0.9``)
        start (int), end (int): the campaign window ``[start, end)``.
        priority (Sequence[int], optional): group indices in order of
            priority (``[8, 7, ..., 0]``: oldest first); excludes ``allocation``.
        spill_over (bool): pass doses a group cannot use on to the other
            groups by their shares. (default: ``False``)
        grouping (str): the grouping doses are allocated over. (default: ``"age"``)
        exclude (Sequence[str]): indicator states whose members get no dose,
            read where a process owns them. (default: ``["person.D"]``)
        accepts (str, optional): the state of the probability of accepting a dose offered, read where a
            process owns it (else 1); ``None``: everybody accepts. (default: ``"person.last_vaccinates"``)
        name (str): the process name. (default: ``"vaccination"``)
    """

    default_name = "vaccination"

    def __init__(self, daily_fraction: float | None = None, allocation: Sequence[float] | str | None = None,
                 efficacy: float = 0.9, start: int = 0, end: int | None = None,
                 priority: Sequence[int] | None = None, spill_over: bool = False, grouping: str = "age",
                 exclude: Sequence[str] = ("person.D",), doses: str | None = None,
                 accepts: str | None = "person.last_vaccinates", name: str | None = None):
        super().__init__(start, end, name)
        self.exclude = [str(k) for k in exclude]
        if accepts is not None and (not isinstance(accepts, str) or accepts.count(".") != 1
                                    or not accepts.startswith("person.")):
            raise ConfigError(f"Vaccination.accepts must name a person state, 'person.<name>' (or null), "
                              f"got {accepts!r}")
        self.accepts = accepts
        if (daily_fraction is None) == (doses is None):
            raise ConfigError("Vaccination takes either daily_fraction (a daily budget) or doses (a field of "
                              "doses delivered), exactly one of them")
        if doses is not None:
            if not isinstance(doses, str) or doses.count(".") != 1 or not doses.startswith("person."):
                raise ConfigError(f"Vaccination.doses must name a person field, 'person.<name>', got {doses!r}")
            if allocation is not None or priority is not None or spill_over:
                raise ConfigError("Vaccination with doses from a field takes no allocation, priority or "
                                  "spill_over: the doses that reach each group are given there")
        else:
            check_domain("daily_fraction", daily_fraction, "probability", where="Vaccination")
        check_domain("efficacy", efficacy, "probability", where="Vaccination")
        self.doses = doses
        self.daily_fraction = None if daily_fraction is None else float(daily_fraction)
        self.efficacy = float(efficacy)
        if isinstance(allocation, str):
            if allocation != "logits":
                raise ConfigError(f"Vaccination.allocation must be a list of shares, 'logits' or null, "
                                  f"got {allocation!r}")
        elif allocation is not None:
            check_domain("allocation", list(allocation), "nonnegative", where="Vaccination")
            if sum(allocation) <= 0:
                raise ConfigError("Vaccination.allocation must have a positive sum")
            allocation = [float(a) for a in allocation]
        self.allocation = allocation
        if priority is not None:
            if allocation is not None:
                raise ConfigError("Vaccination takes either allocation or priority, not both")
            priority = [int(g) for g in priority]
            if not priority or min(priority) < 0 or len(set(priority)) != len(priority):
                raise ConfigError(f"Vaccination.priority must list distinct group indices >= 0, got {priority}")
        self.priority = priority
        self.spill_over = bool(spill_over)
        self.grouping = grouping

    # -- declarations --------------------------------------------------------
    def state_specs(self):
        return [StateSpec("person", "V", "indicator", unit="people", doc="vaccinated")]

    def field_specs(self):
        return [FieldSpec("person", "susceptibility_factor", combine="product")]

    def reads(self):
        return ["person.V", *(Read(k, optional=True) for k in self.exclude), *([self.doses] if self.doses else []),
                *([Read(self.accepts, optional=True)] if self.accepts else [])]

    def requirements(self) -> Requirements:
        return Requirements(groupings={self.grouping: None})  # the groups doses are allocated over

    def param_specs(self):
        specs = [ParamSpec("efficacy", "probability", default=self.efficacy, unit="probability",
                           doc="reduction of susceptibility of the vaccinated")]
        if self.allocation == "logits":
            specs.append(ParamSpec("allocation", "real", (GROUP,), scalar_ok=False, grouping=self.grouping,
                                   default=0.0, doc="allocation logits relative to population shares (0: population "
                                   "shares), one per group"))
        return specs

    def streams(self):
        return [("person", self.stream("vaccination"))]

    def observables(self):
        return [Observable("V", "person.V", "count", panel="compartments", unit="people")]

    # -- allocation ----------------------------------------------------------
    def shares(self, ctx: StepContext, like: Tensor) -> Tensor:
        """The allocation over groups, ``[G]``, summing to one."""
        group = ctx.graph.group_index(self.grouping)
        G = len(ctx.graph.group_labels(self.grouping))
        if self.allocation is None or self.allocation == "logits":
            counts = torch.bincount(group, minlength=G).to(like.dtype)
            share = counts / counts.sum()
            if self.allocation is None:
                return share
            logits = self.value(ctx, "allocation").to(like.dtype)
            return torch.softmax(logits + torch.log(share.clamp_min(1e-30)), 0)
        a = torch.as_tensor(self.allocation, dtype=like.dtype, device=like.device)
        if a.numel() != G:
            raise ConfigError(f"Vaccination.allocation has {a.numel()} shares but grouping {self.grouping!r} has "
                              f"{G} groups")
        return a / a.sum()

    def group_doses(self, ctx: StepContext, remaining: Tensor, fields: dict[str, Tensor] | None = None) -> Tensor:
        """Doses per group today, ``[G, R]`` (or ``[G, 1]``), from the unvaccinated counts ``remaining`` (and,
        with ``doses``, the per-person field of doses delivered in ``fields``)."""
        G = remaining.size(0)
        if self.doses is not None:
            given = fields[self.doses].to(remaining.dtype).expand(-1, remaining.size(1))
            return torch.zeros_like(remaining).index_add(0, ctx.graph.group_index(self.grouping), given)
        budget = self.daily_fraction * ctx.graph.num_nodes["person"] * ctx.dt
        if self.priority is None:
            shares = self.shares(ctx, remaining).unsqueeze(1)
            if not self.spill_over:
                return budget * shares
            doses = torch.minimum(budget * shares, remaining)
            for _ in range(G - 1):
                spare = remaining - doses
                weight = shares * (spare > 0).to(remaining.dtype)
                total = weight.sum(0, keepdim=True)
                leftover = (budget - doses.sum(0, keepdim=True)).clamp_min(0.0)
                extra = torch.where(total > 0, leftover * weight / total.clamp_min(1e-30), torch.zeros_like(weight))
                doses = doses + torch.minimum(extra, spare)
            return doses
        if max(self.priority) >= G:
            raise ConfigError(f"Vaccination.priority names group {max(self.priority)} but grouping "
                              f"{self.grouping!r} has {G} groups (0..{G - 1})")
        order = torch.as_tensor(self.priority, device=remaining.device)
        r = remaining[order]
        before = torch.cumsum(r, 0) - r
        doses = torch.zeros_like(remaining)
        return doses.index_copy(0, order, torch.minimum(r, (budget - before).clamp_min(0.0)))

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        V = state["person.V"]
        out = Output()
        if self.active(ctx.t):
            group = ctx.graph.group_index(self.grouping)
            unvaccinated = 1.0 - V
            for k in self.exclude:
                if state.get(k) is not None:
                    unvaccinated = unvaccinated * (1.0 - state[k])
            remaining = torch.zeros(len(ctx.graph.group_labels(self.grouping)), V.size(1), dtype=V.dtype,
                                    device=V.device).index_add(0, group, unvaccinated)
            doses = self.group_doses(ctx, remaining, fields)
            q_group = torch.where(remaining > 0, doses / remaining.clamp_min(1e-12),
                                  torch.zeros((), dtype=V.dtype)).clamp(max=1.0)
            q = q_group[group]
            accept = state.get(self.accepts) if self.accepts else None
            if accept is not None:   # the last step's decision to accept a dose offered (one-step lag)
                q = q * accept.to(V.dtype)
            u, j = ctx.rng("person").uniform_refined(ctx.t, self.stream("vaccination"), V.dtype) \
                if ctx.stochastic else (None, None)
            V = V + unvaccinated * ctx.sampler(q, u, j)
            out.state["person.V"] = V
        efficacy = self.value(ctx, "efficacy").to(dtype=V.dtype, device=V.device)
        out.fields["person.susceptibility_factor"] = 1.0 - efficacy * V
        return out

    def extra_repr(self) -> str:
        if self.doses is not None:
            return (f"name={self.name!r}, doses={self.doses!r}, grouping={self.grouping!r}, start={self.start}, "
                    f"end={self.end}")
        return (f"name={self.name!r}, daily_fraction={self.daily_fraction}, allocation={self.allocation!r}, "
                f"priority={self.priority}, spill_over={self.spill_over}, start={self.start}, end={self.end}")


class Isolation(Window):
    r"""Isolation: compliant people transmit less while they are infectious.

    A fixed subset of people complies (each with probability ``compliance``,
    drawn once per person from stream ``isolation``); while the window is
    active, a compliant person's infectiousness is multiplied by
    :math:`1 - \eta` (``effectiveness``) through the field
    ``person.infectiousness_factor``.  The epidemic has no symptom state, so
    this acts on every infectious person who complies, from the first day
    of infectiousness — an upper bound on isolation of symptomatic cases,
    which would start later and miss the asymptomatic.  In expected mode the
    factor is :math:`1 - \eta c`.

    Args:
        compliance (float): default of the parameter ``<name>.compliance``. (default: ``0.5``)
        effectiveness (float): default of ``<name>.effectiveness``, the
            reduction of transmission while isolating. (default: ``0.8``)
        start (int), end (int): the window ``[start, end)``.
        name (str): the process name. (default: ``"isolation"``)
    """

    default_name = "isolation"

    def __init__(self, compliance: float = 0.5, effectiveness: float = 0.8, start: int = 0,
                 end: int | None = None, name: str | None = None):
        super().__init__(start, end, name)
        check_domain("compliance", compliance, "probability", where="Isolation")
        check_domain("effectiveness", effectiveness, "probability", where="Isolation")
        self.compliance, self.effectiveness = float(compliance), float(effectiveness)

    def param_specs(self):
        return [ParamSpec("compliance", "probability", default=self.compliance, doc="probability of complying"),
                ParamSpec("effectiveness", "probability", default=self.effectiveness,
                          doc="reduction of transmission while isolating")]

    def field_specs(self):
        return [FieldSpec("person", "infectiousness_factor", combine="product")]

    def streams(self):
        return [("person", self.stream("isolation"))]

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        if not self.active(ctx.t):
            return Output()
        n, dtype = ctx.graph.num_nodes["person"], ctx.dtype
        c = self.value(ctx, "compliance").to(dtype=dtype, device=ctx.graph.device).expand(n, ctx.replicates)
        u, j = ctx.rng("person").uniform_refined(-2, self.stream("isolation"), dtype) if ctx.stochastic else (None, None)
        complies = ctx.sampler(c, u, j)
        eta = self.value(ctx, "effectiveness").to(dtype=dtype, device=ctx.graph.device)
        return Output(fields={"person.infectiousness_factor": 1.0 - eta * complies})

    def extra_repr(self) -> str:
        return f"name={self.name!r}, start={self.start}, end={self.end}"
