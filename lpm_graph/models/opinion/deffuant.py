r"""Deffuant–Weisbuch bounded confidence: random pairs of neighbours meet and compromise if close enough.

Every step a random **matching** of the ties (each person in at most one
pair) meets; a pair :math:`\{i, j\}` whose opinions are closer than the
confidence bound :math:`\varepsilon` (parameter ``epsilon``) compromise:

.. math::

    x_i \leftarrow x_i + \mu\,(x_j - x_i), \qquad x_j \leftarrow x_j + \mu\,(x_i - x_j)
    \qquad \text{if } |x_i - x_j| < \varepsilon,

with the convergence parameter :math:`\mu \in (0, 1/2]` (G. Deffuant, D. Neau,
F. Amblard and G. Weisbuch, *Mixing beliefs among interacting agents*,
Advances in Complex Systems 3, 2000; G. Weisbuch, G. Deffuant, F. Amblard and
J.-P. Nadal, *Meet, discuss, and segregate!*, Complexity 7(3), 2002).  Here
:class:`DeffuantPairs` writes the opinion each person moves towards,

.. math::

    m_i = x_i + \sum_{j \to i} \pi_{ji}(t)\, g_{ij}\, (x_j - x_i),
    \qquad g_{ij} = \mathbf{1}\big[|x_i - x_j| < \varepsilon\big],

:math:`\pi_{ji}(t) \in \{0, 1\}` the matching (at most one partner per
person), and :class:`~lpm_graph.models.opinion.DeGroot` with susceptibility
:math:`\mu` moves there: :math:`x_i + \mu (m_i - x_i)` is the pair update
above.  On a complete graph with opinions uniform on :math:`[0, 1]` the
population ends in one cluster for :math:`\varepsilon \ge 1/2` and in about
:math:`\lfloor 1/(2\varepsilon) \rfloor` major clusters below (the papers
above); :math:`\mu` sets the speed, not the outcome.

**The matching**, layout-invariant and reproducible: every person draws a
64-bit word :math:`w_i` from the counter-based generator (stream
``pairing``, keyed by seed, replicate, step and uid:
:meth:`~lpm_graph.core.random.CounterRNG.bits`); a tie :math:`\{i, j\}`
gets the priority :math:`\mathrm{splitmix64}(w_i + w_j)` (the same both
ways); a tie is in the matching when its priority is the largest of every
tie at both of its ends (incoming and outgoing), i.e. one round of Luby's
local-maximum matching.  A person is paired with probability about
:math:`1/2` per step on a complete graph and more on sparse graphs.  Ties of
weight 0 are never drawn; other weights are not read (every tie is equally
likely).  An undirected tie, stored both ways as in every shipped
population, moves both people; a one-way tie :math:`j \to i` moves only the
listener :math:`i`.  Distinct ties share a priority with probability
:math:`2^{-64}`.  The matching is drawn in expected mode too (as the
initial opinions are): the dynamics are a function of the pairings, and the
mean over them is not a Deffuant model.

**The indicator** is the hard one with the surrogate gradient of
:func:`~lpm_graph.models.opinion.bounded_confidence.confidence_indicator`,
or the smooth logistic (``indicator``, ``temperature``), as in
:class:`~lpm_graph.models.opinion.BoundedConfidence`.  The message is not
linear in :math:`x_j`, so it is a :class:`~torch_geometric.nn.MessagePassing`
with ``message(x_i, x_j)``, run over the pairs that met only (at most one per
person and replicate: the replicate columns are flattened into cells
:math:`(i, r)`); the matching itself is per tie (int64 priorities), declared
per edge to the memory estimate.  Gradient runs checkpoint each step.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.nn import MessagePassing
from torch_geometric.typing import Adj

from lpm_graph.core.graph import Requirements
from lpm_graph.core.params import ParamSpec
from lpm_graph.core.process import Output, Process, StepContext
from lpm_graph.core.random import splitmix64
from lpm_graph.core.state import FieldSpec
from lpm_graph.models.opinion.bounded_confidence import (check_indicator, confidence_indicator, edges_of, opinion_ends,
                                                         square_size, weighted)

__all__ = ["PairwiseCompromise", "DeffuantPairs", "matching"]

_INT64_MIN = -(2**63)


def matching(words: Tensor, edge_index: Tensor, num_nodes: int, weight: Tensor | None = None) -> Tensor:
    r"""``[E, R]`` boolean: the ties of a random matching, one round of Luby's local maxima (module docstring).

    Args:
        words: ``[N, R]`` int64 random words of the nodes.
        edge_index: ``[2, E]`` (row 0 source, row 1 destination).
        num_nodes: :math:`N`.
        weight: ``[E]`` edge weights; ties of weight 0 (and self-loops) are never drawn.
    """
    src, dst = edge_index
    priority = splitmix64(words.index_select(0, src) + words.index_select(0, dst))
    drop = src == dst
    if weight is not None:
        drop = drop | (weight <= 0)
    if bool(drop.any()):
        priority[drop] = _INT64_MIN
    best = torch.full_like(words, _INT64_MIN)
    r = words.size(1)
    best.scatter_reduce_(0, dst.view(-1, 1).expand(-1, r), priority, "amax")
    best.scatter_reduce_(0, src.view(-1, 1).expand(-1, r), priority, "amax")
    chosen = priority == best.index_select(0, dst)
    chosen &= priority == best.index_select(0, src)
    if bool(drop.any()):
        chosen[drop] = False
    return chosen


class PairwiseCompromise(MessagePassing):
    r"""The opinion each destination moves towards, from the sources it is paired with (module docstring).

    .. math::

        \mathbf{m}_i = \mathbf{x}_i + \sum_{j \in \mathcal{N}(i)} \pi_{ji}\,
        \mathbf{1}\big[|\mathbf{x}_i - \mathbf{x}_j| < \varepsilon\big]\, (\mathbf{x}_j - \mathbf{x}_i)

    elementwise in the trailing dimensions, :math:`\pi_{ji}` a 0/1 mask per edge (and column) that pairs
    each destination with at most one source (:func:`matching`); without a mask every edge counts.

    Args:
        indicator (str): ``"hard"`` or ``"smooth"``
            (:func:`~lpm_graph.models.opinion.bounded_confidence.confidence_indicator`). (default: ``"hard"``)
        temperature (float): :math:`\tau > 0` of the surrogate. (default: ``0.01``)
        **kwargs (optional): arguments of :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, *)`,
          edges :math:`(2, |\mathcal{E}|)` or a sparse adjacency ``adj_t``
          :math:`(|\mathcal{V}|, |\mathcal{V}|)` (PyG ``Adj``; its values are the mask),
          :math:`\varepsilon` a scalar,
          mask :math:`(|\mathcal{E}|)` or :math:`(|\mathcal{E}|, *)` *(optional)*,
          ``size`` :math:`(|\mathcal{V}|, |\mathcal{V}|)` *(optional)*
        - **output:** :math:`(|\mathcal{V}|, *)`
    """

    def __init__(self, indicator: str = "hard", temperature: float = 0.01, **kwargs):
        kwargs.setdefault("aggr", "sum")
        kwargs.setdefault("node_dim", 0)
        super().__init__(**kwargs)
        self.indicator, self.temperature = check_indicator("PairwiseCompromise", indicator, temperature)

    def forward(self, x: Tensor, edge_index: Adj, epsilon: Tensor | float, mask: Tensor | None = None,
                size: tuple[int, int] | None = None) -> Tensor:
        return x + self.propagate(edge_index, x=x, epsilon=epsilon, edge_weight=mask,
                                  size=square_size(x, edge_index, size))

    def message(self, x_i: Tensor, x_j: Tensor, epsilon, edge_weight: Tensor | None) -> Tensor:
        gap = x_j - x_i
        return weighted(confidence_indicator(gap.abs(), epsilon, self.temperature, self.indicator), edge_weight) * gap

    def extra_repr(self) -> str:
        return f"indicator={self.indicator!r}, temperature={self.temperature:g}"


class DeffuantPairs(Process):
    r"""Draw the step's matching and write the opinion each person moves towards (module docstring);
    with :class:`~lpm_graph.models.opinion.DeGroot` at susceptibility :math:`\mu`, the Deffuant model.

    Args:
        edge_type (Sequence[str]): the ties (one node type at both ends). (default: ``('person', 'contact',
            'person')``)
        source (str): the opinion state. (default: ``"person.opinion"``)
        target (str): the field written. (default: ``"person.neighbour_opinion"``)
        indicator (str): ``"hard"`` or ``"smooth"``. (default: ``"hard"``)
        temperature (float): :math:`\tau` of the surrogate, in opinion units. (default: ``0.01``)
        name (str): the process name, parameter namespace and prefix of the stream ``pairing``.
            (default: ``"deffuant"``)

    Parameters (``model.params.<name>``): ``epsilon`` :math:`\varepsilon > 0`, the confidence bound.
    """

    role = "interaction"
    default_name = "deffuant"

    def __init__(self, edge_type: Sequence[str] = ("person", "contact", "person"), source: str = "person.opinion",
                 target: str = "person.neighbour_opinion", indicator: str = "hard", temperature: float = 0.01,
                 name: str | None = None):
        super().__init__(name)
        self.edge_type = opinion_ends(edge_type, source, target, f"{type(self).__name__} ({self.name})",
                                      "pairs people with their neighbours")
        self.source, self.target = source, target
        self.node_type = self.edge_type[0]
        self.compromise = PairwiseCompromise(indicator, temperature)

    def field_specs(self):
        scope, name = self.target.split(".")
        return [FieldSpec(scope, name, doc=f"the opinion of the {self.edge_type[1]} partner met this step if within "
                                          "epsilon, else one's own")]

    def param_specs(self):
        return [ParamSpec("epsilon", "positive", unit="opinion",
                          doc="confidence bound: a pair farther apart than this does not compromise")]

    def reads(self):
        return [self.source]

    def streams(self):
        return [(self.node_type, self.stream("pairing"))]

    def requirements(self) -> Requirements:
        return Requirements(edge_types={self.edge_type})

    def workspace(self) -> dict:
        # per edge and column, in [E, R] units of the state's float: the matching's int64 tensors alive at
        # once (the two gathered words, their sum, the hash's scratch: 4 x 2) and its comparisons (bool);
        # plus the int64 edge index kept with the layout (16 bytes per edge, counted here). Per node and
        # column: the words and the best priority (int64: 2 + 2), the pairs' indices (int64: 2 x 2 + 2
        # for the nonzero) and the messages over them (x_i, x_j, gap, indicator, message: 5), the sum.
        # Per edge 15 (not the 13 counted above): measured at 200,000 people, 132 MB above the run's start
        # for an estimated 130 MB (scripts/bench_opinion_memory.py)
        return {self.edge_type: 15.0, self.node_type: 16.0}

    def saved(self) -> dict:
        # without checkpointing, per pair (at most one per node and column): the gap and the indicator
        return {self.node_type: 2.0}

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        x = state[self.source]
        n, r = x.shape
        adj = ctx.graph.layout(self.edge_type, ctx.t)
        edge_index, weight = edges_of(adj)
        words = ctx.rng(self.node_type).bits(ctx.t, self.stream("pairing"))
        e, col = matching(words, edge_index, n, weight).nonzero(as_tuple=True)
        del words
        # the pairs of every replicate column as edges between (node, column) cells: messages only where
        # people met (at most N R of them), not on every tie
        pairs = torch.stack([edge_index[0, e] * r + col, edge_index[1, e] * r + col])
        eps = self.value(ctx, "epsilon").to(x.dtype)
        m = self.compromise(x.reshape(n * r), pairs, eps, size=(n * r, n * r))
        return Output(fields={self.target: m.view(n, r)})

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, edge_type={self.edge_type}, indicator={self.compromise.indicator!r}, "
                f"temperature={self.compromise.temperature:g}")
