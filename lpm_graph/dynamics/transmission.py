r"""Interaction channels :math:`\sum_j m_{ij}`: force of infection per person.

A channel maps the infectiousness of every person to the force of infection
:math:`\lambda_i` it exerts, using the PyG layers of :mod:`lpm_graph.nn`.  All
rates that depend on a node (contact intensity of a venue type, closure of a
venue type, frequency-dependent normalisation) are applied per node outside
the sparse sums, so each channel is two (venues) or one (contacts) sparse
products per step and autograd keeps nothing per edge.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lpm_graph.nn import ContactInfection, VenueInfection, VenuePressure

__all__ = ["VenueTransmission", "ContactTransmission", "Environment"]


class Environment:
    r"""The environment :math:`e(t)` seen by the interaction channels and the disease.

    ``scale[name]`` multiplies the contact intensity of a venue type or a
    contact edge relation (1 when absent; e.g. 0 while schools are closed);
    ``susceptibility`` and ``infectiousness`` multiply every person's
    susceptibility and infectiousness (scalars or ``[N, R]``, e.g. after
    vaccination or isolation).  Environment modules return updated copies;
    nothing is modified in place.
    """

    def __init__(self, scale: dict[str, Tensor | float] | None = None, susceptibility: Tensor | float = 1.0,
                 infectiousness: Tensor | float = 1.0):
        self.scale = dict(scale or {})
        self.susceptibility = susceptibility
        self.infectiousness = infectiousness

    def scale_of(self, name: str) -> Tensor | float:
        return self.scale.get(name, 1.0)

    def _replace(self, **changes) -> "Environment":
        fields = dict(scale=self.scale, susceptibility=self.susceptibility, infectiousness=self.infectiousness)
        fields.update(changes)
        return Environment(**fields)

    def with_scale(self, name: str, factor: Tensor | float) -> "Environment":
        scale = dict(self.scale)
        scale[name] = self.scale_of(name) * factor
        return self._replace(scale=scale)

    def with_susceptibility(self, factor: Tensor | float) -> "Environment":
        return self._replace(susceptibility=self.susceptibility * factor)

    def with_infectiousness(self, factor: Tensor | float) -> "Environment":
        return self._replace(infectiousness=self.infectiousness * factor)


class VenueTransmission(nn.Module):
    r"""Transmission inside venues, for all venue types at once.

    .. math::

        \lambda_i = \sum_{v \ni i} w_{vi}\;
            \beta_{\tau(v)}\, e_{\tau(v)}(t)\, c_v
            \sum_{j \in v} w_{jv}\, x_j,
        \qquad c_v = \Big(\sum_{j\in v} w_{jv}\Big)^{-1} \text{ if normalize}

    with :math:`\tau(v)` the type of venue :math:`v`, :math:`\beta_\tau` the
    parameter ``beta_<type>`` and :math:`e_\tau(t)` the environment's scale
    for the type (closures).  With ``normalize`` mixing is frequency-dependent:
    a person meets a fixed amount of contact per venue, shared among members.

    Args:
        venue_types (Sequence[str]): venue node types this channel covers;
            each needs a parameter ``beta_<type>``.
        normalize (bool): divide by venue size. (default: ``True``)
    """

    def __init__(self, venue_types: Sequence[str] = ("household", "school", "workplace", "community"),
                 normalize: bool = True):
        super().__init__()
        self.venue_types = list(venue_types)
        self.normalize = bool(normalize)
        self.pressure = VenuePressure()
        self.infection = VenueInfection()
        self.param_domains = {f"beta_{vt}": "nonnegative" for vt in self.venue_types}

    def check_graph(self, graph) -> None:
        from lpm_graph.data.validate import PopulationGraphError

        missing = [vt for vt in self.venue_types if vt not in graph.venue_types]
        extra = [vt for vt in graph.venue_types if vt not in self.venue_types]
        if missing or extra:
            raise PopulationGraphError(
                f"VenueTransmission covers venue types {self.venue_types} but the population graph has "
                f"{graph.venue_types}: " + (f"missing {missing} " if missing else "")
                + (f"not covered {extra} (no beta for them; add them to venue_types and model.params)" if extra else ""))

    def forward(self, x: Tensor, graph, params, env: Environment, t: int) -> Tensor:
        adj = graph.venue_adjacency(t)
        betas = torch.stack([params[f"beta_{vt}"] * env.scale_of(vt) for vt in graph.venue_types])
        venue_rate = betas.to(x.dtype).index_select(0, graph.venue_type_index)
        if self.normalize:
            venue_rate = venue_rate * graph.venue_inv_size.to(x.dtype)
        p = self.pressure(x, adj, venue_scale=venue_rate)
        return self.infection(p, adj.T)

    def extra_repr(self) -> str:
        return f"venue_types={self.venue_types}, normalize={self.normalize}"


class ContactTransmission(nn.Module):
    r"""Transmission along an explicit person → person contact edge type.

    .. math::

        \lambda_i = \beta\, e_{r}(t) \sum_{j \to i} w_{ji}\, x_j

    Args:
        edge_type (Sequence[str]): the contact edge type, e.g.
            ``('person', 'contact', 'person')``.
        beta (str): name of its transmission-rate parameter per unit weight.
            (default: ``"beta_contact"``)
    """

    def __init__(self, edge_type: Sequence[str] = ("person", "contact", "person"), beta: str = "beta_contact"):
        super().__init__()
        self.edge_type = tuple(edge_type)
        if len(self.edge_type) != 3 or self.edge_type[0] != "person" or self.edge_type[2] != "person":
            from lpm_graph.data.validate import ConfigError

            raise ConfigError(f"ContactTransmission.edge_type must be ('person', <relation>, 'person'), "
                              f"got {self.edge_type}")
        self.beta = beta
        self.infection = ContactInfection()
        self.param_domains = {beta: "nonnegative"}

    def check_graph(self, graph) -> None:
        graph.contact_adjacency(self.edge_type)

    def forward(self, x: Tensor, graph, params, env: Environment, t: int) -> Tensor:
        lam = self.infection(x, graph.contact_adjacency(self.edge_type, t))
        return lam * (params[self.beta] * env.scale_of(self.edge_type[1]))

    def extra_repr(self) -> str:
        return f"edge_type={self.edge_type}, beta={self.beta!r}"
