r"""Environment processes of the economy: the price level, and firm closures over a window.

:class:`PriceLevel` moves the one price of the goods market with the excess
demand of the step before (a Walrasian tâtonnement in discrete time),

.. math::

    p(t) = p(t-1)\,\Big(1 + \kappa\,\frac{D(t-1) - Y(t-1)}{Y(t-1)}\Big),
    \qquad D = \sum_f D_f,\quad Y = \sum_f Y_f,

with :math:`\kappa \in [0, 1]` the adjustment speed (``adjustment``); since
:math:`D \ge 0`, the factor is at least :math:`1 - \kappa \ge 0`.  Without
output (:math:`Y = 0`, at step 0 or with every firm closed) the price stays.
The price is one number per replicate, held by every firm alike (state
``workplace.price_level``), as the core's state is per node.

:class:`FirmClosure` closes a share of the firms over :math:`[t_0, t_1)`:
each firm :math:`f` is closed with probability :math:`\phi` (``share``),
decided once per firm from the counter-based uniform of its uid (stream
``closure``, step -2), and a closed firm has :math:`o_f = 0` in the field
``workplace.operating`` (1 otherwise): it wants no workers (the labour
market lays its employees off) and gets no share of demand.  In expected mode
:math:`o_f = 1 - \phi` at every firm.
"""
from __future__ import annotations

import torch
from torch import Tensor

from lpm_graph.core.environment import Window
from lpm_graph.core.observe import Observable, Outcome
from lpm_graph.core.params import ParamSpec, check_domain
from lpm_graph.core.process import Output, Process, StepContext
from lpm_graph.core.state import FieldSpec, StateSpec
from lpm_graph.errors import ConfigError

__all__ = ["PriceLevel", "FirmClosure"]


class PriceLevel(Process):
    r"""The price level, moved by last step's excess demand (module docstring).

    Args:
        firm (str): the firm node type holding the price. (default: ``"workplace"``)
        name (str): the process name and parameter namespace. (default: ``"price"``)

    Parameters: ``adjustment`` :math:`\kappa`, ``initial`` :math:`p(0)`.
    """

    role = "environment"
    default_name = "price"

    def __init__(self, firm: str = "workplace", name: str | None = None):
        super().__init__(name)
        if not isinstance(firm, str) or not firm or "." in firm:
            raise ConfigError(f"PriceLevel ({self.name}).firm must be a node type, got {firm!r}")
        self.firm = firm
        self.key = f"{firm}.price_level"

    def state_specs(self):
        return [StateSpec(self.firm, "price_level", "continuous", init=None, unit="money per good",
                          doc="the price level (the same at every firm)")]

    def param_specs(self):
        return [ParamSpec("adjustment", "probability", default=0.1, unit="per unit relative excess demand",
                          doc="kappa: price change per unit of (D - Y) / Y"),
                ParamSpec("initial", "positive", default=1.0, unit="money per good", doc="price level at step 0")]

    def reads(self):
        return [self.key, f"{self.firm}.demand", f"{self.firm}.output"]

    def observables(self):
        return [Observable("price_index", self.key, "mean", panel="price level", unit="money per good",
                           doc="the price level")]

    def outcomes(self):
        return [Outcome("final_price", "price_index", "final", unit="money per good", doc="price level at the end")]

    def init(self, ctx: StepContext) -> Output:
        n = ctx.graph.num_nodes[self.firm]
        p0 = self.value(ctx, "initial").to(ctx.dtype)
        return Output(state={self.key: p0.expand(n, ctx.replicates).clone()})

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        p = state[self.key]
        D = state[f"{self.firm}.demand"].sum(0, keepdim=True)
        Y = state[f"{self.firm}.output"].sum(0, keepdim=True)
        kappa = self.value(ctx, "adjustment").to(p.dtype)
        produced = Y > 0
        gap = torch.where(produced, (D - Y) / torch.where(produced, Y, 1.0), 0.0)
        return Output(state={self.key: (p[:1] * (1.0 + kappa * gap)).expand_as(p)})


class FirmClosure(Window):
    r"""Close a share of the firms over a window (module docstring).

    Args:
        share (float): default of the parameter ``<name>.share``, the probability that a firm is closed.
            (default: ``0.3``)
        start (int), end (int): the window ``[start, end)``.
        firm (str): the firm node type. (default: ``"workplace"``)
        name (str): the process name. (default: ``"closure"``)
    """

    default_name = "closure"

    def __init__(self, share: float = 0.3, start: int = 0, end: int | None = None, firm: str = "workplace",
                 name: str | None = None):
        super().__init__(start, end, name)
        check_domain("share", share, "probability", where=f"FirmClosure ({self.name})")
        self.share, self.firm = float(share), firm

    def param_specs(self):
        return [ParamSpec("share", "probability", default=self.share, unit="share of firms",
                          doc="probability that a firm is closed while the window is active")]

    def field_specs(self):
        return [FieldSpec(self.firm, "operating", combine="product", doc="1 for an operating firm, 0 for a closed one")]

    def streams(self):
        return [(self.firm, self.stream("closure"))]

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        if not self.active(ctx.t):
            return Output()
        n, dtype = ctx.graph.num_nodes[self.firm], ctx.dtype
        phi = self.value(ctx, "share").to(dtype=dtype, device=ctx.graph.device).expand(n, ctx.replicates)
        u, j = ctx.rng(self.firm).uniform_refined(-2, self.stream("closure"), dtype) if ctx.stochastic else (None, None)
        return Output(fields={f"{self.firm}.operating": 1.0 - ctx.sampler(phi, u, j)})

    def extra_repr(self) -> str:
        return f"name={self.name!r}, share={self.share}, start={self.start}, end={self.end}"
