r"""Rule-based behaviour: thresholds and logistic responses to what an agent observes.

For decision :math:`d` of person :math:`i`, with :math:`\pi_{i\tau}` the
prevalence it observes in its venues of type :math:`\tau`
(:class:`~lpm_graph.behavior.VenuePrevalence`), :math:`s_i` its own state
(infectious or not; ``own``), and :math:`A(t)` the announced policy
(``policy``, a field in [0, 1], 0 when nothing is announced):

.. math::

    r_{d\tau,i} &= \sigma\big(k_{d\tau}\,(\pi_{i\tau} - \theta_{d\tau})\big) \\
    p_{d,i} &= 1 - \big(1 - c^{\mathrm{own}}_d\, s_i\big)
                   \big(1 - c^{\mathrm{policy}}_d\, A(t)\big)
                   \prod_\tau \big(1 - m_{d\tau}\, r_{d\tau,i}\big)

a logistic response of slope :math:`k` (per unit of prevalence) around a
threshold :math:`\theta` in each venue type, of at most :math:`m`, combined
with the response to one's own infection and the compliance with an
announced policy as independent reasons.  All are parameters of the
process, by venue type where they are per type
(``<name>.<decision>_slope``, ``_threshold``, ``_max`` ``[types]``;
``_own``, ``_policy`` scalars), learnable and bounded like any other.

A decision listed in ``inverse`` is one the reasons argue *against*: its
probability is :math:`1 - p_{d,i}`, the probability of no reason (a person
spends its whole plan, :math:`s_i = 1 - p`, unless the unemployment it sees
among its firm's workers makes it cut; a retailer places its whole order
unless its stock is high).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lpm_graph.behavior.base import Behavior
from lpm_graph.core.params import ParamSpec
from lpm_graph.core.process import StepContext
from lpm_graph.core.state import Read
from lpm_graph.errors import ConfigError

__all__ = ["RuleBehavior", "logistic_response"]


def _entry(value: Tensor, i: int) -> Tensor:
    """Entry ``i`` of a per-type parameter (a scalar applies to every type)."""
    return value if value.dim() == 0 else value[i]


def logistic_response(prevalence: Tensor, slope: Tensor, threshold: Tensor) -> Tensor:
    r""":math:`\sigma(k(\pi - \theta))`."""
    return torch.sigmoid(slope * (prevalence - threshold))


class RuleBehavior(Behavior):
    """Threshold and logistic rules on observed prevalence, own state and announced policy (module docstring).

    Args:
        decisions (Sequence[str]): the decisions, e.g. ``[stays_home, avoids_community, masks]``.
        venue_types (Sequence[str]): the venue types whose prevalence is read. (default: household, school,
            workplace)
        prevalence (str): prefix of the prevalence fields, ``<prefix>_<type>``. (default: ``"person.prevalence"``)
        own (str, optional): the state of one's own that triggers ``_own`` (read if a process owns it).
            (default: ``"person.I"``)
        policy (str, optional): the announced policy field (read as optional, 0 without a writer).
            (default: ``"policy.stay_home"``)
        slope, threshold, maximum, own_response, compliance (float): defaults of the parameters.
        inverse (Sequence[str]): decisions whose probability is ``1 - p``, that the reasons argue against
            (``spends``, ``reorders``). (default: none)
        node_type (str), grouping (str), name (str): as :class:`~lpm_graph.behavior.Behavior`. (default name
            ``"rules"``)
    """

    default_name = "rules"

    def __init__(self, decisions: Sequence[str] = ("stays_home",),
                 venue_types: Sequence[str] = ("household", "school", "workplace"),
                 prevalence: str = "person.prevalence", own: str | None = "person.I",
                 policy: str | None = "policy.stay_home", slope: float = 50.0, threshold: float = 0.05,
                 maximum: float = 0.5, own_response: float = 0.5, compliance: float = 0.5,
                 inverse: Sequence[str] = (), node_type: str = "person", grouping: str | None = "age",
                 name: str | None = None):
        super().__init__(decisions, node_type, grouping, name)
        self.inverse = [str(d) for d in inverse]
        unknown = [d for d in self.inverse if d not in self.decisions]
        if unknown:
            raise ConfigError(f"RuleBehavior.inverse names {unknown}, which are not among its decisions "
                              f"{self.decisions}")
        self.venue_types = [str(v) for v in venue_types]
        self.prevalence, self.own, self.policy = prevalence, own, policy
        self.defaults = {"slope": float(slope), "threshold": float(threshold), "max": float(maximum),
                         "own": float(own_response), "policy": float(compliance)}

    def param_specs(self):
        T, d0 = len(self.venue_types), self.defaults
        specs = []
        for d in self.decisions:
            if T:
                specs += [
                    ParamSpec(f"{d}_slope", "real", (T,), default=d0["slope"], unit="1/share",
                              doc=f"slope of the logistic response of {d} to prevalence, per venue type"),
                    ParamSpec(f"{d}_threshold", "probability", (T,), default=d0["threshold"], unit="share",
                              doc=f"prevalence at which the response of {d} is half its maximum, per venue type"),
                    ParamSpec(f"{d}_max", "probability", (T,), default=d0["max"], unit="probability",
                              doc=f"largest response of {d} to prevalence, per venue type")]
            if self.own:
                specs.append(ParamSpec(f"{d}_own", "probability", default=d0["own"], unit="probability",
                                       doc=f"probability of {d} when {self.own} (own state)"))
            if self.policy:
                specs.append(ParamSpec(f"{d}_policy", "probability", default=d0["policy"], unit="probability",
                                       doc=f"compliance of {d} with the announced {self.policy}"))
        return specs

    def prevalence_field(self, venue_type: str) -> str:
        return f"{self.prevalence}_{venue_type}"

    def reads(self):
        out = [self.prevalence_field(vt) for vt in self.venue_types]
        if self.own:
            out.append(Read(self.own, optional=True))
        if self.policy:
            out.append(Read(self.policy, optional=True, default=0.0))
        return out

    def decide(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> dict[str, Tensor]:
        pis = [fields[self.prevalence_field(vt)] for vt in self.venue_types]
        like = pis[0] if pis else state[next(iter(state))]
        own = state.get(self.own) if self.own else None
        announced = fields.get(self.policy) if self.policy else None
        out = {}
        for d in self.decisions:
            stay = torch.ones_like(like)   # probability of no reason to decide d
            for i, pi in enumerate(pis):
                r = logistic_response(pi, _entry(self.value(ctx, f"{d}_slope"), i),
                                      _entry(self.value(ctx, f"{d}_threshold"), i))
                stay = stay * (1.0 - _entry(self.value(ctx, f"{d}_max"), i) * r)
            if own is not None:
                stay = stay * (1.0 - self.value(ctx, f"{d}_own") * own)
            if announced is not None:
                stay = stay * (1.0 - self.value(ctx, f"{d}_policy") * announced)
            out[d] = stay if d in self.inverse else 1.0 - stay
        return out

    def extra_repr(self) -> str:
        return f"name={self.name!r}, decisions={self.decisions}, venue_types={self.venue_types}"
