r"""Person → venue: the infectious pressure inside each venue."""
from __future__ import annotations

from torch import Tensor

from lpm_graph.nn.sparse import LinearAggregation

__all__ = ["VenuePressure"]


class VenuePressure(LinearAggregation):
    r"""Infectious pressure in each venue, summed over its members.

    .. math::

        p_v = c_v \sum_{j \in \mathcal{M}(v)} w_{jv}\, x_j

    where :math:`\mathcal{M}(v)` are the members of venue :math:`v` (edges
    ``('person', 'member_of', venue_type)``), :math:`w_{jv}` the membership
    weight (e.g. hours per day, 1 if absent), :math:`x_j` the infectiousness
    of person :math:`j` (its infectious indicator times relative
    infectiousness) and :math:`c_v` an optional per-venue scale applied after
    the sum, e.g. :math:`1/n_v` for frequency-dependent mixing.  The per-venue
    contact intensity :math:`\beta` of a venue type is a per-node rate too and
    belongs in :math:`c_v` or in the caller, never in the message, so that the
    sum stays a sparse matrix product and autograd keeps nothing per edge.

    The layer has no parameters.  Pass a :class:`SparseAdjacency` for the fused
    CSR product (built once per graph from the ``person → venue`` edges) or an
    ``edge_index`` for PyG's message path (allows learnable ``edge_weight``).

    Args:
        **kwargs (optional): arguments of
            :class:`torch_geometric.nn.conv.MessagePassing` (e.g. ``aggr``;
            only ``"add"`` uses the fused path).

    Shapes:
        - **input:** infectiousness :math:`(|\mathcal{V}_p|, *)`, membership
          edges :math:`(2, |\mathcal{E}|)` person → venue or a
          :class:`SparseAdjacency` of shape ``[num_venues, num_people]``,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*, venue scale
          :math:`(|\mathcal{V}_v|)` or :math:`(|\mathcal{V}_v|, *)` *(optional)*
        - **output:** venue pressure :math:`(|\mathcal{V}_v|, *)`
    """

    def forward(self, x: Tensor, edge_index, edge_weight: Tensor | None = None,
                venue_scale: Tensor | None = None, num_venues: int | None = None) -> Tensor:
        """Args:
            x: infectiousness per person.
            edge_index: person → venue edges ``[2, E]`` or a :class:`SparseAdjacency`.
            edge_weight: membership weights (``edge_index`` path only).
            venue_scale: per-venue factor :math:`c_v` applied after the sum.
            num_venues: number of venues (``edge_index`` path); inferred from
                the largest venue index if omitted.
        """
        return self._aggregate_linear(x, edge_index, edge_weight, num_venues, venue_scale)
