r"""Person → person: force of infection along explicit contact edges."""
from __future__ import annotations

from torch import Tensor

from lpm_graph.nn.sparse import LinearAggregation

__all__ = ["ContactInfection"]


class ContactInfection(LinearAggregation):
    r"""Force of infection along an explicit person–person contact edge type.

    .. math::

        \lambda_i = s_i \sum_{j \in \mathcal{N}(i)} w_{ji}\, x_j

    for contact edges :math:`j \to i` (e.g. ``('person', 'contact',
    'person')`` from a survey or proximity-sensor network), with contact
    weight :math:`w_{ji}` (a rate or a duration per step), infectiousness
    :math:`x_j` and optional susceptibility :math:`s_i` applied after the sum.
    Undirected contacts are given as both directions.  The transmission rate
    per unit weight is a per-node rate and belongs in :math:`s_i` or in the
    caller, not in the message.

    Args:
        **kwargs (optional): arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:** infectiousness :math:`(|\mathcal{V}|, *)`, contact edges
          :math:`(2, |\mathcal{E}|)` or a :class:`SparseAdjacency` of shape
          ``[num_people, num_people]``, edge weights :math:`(|\mathcal{E}|)`
          *(optional)*, susceptibility :math:`(|\mathcal{V}|)` or
          :math:`(|\mathcal{V}|, *)` *(optional)*
        - **output:** force of infection :math:`(|\mathcal{V}|, *)`
    """

    def forward(self, x: Tensor, edge_index, edge_weight: Tensor | None = None,
                susceptibility: Tensor | None = None) -> Tensor:
        """Args:
            x: infectiousness per person.
            edge_index: contact edges ``[2, E]`` (row 0 source) or a :class:`SparseAdjacency`.
            edge_weight: contact weights (``edge_index`` path only).
            susceptibility: per-person factor :math:`s_i` applied after the sum.
        """
        return self._aggregate_linear(x, edge_index, edge_weight, x.size(0), susceptibility)
