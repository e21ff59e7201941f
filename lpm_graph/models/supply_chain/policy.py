r"""Replenishment policies and disruptions: environment processes of a supply chain.

A policy decides the order :math:`q_j(t)` of every node :math:`j` of one node
type at the start of step :math:`t`, from its **inventory position** at the
end of the previous step,

.. math::

    \mathrm{IP}_j = I_j + \textstyle\sum_k P_j[k] + O_j - B_j

(stock, in transit, ordered but not shipped, minus the backlog owed to
customers; the states of its :class:`~lpm_graph.models.supply_chain.Stage`),
and writes the fields ``<type>.order`` and ``<type>.order_placed`` (the
indicator of an order, for a fixed ordering cost).  Being environment
processes, policies are what ``task=analyze`` swaps and optimises
(``task.policy``).

:class:`BaseStock` (order-up-to)
    :math:`q_j = \operatorname{ramp}_\tau(S_j(t) - \mathrm{IP}_j)` with a
    fixed level :math:`S` (parameter ``level``) or, with ``forecast=True``,
    :math:`S_j(t) = L\,\hat\mu_j(t) + z\,\hat\sigma_j(t)\sqrt{L}` from the moving
    average :math:`\hat\mu` and standard deviation :math:`\hat\sigma` of the
    last :math:`p` periods' demand the node saw (``window``; parameters
    ``cover`` :math:`L` and ``safety_factor`` :math:`z`) — the policy of Chen
    et al. (2000), whose orders have
    :math:`\operatorname{Var}(q)/\operatorname{Var}(D) = 1 + 2L/p + 2L^2/p^2`
    for i.i.d. demand and :math:`z = 0` (the bullwhip effect).
:class:`ReorderPoint` (:math:`(s, S)`, differentiable)
    :math:`g_j = \operatorname{step}_\tau(s - \mathrm{IP}_j)` and
    :math:`q_j = g_j\,\operatorname{ramp}_\tau(s + Q - \mathrm{IP}_j)`: order up
    to :math:`S = s + Q` when the position has fallen to the reorder point
    :math:`s`.  Parameters ``reorder_point`` :math:`s` and ``quantity`` :math:`Q`.

:math:`\operatorname{ramp}_\tau` and :math:`\operatorname{step}_\tau` are
exact in stochastic runs' forward with a smooth backward, smooth in expected
mode (:mod:`lpm_graph.models.supply_chain.smooth`).

:class:`Disruption` closes chosen nodes of a type for a window of steps: it
writes the factor ``<type>.open`` (``factor`` while closed, 1 otherwise) that
multiplies the nodes' shipping (or production) capacity.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lpm_graph.core.environment import Window
from lpm_graph.core.observe import Observable
from lpm_graph.core.params import ParamSpec
from lpm_graph.core.process import Output, Process, StepContext
from lpm_graph.core.state import FieldSpec, Read, StateSpec
from lpm_graph.errors import ConfigError
from lpm_graph.models.supply_chain.smooth import smooth_ramp, smooth_step

__all__ = ["BaseStock", "ReorderPoint", "Disruption", "inventory_position"]


def inventory_position(state: dict[str, Tensor], node_type: str) -> Tensor:
    """:math:`I + \\sum_k P[k] + O - B` of a stage's state (absent entries count 0)."""
    ip = state[f"{node_type}.stock"] + state[f"{node_type}.pipeline"].sum(-1) + state[f"{node_type}.outstanding"]
    backlog = state.get(f"{node_type}.backlog")
    return ip if backlog is None else ip - backlog


class _Policy(Process):
    role = "environment"

    def __init__(self, node_type: str, smoothing: float = 1.0, name: str | None = None):
        super().__init__(name)
        if not isinstance(node_type, str) or not node_type or "." in node_type:
            raise ConfigError(f"{type(self).__name__} ({self.name}): node_type must be a name without dots, "
                              f"got {node_type!r}")
        if not isinstance(smoothing, (int, float)) or isinstance(smoothing, bool) or not smoothing >= 0:
            raise ConfigError(f"{type(self).__name__} ({self.name}): smoothing must be a number >= 0 (units), "
                              f"got {smoothing!r}")
        self.node_type, self.tau = node_type, float(smoothing)

    def field_specs(self):
        nt = self.node_type
        return [FieldSpec(nt, "order", unit="units/step", doc="units ordered from suppliers this step"),
                FieldSpec(nt, "order_placed", doc="1 where an order is placed (smooth in expected mode)")]

    def reads(self):
        nt = self.node_type
        return [f"{nt}.stock", f"{nt}.pipeline", f"{nt}.outstanding", Read(f"{nt}.backlog", optional=True)]

    def extra_repr(self) -> str:
        return f"name={self.name!r}, node_type={self.node_type!r}, smoothing={self.tau:g}"


class BaseStock(_Policy):
    r"""Order up to a level :math:`S` (module docstring).

    Args:
        node_type (str): the ordering nodes' type (with a stocked :class:`Stage`).
        forecast (bool): the level from a moving-average forecast (``cover``, ``safety_factor``) instead of
            the fixed ``level``. (default: ``False``)
        window (int): :math:`p`, periods of the moving average. (default: 4)
        smoothing (float): :math:`\tau` of the smooth ramp (units). (default: 1.0)
        name (str): process name and parameter namespace. (default: ``"base_stock"``)

    Parameters: ``level`` (units; fixed level), or ``cover`` (steps), ``safety_factor`` and
    ``initial_forecast`` (units/step: the moving average's history at step 0); the arguments of the same
    names are their defaults (so a scenario's policy brings its own values).
    """

    default_name = "base_stock"

    def __init__(self, node_type: str, forecast: bool = False, window: int = 4, smoothing: float = 1.0,
                 level: float = 0.0, cover: float = 2.0, safety_factor: float = 0.0, initial_forecast: float = 0.0,
                 name: str | None = None):
        super().__init__(node_type, smoothing, name)
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ConfigError(f"BaseStock ({self.name}): window must be an integer >= 1, got {window!r}")
        self.forecast, self.window = bool(forecast), int(window)
        self.defaults = {"level": level, "cover": cover, "safety_factor": safety_factor,
                         "initial_forecast": initial_forecast}

    def param_specs(self):
        d = self.defaults
        if not self.forecast:
            return [ParamSpec("level", "nonnegative", default=d["level"], unit="units", doc="order-up-to level S")]
        return [ParamSpec("cover", "nonnegative", default=d["cover"], unit="steps",
                          doc="L: periods of demand the level covers"),
                ParamSpec("safety_factor", "real", default=d["safety_factor"],
                          doc="z: safety stock in forecast sd * sqrt(L)"),
                ParamSpec("initial_forecast", "nonnegative", default=d["initial_forecast"], unit="units/step",
                          doc="demand history at step 0")]

    def state_specs(self):
        if not self.forecast:
            return []
        return [StateSpec(self.node_type, "demand_history", "continuous", shape=(self.window,), init=None,
                          unit="units/step", doc="demand seen in the last p steps, newest first")]

    def reads(self):
        out = list(super().reads())
        if self.forecast:
            out += [f"{self.node_type}.demand_history", f"{self.node_type}.demand_seen"]
        return out

    def observables(self):
        return []

    def init(self, ctx: StepContext) -> Output:
        if not self.forecast:
            return Output()
        n = ctx.graph.num_nodes[self.node_type]
        h = self.value(ctx, "initial_forecast").to(ctx.dtype) * torch.ones(
            n, ctx.replicates, self.window, dtype=ctx.dtype, device=ctx.graph.device)
        return Output(state={f"{self.node_type}.demand_history": h})

    def level(self, ctx: StepContext, state) -> tuple[Tensor, dict]:
        nt = self.node_type
        if not self.forecast:
            return self.value(ctx, "level").to(ctx.dtype), {}
        history = state[f"{nt}.demand_history"]
        if ctx.t > 0:  # the demand of step t - 1 joins the history (none is seen before step 0)
            history = torch.cat([state[f"{nt}.demand_seen"].unsqueeze(-1), history[..., :-1]], dim=-1)
        mean = history.mean(-1)
        cover = self.value(ctx, "cover").to(ctx.dtype)
        level = cover * mean
        z = self.value(ctx, "safety_factor").to(ctx.dtype)
        if self.window > 1 and (z.requires_grad or float(z) != 0.0):
            level = level + z * history.std(-1) * cover.sqrt()
        return level, {f"{nt}.demand_history": history}

    def forward(self, ctx: StepContext, state, fields) -> Output:
        level, new_state = self.level(ctx, state)
        gap = level - inventory_position(state, self.node_type)
        q = smooth_ramp(gap, self.tau, ctx.stochastic)
        placed = smooth_step(gap, self.tau, ctx.stochastic)
        nt = self.node_type
        return Output(state=new_state, fields={f"{nt}.order": q, f"{nt}.order_placed": placed})


class ReorderPoint(_Policy):
    r"""The :math:`(s, S)` policy made differentiable (module docstring).

    Args:
        node_type (str): the ordering nodes' type.
        smoothing (float): :math:`\tau` of the smooth step and ramp (units). (default: 1.0)
        name (str): process name and parameter namespace. (default: ``"reorder"``)

    Parameters: ``reorder_point`` :math:`s` (units of inventory position) and ``quantity``
    :math:`Q = S - s \ge 0`; the arguments of the same names are their defaults.
    """

    default_name = "reorder"

    def __init__(self, node_type: str, smoothing: float = 1.0, reorder_point: float = 0.0, quantity: float = 0.0,
                 name: str | None = None):
        super().__init__(node_type, smoothing, name)
        self.defaults = {"reorder_point": reorder_point, "quantity": quantity}

    def param_specs(self):
        return [ParamSpec("reorder_point", "real", default=self.defaults["reorder_point"], unit="units",
                          doc="s: order when IP <= s"),
                ParamSpec("quantity", "nonnegative", default=self.defaults["quantity"], unit="units", doc="Q = S - s")]

    def forward(self, ctx: StepContext, state, fields) -> Output:
        s = self.value(ctx, "reorder_point").to(ctx.dtype)
        Q = self.value(ctx, "quantity").to(ctx.dtype)
        ip = inventory_position(state, self.node_type)
        trigger = smooth_step(s - ip, self.tau, ctx.stochastic, inclusive=True)
        q = trigger * smooth_ramp(s + Q - ip, self.tau, ctx.stochastic)
        nt = self.node_type
        return Output(fields={f"{nt}.order": q, f"{nt}.order_placed": trigger})


class Disruption(Window):
    r"""Nodes of one type closed over ``[start, end)``: the field ``<type>.open`` is ``factor`` there, 1 elsewhere.

    Args:
        node_type (str): the node type.
        nodes (Sequence[int], optional): positions of the closed nodes; ``None``: every node (with
            ``fraction``: a share of them). (default: ``None``)
        fraction (float, optional): close each node with this probability, drawn once from the counter-based
            uniform of its uid (stream ``closed``, replicate 0's draw, so the same nodes in every replicate).
        start, end (int): the window, steps ``start <= t < end`` (``end`` ``None``: to the end).
        name (str): process name and parameter namespace. (default: ``"disruption"``)

    Parameter ``factor``: the share of capacity left while closed (0: closed). A closed stage ships
    (or produces) at most ``factor`` times its capacity; a stage without a capacity ships nothing.
    """

    default_name = "disruption"

    def __init__(self, node_type: str, nodes: Sequence[int] | None = None, fraction: float | None = None,
                 start: int = 0, end: int | None = None, factor: float = 0.0, name: str | None = None):
        super().__init__(start, end, name)
        self.default_factor = factor
        self.node_type = node_type
        if nodes is not None and fraction is not None:
            raise ConfigError(f"Disruption ({self.name}): give nodes or fraction, not both")
        if fraction is not None and not (isinstance(fraction, (int, float)) and 0 <= fraction <= 1):
            raise ConfigError(f"Disruption ({self.name}): fraction must be in [0, 1], got {fraction!r}")
        if nodes is not None and not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in nodes):
            raise ConfigError(f"Disruption ({self.name}): nodes must be a list of node positions >= 0, got {nodes!r}")
        self.nodes = None if nodes is None else [int(i) for i in nodes]
        self.fraction = fraction
        self._mask = {}

    def param_specs(self):
        return [ParamSpec("factor", "probability", default=self.default_factor, doc="share of capacity left while closed")]

    def field_specs(self):
        return [FieldSpec(self.node_type, "open", combine="product", doc="1 open, factor while closed")]

    def streams(self):
        return [(self.node_type, self.stream("closed"))] if self.fraction is not None else []

    def check_graph(self, graph) -> None:
        n = graph.num_nodes.get(self.node_type)
        if self.nodes and n is not None and max(self.nodes) >= n:
            from lpm_graph.errors import PopulationGraphError

            raise PopulationGraphError(f"Disruption ({self.name}): node {max(self.nodes)} of {self.node_type!r} "
                                       f"does not exist (there are {n}); give positions 0..{n - 1}")

    def closed(self, ctx: StepContext) -> Tensor:
        key = (id(ctx.graph.data), ctx.graph.device, ctx.dtype)
        mask = self._mask.get(key)
        if mask is None:
            n = ctx.graph.num_nodes[self.node_type]
            if self.nodes is not None:
                mask = torch.zeros(n, 1, dtype=ctx.dtype, device=ctx.graph.device)
                mask[self.nodes] = 1.0
            elif self.fraction is not None:
                from lpm_graph.core.random import CounterRNG

                rng = CounterRNG(ctx.graph.uid[self.node_type], ctx.seed, 1, self.node_type)
                mask = (rng.uniform(-1, self.stream("closed"), torch.float64) < self.fraction).to(ctx.dtype)
            else:
                mask = torch.ones(n, 1, dtype=ctx.dtype, device=ctx.graph.device)
            self._mask = {key: mask}
        return mask

    def forward(self, ctx: StepContext, state, fields) -> Output:
        if not self.active(ctx.t):
            return Output()
        mask = self.closed(ctx)
        factor = self.value(ctx, "factor").to(ctx.dtype)
        return Output(fields={f"{self.node_type}.open": 1.0 - mask * (1.0 - factor)})

    def extra_repr(self) -> str:
        return f"name={self.name!r}, node_type={self.node_type!r}, start={self.start}, end={self.end}"
