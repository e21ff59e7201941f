r"""Bounded confidence (Hegselmann–Krause): the mean opinion of the neighbours within a confidence bound.

.. math::

    m_i(t) = \frac{s\, x_i + \sum_{j \to i} w_{ji}\, g_{ij}\, x_j}{s + \sum_{j \to i} w_{ji}\, g_{ij}},
    \qquad g_{ij} = \mathbf{1}\big[\,|x_i(t) - x_j(t)| < \varepsilon\,\big]

over the edges :math:`j \to i` of one edge type with weights :math:`w_{ji}`
(``edge_weight``, 1 if absent), a person's own opinion with weight
:math:`s` (``self_weight``, 1: the person counts themself among those they
trust, as in Hegselmann and Krause) and the confidence bound
:math:`\varepsilon` (parameter ``epsilon``).  A person with nobody to trust
(no neighbour within :math:`\varepsilon` and :math:`s = 0`) keeps their own
opinion.  With the :class:`~lpm_graph.models.opinion.DeGroot` update at
susceptibility 1, :math:`x_i(t+1) = m_i(t)` is the Hegselmann–Krause model
(R. Hegselmann and U. Krause, *Opinion dynamics and bounded confidence:
models, analysis and simulation*, JASSS 5(3), 2002), here on any graph;
a susceptibility :math:`\alpha < 1` makes it lazy,
:math:`x + \alpha (m - x)`.  On a complete graph it converges in finite time
(J. C. Dittmer, *Consensus formation under bounded confidence*, Nonlinear
Analysis 47, 2001) to clusters at least :math:`\varepsilon` apart, about
:math:`1/(2\varepsilon)` of them for opinions uniform on :math:`[0, 1]`
(V. D. Blondel, J. M. Hendrickx and J. N. Tsitsiklis, *On Krause's
multi-agent consensus model with state-dependent connectivity*, IEEE TAC
54(11), 2009).  Hegselmann and Krause write :math:`\le \varepsilon`; for
continuous opinions the two differ on a set of measure zero.

**The message is not linear in** :math:`x_j` (the indicator reads it), so
this is a :class:`~torch_geometric.nn.MessagePassing` with
``message(x_i, x_j)`` rather than a sparse product: per-edge intermediates
(the gathered :math:`x_i, x_j`, the distance, the indicator, the message)
exist during the step — declared per edge to the memory estimate
(:meth:`BoundedConfidence.workspace`) — and autograd would keep some of them
for every step, so gradient runs checkpoint each step (``model.checkpoint:
true`` in the shipped calibrate and analyze settings): only each step's input
state is kept, and one step's per-edge tensors are rebuilt in the backward.

**Gradients in** :math:`\varepsilon`.  The indicator's derivative is 0 almost
everywhere.  Its smooth surrogate is the logistic

.. math::

    \tilde g_{ij} = \sigma\!\Big(\frac{\varepsilon - |x_i - x_j|}{\tau}\Big)

with temperature :math:`\tau` (``temperature``).  ``indicator="hard"``
(default) computes the step with the indicator and passes gradients through
:math:`\tilde g` (straight-through: :math:`g + \tilde g - \operatorname{sg}(\tilde g)`);
``indicator="smooth"`` computes it with :math:`\tilde g` itself, a smooth
model whose gradient is exact (what a calibration of :math:`\varepsilon`
descends; :math:`\tilde g \to g` as :math:`\tau \to 0`).
"""
from __future__ import annotations

import math
import weakref
from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.nn import MessagePassing
from torch_geometric.typing import Adj

from lpm_graph.core.graph import Requirements
from lpm_graph.core.params import ParamSpec
from lpm_graph.core.process import Output, Process, StepContext
from lpm_graph.core.state import FieldSpec
from lpm_graph.errors import ConfigError
from lpm_graph.nn import SparseAdjacency

__all__ = ["BoundedConfidenceMean", "BoundedConfidence", "INDICATORS", "confidence_indicator", "edges_of"]

#: how the indicator 1[|x_i - x_j| < eps] is computed: hard with the surrogate's gradient, or smooth
INDICATORS = ("hard", "smooth")

#: layout -> (edge_index [2, E] int64 in CSR order, weights or None when every weight is 1)
_EDGES: "weakref.WeakKeyDictionary[SparseAdjacency, tuple]" = weakref.WeakKeyDictionary()


def confidence_indicator(distance: Tensor, epsilon: Tensor | float, temperature: float, indicator: str) -> Tensor:
    r""":math:`\mathbf{1}[d < \varepsilon]` (``"hard"``, gradients of the surrogate) or
    :math:`\sigma((\varepsilon - d)/\tau)` (``"smooth"``) for distances :math:`d \ge 0`."""
    if indicator == "smooth":
        return torch.sigmoid((epsilon - distance) / temperature)
    hard = (distance < epsilon).to(distance.dtype)
    needs = torch.is_grad_enabled() and (distance.requires_grad or (isinstance(epsilon, Tensor)
                                                                    and epsilon.requires_grad))
    if not needs:
        return hard
    soft = torch.sigmoid((epsilon - distance) / temperature)
    return hard + (soft - soft.detach())


def check_indicator(owner: str, indicator: str, temperature: float) -> tuple[str, float]:
    """``(indicator, temperature)`` of a bounded-confidence layer, checked (``owner`` names it in the error)."""
    if indicator not in INDICATORS:
        raise ConfigError(f"{owner}.indicator must be one of {list(INDICATORS)}, got {indicator!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"{owner}.temperature must be a number > 0, got {temperature!r}")
    return indicator, float(temperature)


def square_size(x: Tensor, edge_index: Adj, size: tuple[int, int] | None) -> tuple[int, int] | None:
    """``size`` of a propagate over one node set: ``(N, N)`` for a dense ``edge_index`` given without one
    (PyG would take the sources from the largest index), else ``size`` as given."""
    if size is None and isinstance(edge_index, Tensor) and edge_index.layout == torch.strided:
        return (x.size(0), x.size(0))
    return size


def weighted(g: Tensor, edge_weight: Tensor | None) -> Tensor:
    """The per-edge indicators ``g`` ``[E, *]`` times the edge weights (``[E]``, or of ``g``'s shape), if any."""
    if edge_weight is None:
        return g
    return g * (edge_weight if edge_weight.dim() == g.dim() else
                edge_weight.view(-1, *([1] * (g.dim() - 1)))).to(g.dtype)


def opinion_ends(edge_type: Sequence[str], source: str, target: str, owner: str, why: str) -> tuple[str, str, str]:
    """The edge type of an opinion interaction, checked with its ``source`` state and ``target`` field: one node
    type at the edges' both ends and in both keys (``why`` says why in the error)."""
    edge_type = tuple(edge_type)
    if len(edge_type) != 3 or not all(isinstance(x, str) and x for x in edge_type):
        raise ConfigError(f"{owner}.edge_type must be [src, relation, dst], got {list(edge_type)}")
    src, _ = _key(source, "source", owner)
    dst, _ = _key(target, "target", owner)
    if not (src == dst == edge_type[0] == edge_type[2]):
        raise ConfigError(f"{owner} {why}, so source {source!r}, target {target!r} and both ends of the edge type "
                          f"{list(edge_type)} must be one node type")
    return edge_type


def edges_of(adj: SparseAdjacency) -> tuple[Tensor, Tensor | None]:
    """``(edge_index, edge_weight)`` of a layout in its CSR order (row 0 source, row 1 destination;
    int64), the weights ``None`` when every one is 1; built once per layout and kept with it."""
    hit = _EDGES.get(adj)
    if hit is None:
        edge_index = torch.stack([adj.csr.col_indices().to(torch.int64), adj.rows()])
        w = adj.values
        hit = (edge_index, None if bool((w == 1).all()) else w)
        _EDGES[adj] = hit
    return hit


class BoundedConfidenceMean(MessagePassing):
    r"""The weighted mean of the sources within a confidence bound of the destination (module docstring).

    .. math::

        \mathbf{m}_i = \frac{s\, \mathbf{x}_i + \sum_{j \in \mathcal{N}(i)} w_{ji}\, g(\mathbf{x}_i, \mathbf{x}_j)\,
        \mathbf{x}_j}{s + \sum_{j \in \mathcal{N}(i)} w_{ji}\, g(\mathbf{x}_i, \mathbf{x}_j)},
        \qquad g(\mathbf{x}_i, \mathbf{x}_j) = \mathbf{1}\big[|\mathbf{x}_i - \mathbf{x}_j| < \varepsilon\big]

    elementwise in the trailing dimensions (one opinion per replicate
    column), :math:`\mathbf{m}_i = \mathbf{x}_i` where the denominator is 0.

    Args:
        self_weight (float): :math:`s \ge 0`, the weight of a node's own value. (default: ``1.0``)
        indicator (str): ``"hard"`` or ``"smooth"`` (module docstring). (default: ``"hard"``)
        temperature (float): :math:`\tau > 0` of the surrogate. (default: ``0.01``)
        **kwargs (optional): arguments of :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, *)`,
          edges :math:`(2, |\mathcal{E}|)` or a sparse adjacency ``adj_t``
          :math:`(|\mathcal{V}|, |\mathcal{V}|)` (PyG ``Adj``),
          :math:`\varepsilon` a scalar or :math:`(|\mathcal{V}|, *)` broadcastable per destination,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*,
          ``size`` :math:`(|\mathcal{V}|, |\mathcal{V}|)` *(optional)*
        - **output:** :math:`(|\mathcal{V}|, *)`
    """

    def __init__(self, self_weight: float = 1.0, indicator: str = "hard", temperature: float = 0.01, **kwargs):
        kwargs.setdefault("aggr", "sum")
        kwargs.setdefault("node_dim", 0)
        super().__init__(**kwargs)
        if isinstance(self_weight, bool) or not isinstance(self_weight, (int, float)) or not self_weight >= 0:
            raise ConfigError(f"BoundedConfidenceMean.self_weight must be a number >= 0, got {self_weight!r}")
        self.indicator, self.temperature = check_indicator("BoundedConfidenceMean", indicator, temperature)
        self.self_weight = float(self_weight)

    def forward(self, x: Tensor, edge_index: Adj, epsilon: Tensor | float, edge_weight: Tensor | None = None,
                size: tuple[int, int] | None = None) -> Tensor:
        both = self.propagate(edge_index, x=x, epsilon=epsilon, edge_weight=edge_weight,
                              size=square_size(x, edge_index, size))
        num, den = both[..., 0], both[..., 1]
        if self.self_weight:
            num = num + self.self_weight * x
            den = den + self.self_weight
        return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), x)

    def message(self, x_i: Tensor, x_j: Tensor, epsilon, edge_weight: Tensor | None) -> Tensor:
        g = weighted(confidence_indicator((x_i - x_j).abs(), epsilon, self.temperature, self.indicator), edge_weight)
        return torch.stack([g * x_j, g], dim=-1)

    def extra_repr(self) -> str:
        return f"self_weight={self.self_weight:g}, indicator={self.indicator!r}, temperature={self.temperature:g}"


def _key(key: str, what: str, owner: str) -> tuple[str, str]:
    if not isinstance(key, str) or key.count(".") != 1 or not all(key.split(".")):
        raise ConfigError(f"{owner}.{what} must be '<node type>.<name>', got {key!r}")
    scope, name = key.split(".")
    return scope, name


class BoundedConfidence(Process):
    r"""Write the mean opinion of the neighbours within :math:`\varepsilon` (and self), :math:`m_i` (module
    docstring); with :class:`~lpm_graph.models.opinion.DeGroot` at susceptibility 1, Hegselmann–Krause.

    Args:
        edge_type (Sequence[str]): the edges :math:`j \to i` listened along (one node type at both ends).
            (default: ``('person', 'contact', 'person')``)
        source (str): the opinion state. (default: ``"person.opinion"``)
        target (str): the field written. (default: ``"person.neighbour_opinion"``)
        self_weight (float): :math:`s`, the weight of one's own opinion. (default: ``1.0``)
        indicator (str): ``"hard"`` (the indicator, surrogate gradients) or ``"smooth"`` (the logistic
            surrogate in the step itself). (default: ``"hard"``)
        temperature (float): :math:`\tau` of the surrogate, in opinion units. (default: ``0.01``)
        name (str): the process name and parameter namespace. (default: ``"confidence"``)

    Parameters (``model.params.<name>``): ``epsilon`` :math:`\varepsilon > 0`, the confidence bound in
    opinion units.
    """

    role = "interaction"
    default_name = "confidence"

    def __init__(self, edge_type: Sequence[str] = ("person", "contact", "person"), source: str = "person.opinion",
                 target: str = "person.neighbour_opinion", self_weight: float = 1.0, indicator: str = "hard",
                 temperature: float = 0.01, name: str | None = None):
        super().__init__(name)
        self.edge_type = opinion_ends(edge_type, source, target, f"{type(self).__name__} ({self.name})",
                                      "compares a person's opinion with their neighbours'")
        self.source, self.target = source, target
        self.mean = BoundedConfidenceMean(self_weight, indicator, temperature)

    def field_specs(self):
        scope, name = self.target.split(".")
        return [FieldSpec(scope, name, doc=f"mean of {self.source} over the {self.edge_type[1]} neighbours within "
                                          "epsilon, and self")]

    def param_specs(self):
        return [ParamSpec("epsilon", "positive", unit="opinion",
                          doc="confidence bound: neighbours farther than this are not listened to")]

    def reads(self):
        return [self.source]

    def requirements(self) -> Requirements:
        return Requirements(edge_types={self.edge_type})

    def workspace(self) -> dict:
        # per edge, alive at once in the message: x_i and x_j gathered, |x_i - x_j|, the indicator (and its
        # comparison), g * x_j and the stacked message (2): 7; the sum's int64 index broadcast to the message
        # (4); the int64 edge index kept with the layout from the first step (16 bytes per edge: 4 float32 [E]
        # tensors, counted here so the estimate has it). Measured at 200,000 people (mean degree 10): 120-130 MB
        # above the run's start for an estimated 121 MB (scripts/bench_opinion_memory.py)
        return {self.edge_type: 15.0, self.edge_type[2]: 4.0}  # per node: the two sums, numerator, mean

    def saved(self) -> dict:
        # without checkpointing autograd keeps per edge x_i, x_j (the difference's abs), the surrogate and
        # the indicator (the product's operands)
        return {self.edge_type: 4.0, self.edge_type[2]: 2.0}

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        x = state[self.source]
        edge_index, weight = edges_of(ctx.graph.layout(self.edge_type, ctx.t))
        eps = self.value(ctx, "epsilon").to(x.dtype)
        m = self.mean(x, edge_index, eps, None if weight is None else weight.to(x.dtype), size=(x.size(0), x.size(0)))
        return Output(fields={self.target: m})

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, edge_type={self.edge_type}, self_weight={self.mean.self_weight:g}, "
                f"indicator={self.mean.indicator!r}, temperature={self.mean.temperature:g}")
