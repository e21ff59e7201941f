r"""The interaction of opinion dynamics: the weighted mean opinion of each person's neighbours.

.. math::

    m_i(t) = \begin{cases}
        \dfrac{\sum_{j \to i} w_{ji}\, x_j(t)}{\sum_{j \to i} w_{ji}} & d_i > 0 \\[1ex]
        x_i(t) & d_i = 0
    \end{cases}
    \qquad d_i = \sum_{j \to i} w_{ji}

over the edges :math:`j \to i` of one edge type with weights :math:`w_{ji}`
(the graph's ``edge_weight``, 1 if absent): :math:`m = W x` with the
row-stochastic matrix :math:`W_{ij} = w_{ji} / d_i`.  A person without
incoming weight (no neighbours, or only edges of weight 0) has no one to
listen to; their "neighbours' mean" is their own opinion, so the DeGroot
update :math:`x + \alpha s (m - x)` leaves them where they are (their row of
:math:`W` is the identity row, and :math:`W` stays row-stochastic).

The sum is :class:`~lpm_graph.nn.WeightedSum` with ``normalize=True`` on the
prepared CSR layout: one sparse product per step, the per-person factors
:math:`1/d_i` and the isolated-node indicator :math:`1[d_i = 0]` applied
outside it, so autograd keeps nothing per edge.
"""
from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
from torch import Tensor

from lpm_graph.core.graph import Requirements
from lpm_graph.core.process import Output, Process, StepContext
from lpm_graph.core.state import FieldSpec
from lpm_graph.errors import ConfigError
from lpm_graph.nn import SparseAdjacency, WeightedSum

__all__ = ["NeighbourMean"]

#: layout -> dtype -> ``[N]`` indicator of destinations without incoming weight (None: there are none)
_ISOLATED: "weakref.WeakKeyDictionary[SparseAdjacency, dict]" = weakref.WeakKeyDictionary()


def _split(key: str, what: str) -> tuple[str, str]:
    if not isinstance(key, str) or key.count(".") != 1 or not all(key.split(".")):
        raise ConfigError(f"NeighbourMean.{what} must be '<node type>.<name>', got {key!r}")
    scope, name = key.split(".")
    return scope, name


class NeighbourMean(Process):
    r"""Write the neighbours' weighted mean opinion :math:`m_i` (module docstring).

    Args:
        edge_type (Sequence[str]): the edges :math:`j \to i` listened along,
            ``[src, relation, dst]``; undirected ties are stored both ways.
            (default: ``('person', 'contact', 'person')``)
        source (str): the state averaged, ``"<src type>.<name>"``.
            (default: ``"person.opinion"``)
        target (str): the field written, ``"<dst type>.<name>"``, in the
            units of ``source``. (default: ``"person.neighbour_opinion"``)
        name (str): the process name. (default: ``"neighbours"``)
    """

    role = "interaction"
    default_name = "neighbours"
    # on a part of a partitioned graph (lpm_graph.distributed) both sums, the weighted sum and the degrees d_i of
    # the normalisation and of the isolated-node indicator, are products through the layout (spmm), whose halo
    # exchange adds the other parts' edges at each person's owner; ghost rows get d_i = 0 and so m_i = x_i there,
    # never read (a ghost's value comes from its owner in the next product, observables count owned rows only)
    partitionable = True

    def __init__(self, edge_type: Sequence[str] = ("person", "contact", "person"), source: str = "person.opinion",
                 target: str = "person.neighbour_opinion", name: str | None = None):
        super().__init__(name)
        self.edge_type = tuple(edge_type)
        if len(self.edge_type) != 3 or not all(isinstance(x, str) and x for x in self.edge_type):
            raise ConfigError(f"NeighbourMean.edge_type must be [src, relation, dst], got {list(edge_type)}")
        src, _ = _split(source, "source")
        dst, _ = _split(target, "target")
        if src != self.edge_type[0] or dst != self.edge_type[2]:
            raise ConfigError(f"NeighbourMean ({self.name}): source {source!r} must live on the edge type's source "
                              f"{self.edge_type[0]!r} and target {target!r} on its destination {self.edge_type[2]!r}")
        if src != dst:
            raise ConfigError(f"NeighbourMean ({self.name}) keeps a person's own opinion where they have no "
                              f"neighbours, so source and destination must be one node type; got edge type "
                              f"{list(self.edge_type)}")
        self.source, self.target = source, target
        self.mean = WeightedSum(normalize=True)

    def field_specs(self):
        scope, name = self.target.split(".")
        return [FieldSpec(scope, name, doc=f"weighted mean of {self.source} over {self.edge_type[1]} neighbours "
                                          "(own value without neighbours)")]

    def reads(self):
        return [self.source]

    def requirements(self) -> Requirements:
        return Requirements(edge_types={self.edge_type})

    def workspace(self) -> dict[str, float]:
        return {self.edge_type[2]: 1.0}  # the sum before the isolated nodes' own values are added

    @staticmethod
    def isolated(adj: SparseAdjacency, dtype: torch.dtype) -> Tensor | None:
        """``[N]`` 1.0 where a destination has no incoming weight, else 0; ``None`` if every node has some
        (computed once per layout and dtype)."""
        cache = _ISOLATED.setdefault(adj, {})
        if dtype not in cache:
            ones = torch.ones(adj.shape[1], dtype=dtype, device=adj.csr.device)
            weight = WeightedSum()(ones, adj)  # d_i, the total incoming weight
            lonely = (weight <= 0).to(dtype)
            cache[dtype] = lonely if bool((lonely > 0).any()) else None
        return cache[dtype]

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        x = state[self.source]
        adj = ctx.graph.layout(self.edge_type, ctx.t)
        m = self.mean(x, adj)
        lonely = self.isolated(adj, x.dtype)
        if lonely is not None:
            m = m + lonely.view(-1, *([1] * (x.dim() - 1))) * x
        return Output(fields={self.target: m})

    def extra_repr(self) -> str:
        return f"name={self.name!r}, edge_type={self.edge_type}, source={self.source!r}, target={self.target!r}"
