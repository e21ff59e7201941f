r"""Environment functions :math:`e(t) = g(s(t), e, \theta, t)`: interventions.

An intervention is an ``nn.Module`` called at the start of every step as
``forward(t, state, params, env, ctx) -> (env, state)``: it returns an updated
:class:`~lpm_graph.dynamics.transmission.Environment` and, if it keeps state
of its own (who is vaccinated), the state with its entries updated.  The
model applies the configured interventions in order, from a neutral
environment.  ``ctx`` carries ``graph``, ``rng``, ``sampler`` and ``dt``.

Effects may be numbers or names of parameters (``efficacy: vaccine_efficacy``)
so that they can be learned, calibrated or optimised like any other
:math:`\theta`.  Random decisions (who is vaccinated today, who complies with
isolation) come from the counter-based generator, so a scenario and its
baseline share every other random number.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lpm_graph.dynamics.transmission import Environment

__all__ = ["Intervention", "VenueClosure", "Vaccination", "Isolation"]


def _config_error(msg: str):
    from lpm_graph.data.validate import ConfigError

    return ConfigError(msg)


def _window(name: str, start: int, end: int | None) -> tuple[int, int | None]:
    if int(start) < 0 or (end is not None and int(end) < int(start)):
        raise _config_error(f"{name} needs 0 <= start <= end, got start={start}, end={end}")
    return int(start), None if end is None else int(end)


class Intervention(nn.Module):
    """Base: an active window ``[start, end)`` and effects that are numbers or parameter names."""

    def __init__(self, start: int = 0, end: int | None = None):
        super().__init__()
        self.start, self.end = _window(type(self).__name__, start, end)
        self.param_domains: dict[str, str] = {}

    def active(self, t: int) -> bool:
        return self.start <= t and (self.end is None or t < self.end)

    def _effect(self, name: str, value, domain: str):
        """Register a parameter-valued effect; check a numeric one."""
        from lpm_graph.params import check_domain

        if isinstance(value, str):
            self.param_domains[value] = domain
        else:
            check_domain(name, value, domain, where=type(self).__name__)
        return value

    @staticmethod
    def _value(value, params, like: Tensor) -> Tensor:
        v = params[value] if isinstance(value, str) else torch.as_tensor(value)
        return v.to(dtype=like.dtype, device=like.device)

    def initial_state(self, graph, params, rng, sampler, dtype) -> dict[str, Tensor]:
        """State entries this intervention adds (none by default)."""
        return {}


class VenueClosure(Intervention):
    r"""Scale the contact intensity of a venue type (or contact relation) over a window.

    .. math::

        e_\tau(t) \leftarrow e_\tau(t)\cdot
        \begin{cases} f & t_0 \le t < t_1 \\ 1 & \text{otherwise} \end{cases}

    Args:
        venue_type (str): venue node type (``"school"``) or contact relation
            name (``"contact"``).
        start (int): first step of the closure, inclusive.
        end (int): step at which it ends, exclusive; ``None`` for never.
        factor (float | str): remaining fraction of contact in ``[0, 1]``
            (0 closes the venues), or the name of a parameter. (default: ``0.0``)
    """

    def __init__(self, venue_type: str, start: int, end: int | None = None, factor: float | str = 0.0):
        super().__init__(start, end)
        self.venue_type = venue_type
        self.factor = self._effect("factor", factor, "probability")

    def forward(self, t: int, state, params, env: Environment, ctx=None):
        if not self.active(t):
            return env, state
        factor = params[self.factor] if isinstance(self.factor, str) else self.factor
        return env.with_scale(self.venue_type, factor), state

    def extra_repr(self) -> str:
        return f"venue_type={self.venue_type!r}, start={self.start}, end={self.end}, factor={self.factor!r}"


class Vaccination(Intervention):
    r"""A vaccination campaign with a daily budget allocated across age groups.

    Each step of the window, a fraction :math:`b` of the population
    (``daily_fraction``) is vaccinated, split over age groups by the
    allocation :math:`a_g` (:math:`\sum_g a_g = 1`).  Doses go to
    not-yet-vaccinated people of the group regardless of infection status
    (no testing), each with probability

    .. math::

        q_g = \min\Big(1,\; \frac{b\,N\,a_g\,\Delta t}{\sum_{i \in g} (1 - V_i)}\Big),

    and a vaccinated person's susceptibility is multiplied by
    :math:`1 - \varepsilon` (``efficacy``, leaky protection).  State ``V``
    (``[N, R]``) marks the vaccinated; draws use stream ``vaccination``.

    With ``priority`` (age groups in order, e.g. oldest first) instead of an
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

    Args:
        daily_fraction (float): doses per day as a fraction of the population.
        allocation (Sequence[float] | str, optional): share per age group
            (normalised), or the name of a parameter holding logits that are
            soft-maxed (learnable allocation for policy optimisation);
            ``None`` gives each group a share equal to its population share.
        efficacy (float | str): reduction of susceptibility in [0, 1]. (default: ``0.9``)
        start (int), end (int): the campaign window ``[start, end)``.
        priority (Sequence[int], optional): age-group indices in order of
            priority (``[8, 7, ..., 0]``: oldest first); excludes ``allocation``.
        spill_over (bool): pass doses a group cannot use on to the other
            groups by their shares. (default: ``False``)
    """

    def __init__(self, daily_fraction: float, allocation: Sequence[float] | str | None = None,
                 efficacy: float | str = 0.9, start: int = 0, end: int | None = None,
                 priority: Sequence[int] | None = None, spill_over: bool = False):
        super().__init__(start, end)
        from lpm_graph.params import check_domain

        check_domain("daily_fraction", daily_fraction, "probability", where="Vaccination")
        self.daily_fraction = float(daily_fraction)
        if isinstance(allocation, str):
            self.param_domains[allocation] = "real"
        elif allocation is not None:
            check_domain("allocation", list(allocation), "nonnegative", where="Vaccination")
            if sum(allocation) <= 0:
                raise _config_error("Vaccination.allocation must have a positive sum")
            allocation = [float(a) for a in allocation]
        self.allocation = allocation
        if priority is not None:
            if allocation is not None:
                raise _config_error("Vaccination takes either allocation or priority, not both")
            priority = [int(g) for g in priority]
            if not priority or min(priority) < 0 or len(set(priority)) != len(priority):
                raise _config_error(f"Vaccination.priority must list distinct age-group indices >= 0, got {priority}")
        self.priority = priority
        self.spill_over = bool(spill_over)
        self.efficacy = self._effect("efficacy", efficacy, "probability")

    def initial_state(self, graph, params, rng, sampler, dtype) -> dict[str, Tensor]:
        r = rng.replicates if rng is not None else 1
        return {"V": torch.zeros(graph.num_people, r, dtype=dtype, device=graph.uid.device)}

    def shares(self, params, graph, like: Tensor) -> Tensor:
        """The allocation over age groups, ``[G]``, summing to one."""
        G = graph.num_age_groups
        if self.allocation is None:
            counts = torch.bincount(graph.age_group, minlength=G).to(like.dtype)
            return counts / counts.sum()
        if isinstance(self.allocation, str):
            logits = params[self.allocation].to(like.dtype)
            if logits.shape != (G,):
                raise _config_error(f"Vaccination.allocation parameter {self.allocation!r} must hold {G} logits "
                                    f"(one per age group), got shape {tuple(logits.shape)}")
            return torch.softmax(logits, 0)
        a = torch.as_tensor(self.allocation, dtype=like.dtype, device=like.device)
        if a.numel() != G:
            raise _config_error(f"Vaccination.allocation has {a.numel()} shares but the model has {G} age groups")
        return a / a.sum()

    def group_doses(self, params, graph, remaining: Tensor, dt: float) -> Tensor:
        """Doses per age group today, ``[G, R]`` (or ``[G, 1]``), from the unvaccinated counts ``remaining``."""
        budget = self.daily_fraction * graph.num_people * dt
        if self.priority is None:
            shares = self.shares(params, graph, remaining).unsqueeze(1)
            if not self.spill_over:
                return budget * shares
            doses = torch.minimum(budget * shares, remaining)
            for _ in range(graph.num_age_groups - 1):
                spare = remaining - doses
                weight = shares * (spare > 0).to(remaining.dtype)
                total = weight.sum(0, keepdim=True)
                leftover = (budget - doses.sum(0, keepdim=True)).clamp_min(0.0)
                extra = torch.where(total > 0, leftover * weight / total.clamp_min(1e-30), torch.zeros_like(weight))
                doses = doses + torch.minimum(extra, spare)
            return doses
        G = graph.num_age_groups
        if max(self.priority) >= G:
            raise _config_error(f"Vaccination.priority names age group {max(self.priority)} but the model has "
                                f"{G} age groups (0..{G - 1})")
        order = torch.as_tensor(self.priority, device=remaining.device)
        r = remaining[order]
        before = torch.cumsum(r, 0) - r
        doses = torch.zeros_like(remaining)
        return doses.index_copy(0, order, torch.minimum(r, (budget - before).clamp_min(0.0)))

    def forward(self, t: int, state, params, env: Environment, ctx):
        V = state["V"]
        if self.active(t):
            graph = ctx.graph
            unvaccinated = 1.0 - V
            remaining = torch.zeros(graph.num_age_groups, V.size(1), dtype=V.dtype,
                                    device=V.device).index_add(0, graph.age_group, unvaccinated)
            doses = self.group_doses(params, graph, remaining, ctx.dt)
            q_group = torch.where(remaining > 0, doses / remaining.clamp_min(1e-12),
                                  torch.zeros((), dtype=V.dtype)).clamp(max=1.0)
            q = q_group[graph.age_group]
            u = ctx.rng.uniform(t, "vaccination", V.dtype) if ctx.sampler.stochastic else None
            V = V + unvaccinated * ctx.sampler(q, u)
            state = {**state, "V": V}
        efficacy = self._value(self.efficacy, params, V)
        return env.with_susceptibility(1.0 - efficacy * V), state

    def extra_repr(self) -> str:
        return (f"daily_fraction={self.daily_fraction}, allocation={self.allocation!r}, "
                f"priority={self.priority}, spill_over={self.spill_over}, efficacy={self.efficacy!r}, "
                f"start={self.start}, end={self.end}")


class Isolation(Intervention):
    r"""Isolation of symptomatic cases: compliant infectious people transmit less.

    A fixed subset of people complies (each with probability ``compliance``,
    drawn once per person from stream ``isolation``); while the window is
    active, a compliant person's infectiousness is multiplied by
    :math:`1 - \eta` (``effectiveness``).  Infectiousness matters only while
    a person is infectious, so this acts on symptomatic (infectious) cases.
    In expected mode the factor is :math:`1 - \eta c`.

    Args:
        compliance (float | str): probability of complying. (default: ``0.5``)
        effectiveness (float | str): reduction of transmission while isolating. (default: ``0.8``)
        start (int), end (int): the window ``[start, end)``.
    """

    def __init__(self, compliance: float | str = 0.5, effectiveness: float | str = 0.8, start: int = 0,
                 end: int | None = None):
        super().__init__(start, end)
        self.compliance = self._effect("compliance", compliance, "probability")
        self.effectiveness = self._effect("effectiveness", effectiveness, "probability")

    def forward(self, t: int, state, params, env: Environment, ctx):
        if not self.active(t):
            return env, state
        like = state["S"]
        c = self._value(self.compliance, params, like).expand_as(like)
        u = ctx.rng.uniform(-2, "isolation", like.dtype) if ctx.sampler.stochastic else None
        complies = ctx.sampler(c, u)
        eta = self._value(self.effectiveness, params, like)
        return env.with_infectiousness(1.0 - eta * complies), state

    def extra_repr(self) -> str:
        return (f"compliance={self.compliance!r}, effectiveness={self.effectiveness!r}, "
                f"start={self.start}, end={self.end}")
