r"""The glue between the supply chain and the epidemic: dose demand, dose arrivals, the depots' allocation.

The vaccine-logistics model (``conf/model/vaccine_logistics.yaml``) runs the
supply chain's :class:`~lpm_graph.models.supply_chain.Stage` for depots,
clinics and people and the epidemic's processes for people; these three
processes are all that joins them.

:class:`DoseDemand` (behaviour)
    every eligible person — not vaccinated, not in any state of ``exclude``
    (the dead) — claims one dose from their clinic: the order

    .. math::

        q_i = e_i - O_i, \qquad e_i = (1 - V_i)\prod_{x \in \text{exclude}} (1 - x_i),

    tops the person's outstanding claim :math:`O_i` up to :math:`e_i`, so a
    clinic's claims are its eligible unvaccinated catchment,
    :math:`D_j = \sum_{i \to j} e_i`.
:class:`Arrivals` (update, between the clinics' stage and the people's)
    the doses reaching each person this step, exactly what the people's
    :class:`~lpm_graph.models.supply_chain.Stage` counts as arrived (and as
    delivered: the doses administered),
    :math:`x_i = P_i[0] + u_i[0]`, written to the field ``person.doses`` that
    the epidemic's :class:`~lpm_graph.models.epidemic.Vaccination` reads
    (``doses: person.doses``, grouped by clinic).
:class:`DoseAllocation` (environment)
    the depots' daily supply :math:`B = \sum_k \kappa_k` (their ``capacity``)
    split over clinics as their orders, :math:`q_j = B\,a_j`, with
    :math:`a` ``uniform`` (:math:`1/C`), ``proportional`` (to the catchment,
    clinic attribute ``population``) or ``logits``: over groups :math:`g` of
    clinics (``grouping``, e.g. districts),
    :math:`a_j = \operatorname{softmax}(\phi + \log s)_{g(j)}\, n_j / n_{g(j)}`
    with :math:`s_g` the groups' population shares and :math:`n` catchments, so
    :math:`\phi = 0` is the proportional allocation; the parameter
    ``<name>.allocation`` (one logit per group, time-varying if asked) is
    what ``task=analyze`` optimises.  When every clinic buys from every depot
    in equal shares, the depots ship exactly these orders.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lpm_graph.core.graph import Requirements
from lpm_graph.core.params import GROUP, ParamSpec
from lpm_graph.core.process import Output, Process, StepContext
from lpm_graph.core.state import FieldSpec, Read
from lpm_graph.errors import ConfigError, PopulationGraphError

__all__ = ["DoseDemand", "Arrivals", "DoseAllocation", "ALLOCATIONS"]

#: the allocations :class:`DoseAllocation` knows
ALLOCATIONS = ("uniform", "proportional", "logits")


def _node_type(value, what: str) -> str:
    if not isinstance(value, str) or not value or "." in value:
        raise ConfigError(f"{what} must be a node type name without dots, got {value!r}")
    return value


class DoseDemand(Process):
    r"""Every eligible person claims one dose: ``<type>.order`` :math:`= e_i - O_i` (module docstring).

    Args:
        node_type (str): the people's node type (with a consuming supply-chain stage). (default: ``"person"``)
        vaccinated (str): the indicator state of the vaccinated. (default: ``"person.V"``)
        exclude (Sequence[str]): indicator states whose members claim nothing, read where a process owns
            them. (default: ``["person.D"]``)
        name (str): process name. (default: ``"dose_demand"``)
    """

    role = "behaviour"
    default_name = "dose_demand"

    def __init__(self, node_type: str = "person", vaccinated: str = "person.V", exclude: Sequence[str] = ("person.D",),
                 name: str | None = None):
        super().__init__(name)
        self.node_type = _node_type(node_type, "DoseDemand.node_type")
        self.vaccinated, self.exclude = str(vaccinated), [str(k) for k in exclude]

    def field_specs(self):
        return [FieldSpec(self.node_type, "order", unit="doses/step", doc="doses claimed from the clinic this step")]

    def reads(self):
        return [f"{self.node_type}.outstanding", self.vaccinated, *(Read(k, optional=True) for k in self.exclude)]

    def eligible(self, state: dict[str, Tensor]) -> Tensor:
        """:math:`e_i = (1 - V_i) \\prod (1 - x_i)`, ``[N, R]``."""
        e = 1.0 - state[self.vaccinated]
        for k in self.exclude:
            if state.get(k) is not None:
                e = e * (1.0 - state[k])
        return e

    def forward(self, ctx: StepContext, state, fields) -> Output:
        claim = self.eligible(state) - state[f"{self.node_type}.outstanding"]
        return Output(fields={f"{self.node_type}.order": claim})


class Arrivals(Process):
    r"""What reaches each node of a receiving stage this step: ``<type>.<target>`` :math:`= P[0] + u[0]`.

    Runs after the suppliers' stage (which writes ``<type>.inbound``) and before the node type's own
    :class:`~lpm_graph.models.supply_chain.Stage` (whose pipeline it reads as it was at the start of the step).

    Args:
        node_type (str): the receiving node type. (default: ``"person"``)
        target (str): the field's name. (default: ``"doses"``)
        name (str): process name. (default: ``"arrivals"``)
    """

    role = "update"
    default_name = "arrivals"

    def __init__(self, node_type: str = "person", target: str = "doses", name: str | None = None):
        super().__init__(name)
        self.node_type = _node_type(node_type, "Arrivals.node_type")
        self.target = _node_type(target, "Arrivals.target")

    def field_specs(self):
        return [FieldSpec(self.node_type, self.target, unit="units", doc="goods arriving this step")]

    def reads(self):
        return [f"{self.node_type}.pipeline", f"{self.node_type}.inbound"]

    def forward(self, ctx: StepContext, state, fields) -> Output:
        arrived = state[f"{self.node_type}.pipeline"][..., 0] + fields[f"{self.node_type}.inbound"][..., 0]
        return Output(fields={f"{self.node_type}.{self.target}": arrived})


class DoseAllocation(Process):
    r"""The depots' daily supply split over clinics as their orders (module docstring).

    Args:
        allocation (str): ``"uniform"``, ``"proportional"`` (to ``population``) or ``"logits"`` (the
            parameter ``<name>.allocation`` over the groups of ``grouping``). (default: ``"proportional"``)
        node_type (str): the clinics' node type. (default: ``"clinic"``)
        supplier_type (str): the depots' node type; their ``capacity`` attribute summed is the daily supply.
            (default: ``"depot"``)
        capacity (str): the depots' capacity attribute (doses per step). (default: ``"capacity"``)
        population (str): the clinics' catchment attribute. (default: ``"population"``)
        grouping (str): the grouping of clinics the logits are over (``model.groupings``). (default:
            ``"district"``)
        name (str): process name and parameter namespace. (default: ``"allocation"``)
    """

    role = "environment"
    default_name = "allocation"

    def __init__(self, allocation: str = "proportional", node_type: str = "clinic", supplier_type: str = "depot",
                 capacity: str = "capacity", population: str = "population", grouping: str = "district",
                 name: str | None = None):
        super().__init__(name)
        if allocation not in ALLOCATIONS:
            raise ConfigError(f"DoseAllocation.allocation must be one of {list(ALLOCATIONS)}, got {allocation!r}")
        self.allocation = allocation
        self.node_type = _node_type(node_type, "DoseAllocation.node_type")
        self.supplier_type = _node_type(supplier_type, "DoseAllocation.supplier_type")
        self.capacity_attribute, self.population, self.grouping = capacity, population, grouping
        self._base: dict = {}

    def field_specs(self):
        return [FieldSpec(self.node_type, "order", unit="doses/step", doc="doses ordered from the depots")]

    def param_specs(self):
        if self.allocation != "logits":
            return []
        return [ParamSpec("allocation", "real", (GROUP,), scalar_ok=False, grouping=self.grouping, default=0.0,
                          doc="logits over groups of clinics relative to their population shares (0: "
                              "proportional)")]

    def requirements(self) -> Requirements:
        req = Requirements()
        req.need(self.supplier_type, self.capacity_attribute)
        req.need(self.node_type, *([self.population] if self.allocation != "uniform" else []))
        return req

    def check_graph(self, graph) -> None:
        cap = graph.attribute(self.supplier_type, self.capacity_attribute)
        if not bool(torch.isfinite(cap).all()) or bool((cap < 0).any()):
            raise PopulationGraphError(f"DoseAllocation ({self.name}): {self.supplier_type}.{self.capacity_attribute} "
                                       "must be finite and >= 0: it is the daily supply of doses split over clinics")
        if self.allocation != "uniform" and bool((graph.attribute(self.node_type, self.population) < 0).any()):
            raise PopulationGraphError(f"DoseAllocation ({self.name}): {self.node_type}.{self.population} must be "
                                       ">= 0 (people in each clinic's catchment)")

    def _supply_and_population(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        key = (id(ctx.graph.data), ctx.graph.device, ctx.dtype)
        if key not in self._base:
            supply = ctx.graph.attribute(self.supplier_type, self.capacity_attribute).to(ctx.dtype).sum()
            n = ctx.graph.num_nodes[self.node_type]
            pop = (torch.ones(n, dtype=ctx.dtype, device=ctx.graph.device) if self.allocation == "uniform"
                   else ctx.graph.attribute(self.node_type, self.population).to(ctx.dtype))
            self._base = {key: (supply, pop)}
        return self._base[key]

    def shares(self, ctx: StepContext) -> Tensor:
        """:math:`a_j`, ``[C]``, summing to one."""
        supply, pop = self._supply_and_population(ctx)
        total = pop.sum().clamp_min(torch.finfo(pop.dtype).tiny)
        if self.allocation != "logits":
            return pop / total
        group = ctx.graph.group_index(self.grouping)
        G = len(ctx.graph.group_labels(self.grouping))
        per_group = torch.zeros(G, dtype=pop.dtype, device=pop.device).index_add(0, group, pop)
        weight = torch.softmax(self.value(ctx, "allocation").to(pop.dtype) + torch.log(
            (per_group / total).clamp_min(1e-30)), 0)
        within = torch.where(per_group[group] > 0, pop / per_group[group].clamp_min(1e-30), torch.zeros_like(pop))
        return weight[group] * within

    def forward(self, ctx: StepContext, state, fields) -> Output:
        supply, _ = self._supply_and_population(ctx)
        q = (supply * ctx.dt * self.shares(ctx)).unsqueeze(1).expand(-1, ctx.replicates)
        return Output(fields={f"{self.node_type}.order": q})

    def extra_repr(self) -> str:
        return f"name={self.name!r}, allocation={self.allocation!r}, node_type={self.node_type!r}"
