r"""Venue → person: the force of infection a person receives from its venues."""
from __future__ import annotations

from torch import Tensor

from lpm_graph.nn.sparse import LinearAggregation

__all__ = ["VenueInfection"]


class VenueInfection(LinearAggregation):
    r"""Force of infection on each person from the venues it belongs to.

    .. math::

        \lambda_i = s_i \sum_{v \ni i} w_{vi}\, p_v

    where the sum runs over the venues of person :math:`i` (edges
    ``(venue_type, 'rev_member_of', 'person')``), :math:`p_v` is the venue
    pressure from :class:`~lpm_graph.nn.VenuePressure` (already multiplied by
    the venue type's contact intensity), :math:`w_{vi}` the membership weight
    and :math:`s_i` an optional per-person susceptibility applied after the
    sum.  The probability of infection over a step of length :math:`\Delta t`
    is then :math:`1 - e^{-\lambda_i \Delta t}` (see
    :class:`lpm_graph.dynamics.SEIR`).

    With ``VenuePressure`` this is the bipartite factorisation of within-venue
    mixing: a venue of :math:`k` members costs :math:`2k` edges instead of the
    :math:`k^2` of a person–person clique.

    Args:
        **kwargs (optional): arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:** venue pressure :math:`(|\mathcal{V}_v|, *)`, edges
          :math:`(2, |\mathcal{E}|)` venue → person or a
          :class:`SparseAdjacency` of shape ``[num_people, num_venues]``,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*, susceptibility
          :math:`(|\mathcal{V}_p|)` or :math:`(|\mathcal{V}_p|, *)` *(optional)*
        - **output:** force of infection :math:`(|\mathcal{V}_p|, *)`
    """

    def forward(self, p: Tensor, edge_index, edge_weight: Tensor | None = None,
                susceptibility: Tensor | None = None, num_people: int | None = None) -> Tensor:
        """Args:
            p: pressure per venue.
            edge_index: venue → person edges ``[2, E]`` or a :class:`SparseAdjacency`.
            edge_weight: membership weights (``edge_index`` path only).
            susceptibility: per-person factor :math:`s_i` applied after the sum.
            num_people: number of people (``edge_index`` path); inferred from
                the largest person index if omitted.
        """
        return self._aggregate_linear(p, edge_index, edge_weight, num_people, susceptibility)
