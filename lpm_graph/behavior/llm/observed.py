r"""What agents observe: a local mean of a state over the venues they belong to, as a field.

:class:`VenueMean` is an environment process that writes, for every node of
the source's type, the mean of a state over the members of its venues of one
type — e.g. ``person.local_prevalence``, the share infectious in a person's
community — for a behaviour to read and bin (:class:`~.process.LLMArchetypes`
variables ``{source: person.local_prevalence, bins: [...]}``):

.. math::

    \bar x_v = \frac{(A x)_v}{(A \mathbf 1)_v}, \qquad
    y_i = \frac{(A^\top \bar x)_i}{(A^\top \mathbf 1)_i}

over the membership layout ``A`` (``[V, N]``, the membership weights) of
``(node type, relation, venue type)``: two sparse products a step; 0 for a
node without venues.  The observed value is a constant to autograd (the
source is detached): it is what an agent sees, binned into a prompt's labels.
"""
from __future__ import annotations

import torch

from lpm_graph.core.graph import Requirements
from lpm_graph.core.process import Output, Process
from lpm_graph.core.state import FieldSpec
from lpm_graph.errors import ConfigError
from lpm_graph.nn import spmm

__all__ = ["VenueMean"]


class VenueMean(Process):
    """The mean of ``source`` over the members of each node's ``venue_type`` venues, as the field ``field``.

    Args:
        source (str): an indicator or continuous state, ``<node type>.<name>`` (``person.I``).
        venue_type (str): the venues (``community``).
        field (str): the field written, ``<node type>.<name>``. (default: ``<node type>.local_<name>``)
        relation (str): the membership relation. (default: ``"member_of"``)
        name (str): the process name. (default: ``"local_mean"``)
    """

    role = "environment"
    default_name = "local_mean"

    def __init__(self, source: str = "person.I", venue_type: str = "community", field: str | None = None,
                 relation: str = "member_of", name: str | None = None):
        super().__init__(name)
        if "." not in source:
            raise ConfigError(f"VenueMean.source must be '<node type>.<name>', got {source!r}")
        self.source = source
        node_type, local = source.split(".", 1)
        self.field = field or f"{node_type}.local_{local}"
        if self.field.split(".", 1)[0] != node_type:
            raise ConfigError(f"VenueMean.field must be on {node_type}, got {self.field!r}")
        self.edge_type = (node_type, relation, venue_type)
        self._degrees = None

    def reads(self):
        return [self.source]

    def field_specs(self):
        scope, name = self.field.split(".", 1)
        return [FieldSpec(scope, name, doc=f"mean of {self.source} over the node's {self.edge_type[2]} venues")]

    def requirements(self):
        return Requirements(edge_types={self.edge_type})

    def workspace(self):
        return {self.edge_type[0]: 2.0}

    def forward(self, ctx, state, fields):
        adj = ctx.graph.layout(self.edge_type, ctx.t)  # [V, N]
        x = state[self.source].detach()
        key = (id(adj), x.dtype)
        if self._degrees is None or self._degrees[0] != key:
            ones = torch.ones(x.size(0), 1, dtype=x.dtype, device=x.device)
            venue_size = spmm(adj, ones)                           # the members' total weight
            node_venues = spmm(adj.T, torch.ones_like(venue_size))  # a node's total weight in its venues
            self._degrees = (key, _inverse(venue_size), _inverse(node_venues))
        _, venue_size, node_venues = self._degrees
        venue_mean = spmm(adj, x) * venue_size
        return Output(fields={self.field: spmm(adj.T, venue_mean) * node_venues})


def _inverse(total: torch.Tensor) -> torch.Tensor:
    """``1 / total`` where positive, 0 where nothing is there (a venue without members, a node without venues):
    membership weights of any scale, below 1 included."""
    return torch.where(total > 0, 1.0 / total.clamp_min(torch.finfo(total.dtype).tiny), torch.zeros_like(total))
