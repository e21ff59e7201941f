r"""Interactions :math:`\sum_j m_{ij}`: the force of infection on each person.

An interaction maps the infectiousness every person emits (field
``person.infectiousness``, from :class:`~lpm_graph.models.epidemic.Infectiousness`)
to the force of infection :math:`\lambda_i` it exerts (field
``person.force_of_infection``, summed over interactions), using the
:class:`~lpm_graph.nn.WeightedSum` layer.  Every rate that depends on a node
(contact intensity of a venue type, closure of a venue type,
frequency-dependent normalisation) is applied per node outside the sparse
sums, so each interaction is two (venues) or one (contacts) sparse products
per step and autograd keeps nothing per edge.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lpm_graph.core.graph import Requirements
from lpm_graph.core.params import ParamSpec
from lpm_graph.core.process import Output, Process, StepContext
from lpm_graph.core.state import FieldSpec, Read
from lpm_graph.errors import ConfigError, PopulationGraphError
from lpm_graph.nn import ContactInfection, VenueInfection, VenuePressure

__all__ = ["VenueTransmission", "ContactTransmission", "contact_scale"]

MEMBER_OF = "member_of"


def contact_scale(scope: str) -> str:
    """The field that scales the contact of a venue type or contact relation (closures write it)."""
    return f"{scope}.contact_scale"


class _Transmission(Process):
    role = "interaction"

    def __init__(self, source: str, target: str, name: str | None):
        super().__init__(name)
        self.source, self.target = source, target

    def field_specs(self):
        scope, name = self.target.split(".", 1)
        return [FieldSpec(scope, name, combine="sum", unit="1/day", doc="force of infection")]


class VenueTransmission(_Transmission):
    r"""Transmission inside venues, for all venue types at once.

    .. math::

        \lambda_i = \sum_{v \ni i} w_{vi}\;
            \beta_{\tau(v)}\, e_{\tau(v)}(t)\, c_v
            \sum_{j \in v} w_{jv}\, x_j,
        \qquad c_v = \Big(\sum_{j\in v} w_{jv}\Big)^{-1} \text{ if normalize}

    with :math:`\tau(v)` the type of venue :math:`v`, :math:`\beta_\tau` the
    parameter ``beta_<type>`` and :math:`e_\tau(t)` the field
    ``<type>.contact_scale`` (1 without a writer; closures write it).  With
    ``normalize`` mixing is frequency-dependent: a person meets a fixed
    amount of contact per venue, shared among members.  The venue types'
    membership edges ``('person', 'member_of', <type>)`` are stacked into one
    bipartite layout, so the channel is two sparse products per step.

    Args:
        venue_types (Sequence[str]): venue node types covered; each needs a
            parameter ``beta_<type>``.
        normalize (bool): divide by venue size. (default: ``True``)
        source (str): the infectiousness field read. (default: ``"person.infectiousness"``)
        target (str): the force field added to. (default: ``"person.force_of_infection"``)
        name (str): the process name. (default: ``"transmission"``)
    """

    default_name = "transmission"

    def __init__(self, venue_types: Sequence[str] = ("household", "school", "workplace", "community"),
                 normalize: bool = True, source: str = "person.infectiousness",
                 target: str = "person.force_of_infection", name: str | None = None):
        super().__init__(source, target, name)
        self.venue_types = list(venue_types)
        if not self.venue_types:
            raise ConfigError("VenueTransmission.venue_types is empty; list the venue node types it covers")
        self.normalize = bool(normalize)
        self.host = source.split(".", 1)[0]
        self.pressure = VenuePressure()
        self.infection = VenueInfection()

    @property
    def edge_types(self) -> list[tuple[str, str, str]]:
        return [(self.host, MEMBER_OF, vt) for vt in self.venue_types]

    def param_specs(self):
        return [ParamSpec(f"beta_{vt}", "nonnegative", unit="1/day", doc=f"contact intensity in {vt} venues")
                for vt in self.venue_types]

    def reads(self):
        return [self.source, *(Read(contact_scale(vt), optional=True, default=1.0) for vt in self.venue_types)]

    def requirements(self) -> Requirements:
        return Requirements(stacks={frozenset(self.edge_types)})

    def check_graph(self, graph) -> None:
        present = [et[2] for et in graph.data.edge_types if et[0] == self.host and et[1] == MEMBER_OF]
        extra = [vt for vt in present if vt not in self.venue_types]
        if extra:
            raise PopulationGraphError(
                f"VenueTransmission covers venue types {self.venue_types} but the population graph also has "
                f"{extra} (no beta for them; add them to venue_types and model.params.{self.name})")

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        x = fields[self.source]
        stack = ctx.graph.stack(self.edge_types)
        adj = stack.adjacency
        types = [et[2] for et in stack.edge_types]
        betas = torch.stack([self.value(ctx, f"beta_{vt}") * fields.get(contact_scale(vt), 1.0) for vt in types])
        venue_rate = betas.to(x.dtype).index_select(0, stack.type_index)
        if self.normalize:
            venue_rate = venue_rate * stack.inverse_weight.to(x.dtype)
        p = self.pressure(x, adj, scale=venue_rate)
        return Output(fields={self.target: self.infection(p, adj.T)})

    def extra_repr(self) -> str:
        return f"name={self.name!r}, venue_types={self.venue_types}, normalize={self.normalize}"


class ContactTransmission(_Transmission):
    r"""Transmission along one explicit contact edge type.

    .. math::

        \lambda_i = \beta\, e_{r}(t) \sum_{j \to i} w_{ji}\, x_j

    with :math:`e_r(t)` the field ``<relation>.contact_scale`` (1 without a
    writer).  Undirected contacts are stored both ways.

    Args:
        edge_type (Sequence[str]): the contact edge type, e.g.
            ``('person', 'contact', 'person')``; any source and destination
            node types.
        source (str), target (str): fields read and added to.
        name (str): the process name; its parameter ``beta`` is the
            transmission rate per unit weight. (default: the relation)
    """

    def __init__(self, edge_type: Sequence[str] = ("person", "contact", "person"),
                 source: str = "person.infectiousness", target: str = "person.force_of_infection",
                 name: str | None = None):
        self.edge_type = tuple(edge_type)
        if len(self.edge_type) != 3 or not all(isinstance(x, str) for x in self.edge_type):
            raise ConfigError(f"ContactTransmission.edge_type must be [src, relation, dst], got {list(edge_type)}")
        self.default_name = self.edge_type[1]
        super().__init__(source, target, name)
        self.infection = ContactInfection()

    def param_specs(self):
        return [ParamSpec("beta", "nonnegative", unit="1/(day * edge weight)",
                          doc=f"transmission rate per unit weight of {self.edge_type[1]} contacts")]

    def reads(self):
        return [self.source, Read(contact_scale(self.edge_type[1]), optional=True, default=1.0)]

    def requirements(self) -> Requirements:
        return Requirements(edge_types={self.edge_type})

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        lam = self.infection(fields[self.source], ctx.graph.layout(self.edge_type, ctx.t))
        scale = fields.get(contact_scale(self.edge_type[1]), 1.0)
        return Output(fields={self.target: lam * (self.value(ctx, "beta") * scale)})

    def extra_repr(self) -> str:
        return f"name={self.name!r}, edge_type={self.edge_type}"
