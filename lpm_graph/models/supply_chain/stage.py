r"""Stages of a supply chain: the goods a node type holds, receives, ships and orders; consumer demand.

A **stage** is one node type (``supplier``, ``warehouse``, ``retailer``,
``consumer`` — or ``depot``, ``clinic``, ``person``: names come from config)
and the edge types it ships along, ``(X, rel, D)``.  Orders flow upstream as
claims, goods downstream through per-node in-transit pipelines.  Every
quantity is per node and replicate, ``[N, R]``; the pipeline of a node type
is ``[N, R, L]`` (slot :math:`k`: goods arriving in :math:`k + 1` steps).

One step of stage :math:`X` (node :math:`j`), in the step order
upstream-first (the order the processes are configured in):

.. math::

    a_j &= P_j[0] + u_j[0]                          &&\text{arrivals (shipped earlier; lead time 0 this step)}\\
    P'_j[k] &= P_j[k+1] + u_j[k+1]                   &&\text{pipeline shifts by one step}\\
    O'_j &= O_j + q_j - \textstyle\sum_k u_j[k]       &&\text{outstanding orders (claims on suppliers)}\\
    I^{+}_j &= I_j + a_j,\quad w_j = \sigma I^{+}_j  &&\text{spoilage: a share } \sigma \text{ lost}\\
    c_e &= s_e\,(O_d + q_d),\quad D_j = \textstyle\sum_{e = (j, d)} c_e &&\text{claims of customers } d\\
    S_j &= \operatorname{smin}_\tau\!\big(I^{+}_j - w_j,\ \kappa_j\,o_j,\ D_j\big)
                                                     &&\text{ship what you have}\\
    x_e &= \operatorname{smin}_\tau\!\big(S_j\,c_e / D_j,\ \kappa_e\big) &&\text{per edge, rationed pro rata}\\
    I'_j &= I^{+}_j - w_j - \textstyle\sum_e x_e,\qquad B'_j = D_j - \textstyle\sum_e x_e
                                                     &&\text{stock, backlog}

with :math:`u_j[\ell]` the goods shipped to :math:`j` this step with lead
time :math:`\ell` (the field ``X.inbound``, written by the suppliers' stage
earlier in the step), :math:`q_j` the node's order this step (field
``X.order``: a replenishment policy's, or consumer demand),
:math:`s_e = w_e / \sum_{e' \to d} w_{e'}` the share of customer
:math:`d`'s orders placed with supplier :math:`j` (edge weights),
:math:`\kappa_j` the node's capacity per step (attribute), :math:`o_j` its
open factor (field ``X.open``: 0 while closed by a disruption),
:math:`\kappa_e` the edge's capacity.  The shipment :math:`x_e` with lead time
:math:`\ell_e` enters the customer's ``inbound[ℓ_e]``: it is available
:math:`\ell_e` steps later.  A ``produces`` stage (suppliers) has no stock and
makes what it ships, up to capacity (:math:`I = \infty`); a ``consumes``
stage (consumers) has no stock: what arrives is delivered.

Goods are conserved exactly: the shipped total :math:`\sum_e x_e` leaves the
shipper and the same :math:`x_e` enter the pipelines, so at every step

.. math::

    \sum I + \sum P + \sum_{s \le t} \text{delivered} + \sum_{s \le t} \text{wasted}
    = \sum I(0) + \sum_{s \le t} \text{produced}

to float rounding.  Orders are not goods: outstanding orders of a customer
with several suppliers are re-split by the shares every step.

**The decision** ``X.reorders`` **.** A behaviour may decide, per node, the
probability :math:`r_j \in [0, 1]` that the node places the order its policy
computed this step (``docs/behavior.md``); the order read is then its
expected value :math:`r_j q_j`, both where the node books it
(:math:`O'_j`) and where its suppliers see it as a claim (:math:`c_e`), and
the order-placed indicator is :math:`r_j` times the policy's.  Without a
behaviour deciding it :math:`r_j = 1`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lpm_graph.core.graph import Requirements
from lpm_graph.core.observe import Observable
from lpm_graph.core.params import ParamSpec
from lpm_graph.core.process import Output, Process, StepContext
from lpm_graph.core.state import EventSpec, FieldSpec, Read, StateSpec
from lpm_graph.errors import ConfigError, PopulationGraphError
from lpm_graph.models.supply_chain.smooth import smooth_min

__all__ = ["Stage", "Demand", "EdgeFlows"]

UNITS = "units"
RATE = "units/step"


def _edge_type(value, what: str) -> tuple[str, str, str]:
    et = tuple(value) if isinstance(value, (list, tuple)) else None
    if et is None or len(et) != 3 or not all(isinstance(x, str) and x and "." not in x for x in et):
        raise ConfigError(f"{what} must be an edge type [source type, relation, destination type], got {value!r}")
    return et


class EdgeFlows:
    """Per-edge arrays of one edge type of a prepared graph: source and destination indices, order shares,
    capacities (``None``: unlimited) and lead times (steps)."""

    def __init__(self, graph, edge_type, default_lead_time: int, dtype):
        store = graph.data[edge_type]
        device = graph.device
        src, dst = store.edge_index.to(device=device, dtype=torch.int64)
        n_dst = int(graph.data[edge_type[2]].num_nodes)
        w = store.edge_weight.to(device=device, dtype=dtype) if "edge_weight" in store else torch.ones(
            src.numel(), dtype=dtype, device=device)
        total = torch.zeros(n_dst, dtype=dtype, device=device).index_add(0, dst, w)
        self.src, self.dst = src, dst
        self.share = torch.where(total[dst] > 0, w / total[dst].clamp_min(torch.finfo(dtype).tiny),
                                 torch.zeros_like(w)).unsqueeze(1)
        cap = store.capacity.to(device=device, dtype=dtype) if "capacity" in store else None
        self.capacity = None if cap is None or bool(torch.isinf(cap).all()) else cap.unsqueeze(1)
        if "lead_time" in store:
            self.lead = store.lead_time.to(device=device, dtype=torch.int64)
        else:
            self.lead = torch.full((src.numel(),), int(default_lead_time), dtype=torch.int64, device=device)
        self.num_dst = n_dst


class Stage(Process):
    r"""The goods of one node type (module docstring).

    Args:
        node_type (str): the node type.
        downstream (Sequence): edge types ``[X, relation, D]`` this stage ships along (each ``D`` has a
            stage of its own, after this one in the step). (default: none: a sink)
        produces (bool): a source: no stock, makes what it ships up to capacity. (default: ``False``)
        consumes (bool): an end consumer: no stock, arrivals are delivered. (default: ``False``)
        max_lead_time (int): pipeline length :math:`L` (the longest lead time of the edges into this node
            type and of the edges this stage ships along; the same for every stage of a model). (default: 4)
        lead_time (int): lead time of edges without a ``lead_time`` attribute. (default: 1)
        capacity (str, optional): node attribute holding the capacity per step (``inf``: none); ``None``:
            unlimited. (default: ``None``)
        smoothing (float): :math:`\tau` of the smooth minimum, in units (:mod:`.smooth`). (default: 1.0)
        name (str): process name and parameter namespace. (default: the node type)

    Parameters: ``initial_stock`` (units per node), ``spoilage`` (share of stock lost per step),
    ``holding_cost`` and ``backlog_cost`` (per unit and step), ``order_cost`` (per order placed) — each
    only where it applies (stock, backlog, orders).
    """

    role = "update"
    default_name = "stage"

    def __init__(self, node_type: str, downstream: Sequence = (), produces: bool = False, consumes: bool = False,
                 max_lead_time: int = 4, lead_time: int = 1, capacity: str | None = None, smoothing: float = 1.0,
                 name: str | None = None):
        super().__init__(name if name is not None else node_type)
        if not isinstance(node_type, str) or not node_type or "." in node_type:
            raise ConfigError(f"Stage ({self.name}): node_type must be a name without dots, got {node_type!r}")
        self.node_type = node_type
        self.downstream = [_edge_type(et, f"Stage ({self.name}).downstream[{i}]") for i, et in enumerate(downstream)]
        for et in self.downstream:
            if et[0] != node_type:
                raise ConfigError(f"Stage ({self.name}): downstream edge type {list(et)} does not start at "
                                  f"{node_type!r}; a stage ships from its own node type")
        if produces and consumes:
            raise ConfigError(f"Stage ({self.name}): a stage either produces (a source) or consumes (an end "
                              "consumer), not both")
        if consumes and self.downstream:
            raise ConfigError(f"Stage ({self.name}): a consuming stage ships nothing; drop downstream")
        if produces and not self.downstream:
            raise ConfigError(f"Stage ({self.name}): a producing stage needs downstream edge types to ship along")
        for label, v, lo in (("max_lead_time", max_lead_time, 1), ("lead_time", lead_time, 0)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ConfigError(f"Stage ({self.name}): {label} must be an integer >= {lo}, got {v!r}")
        if lead_time > max_lead_time:
            raise ConfigError(f"Stage ({self.name}): lead_time {lead_time} exceeds max_lead_time {max_lead_time}")
        if not isinstance(smoothing, (int, float)) or isinstance(smoothing, bool) or not smoothing >= 0:
            raise ConfigError(f"Stage ({self.name}): smoothing must be a number >= 0 (units), got {smoothing!r}")
        self.produces, self.consumes = bool(produces), bool(consumes)
        self.L, self.lead_time, self.capacity_attribute = int(max_lead_time), int(lead_time), capacity
        self.tau = float(smoothing)
        self._flows: dict = {}

    # -- keys ----------------------------------------------------------------
    def k(self, name: str, node_type: str | None = None) -> str:
        return f"{node_type or self.node_type}.{name}"

    @property
    def stocked(self) -> bool:
        return not (self.produces or self.consumes)

    @property
    def receives(self) -> bool:
        return not self.produces

    # -- declarations ----------------------------------------------------------
    def state_specs(self):
        nt, out = self.node_type, []
        if self.stocked:
            out.append(StateSpec(nt, "stock", "count", init=None, unit=UNITS, doc="goods on hand"))
        if self.receives:
            out += [StateSpec(nt, "pipeline", "count", shape=(self.L,), unit=UNITS,
                              doc="goods in transit to the node, by steps until arrival - 1"),
                    StateSpec(nt, "outstanding", "count", unit=UNITS, doc="ordered, not yet shipped by suppliers")]
        if self.downstream:
            out += [StateSpec(nt, "backlog", "count", unit=UNITS, doc="customers' claims left unshipped"),
                    StateSpec(nt, "demand_seen", "count", unit=RATE, doc="new orders from customers last step")]
        return out

    def field_specs(self):
        return [FieldSpec(et[2], "inbound", combine="sum", unit=UNITS,
                          doc=f"goods shipped along {et[1]} this step, by lead time") for et in self.downstream]

    def event_specs(self):
        nt, out = self.node_type, []
        if self.receives:
            out += [EventSpec(nt, "arrived", UNITS), EventSpec(nt, "in_transit", UNITS)]
        if self.stocked:
            out += [EventSpec(nt, "wasted", UNITS), EventSpec(nt, "ordered", UNITS)]
        if self.consumes:
            out.append(EventSpec(nt, "delivered", UNITS))
        if self.produces:
            out.append(EventSpec(nt, "produced", UNITS))
        if self.downstream:
            out.append(EventSpec(nt, "shipped", UNITS))
        if self.stocked or self.downstream:
            out.append(EventSpec(nt, "cost", "cost units"))
        return out

    def param_specs(self):
        out = []
        if self.stocked:
            out += [ParamSpec("initial_stock", "nonnegative", default=0.0, unit=UNITS, doc="stock per node at step 0"),
                    ParamSpec("spoilage", "probability", default=0.0, unit="1/step",
                              doc="share of the stock lost per step"),
                    ParamSpec("holding_cost", "nonnegative", default=0.0, unit="per unit and step"),
                    ParamSpec("order_cost", "nonnegative", default=0.0, unit="per order placed")]
        if self.downstream:
            out.append(ParamSpec("backlog_cost", "nonnegative", default=0.0, unit="per unit and step"))
        return out

    def reads(self):
        nt, out = self.node_type, []
        if self.stocked:
            out.append(self.k("stock"))
        if self.receives:
            out += [self.k("pipeline"), self.k("outstanding"), Read(self.k("inbound"), optional=True, default=0.0),
                    Read(self.k("order"), optional=True, default=0.0)]
        if self.stocked:
            out.append(Read(self.k("order_placed"), optional=True, default=0.0))
        if self.downstream:
            out.append(Read(self.k("open"), optional=True, default=1.0))
        for et in self.downstream:
            out += [self.k("outstanding", et[2]), Read(self.k("order", et[2]), optional=True, default=0.0),
                    Read(self.k("reorders", et[2]), optional=True, default=1.0)]
        if self.receives:
            out.append(Read(self.k("reorders"), optional=True, default=1.0))   # a behaviour's decision
        del nt
        return out

    def requirements(self) -> Requirements:
        req = Requirements(edge_types=set(self.downstream))
        if self.capacity_attribute and self.downstream:
            req.need(self.node_type, self.capacity_attribute)
        else:
            req.need(self.node_type)
        return req

    def observables(self):
        nt, out = self.node_type, []
        if self.stocked:
            out.append(Observable(f"{nt}_stock", self.k("stock"), "count", panel="stock", unit=UNITS,
                                  doc=f"goods on hand at the {nt} nodes"))
        if self.receives:
            out.append(Observable(f"{nt}_in_transit", self.k("in_transit"), "sum", panel="in transit", unit=UNITS))
        if self.downstream:
            out.append(Observable(f"{nt}_backlog", self.k("backlog"), "count", panel="backlog (unfilled demand)",
                                  unit=UNITS))
        if self.consumes:
            out.append(Observable(f"{nt}_waiting", self.k("outstanding"), "count", panel="backlog (unfilled demand)",
                                  unit=UNITS, doc="ordered by the consumers, not yet shipped"))
        if self.stocked:
            out.append(Observable(f"{nt}_orders", self.k("ordered"), "sum", panel="orders", unit=RATE))
        if self.downstream:
            out.append(Observable(f"{nt}_shipped", self.k("shipped"), "sum", panel="shipments", unit=RATE))
        if self.produces:
            out.append(Observable(f"{nt}_produced", self.k("produced"), "sum", panel="shipments", unit=RATE))
        if self.consumes:
            out.append(Observable(f"{nt}_delivered", self.k("delivered"), "sum", panel="sales", unit=RATE,
                                  doc="goods delivered to the end consumers: the sales"))
        if self.stocked:
            out.append(Observable(f"{nt}_wasted", self.k("wasted"), "sum", panel="waste", unit=RATE))
        if self.stocked or self.downstream:
            out.append(Observable(f"{nt}_cost", self.k("cost"), "sum", panel="cost", unit="cost units/step"))
        return out

    def workspace(self) -> dict[str, float]:
        out = {self.node_type: 8.0 + 2.0 * self.L}
        for et in self.downstream:
            out[et[2]] = out.get(et[2], 0.0) + 4.0 + (self.L + 1)
        return out

    def check_graph(self, graph) -> None:
        for et in self.downstream:
            store = graph.data[et]
            if "lead_time" in store:
                lead = store.lead_time
                if lead.is_floating_point() and bool((lead != lead.floor()).any()):
                    raise PopulationGraphError(f"edge type {et}: lead_time must be whole steps")
                if lead.numel() and (int(lead.min()) < 0 or int(lead.max()) > self.L):
                    raise PopulationGraphError(
                        f"edge type {et}: lead times {int(lead.min())}..{int(lead.max())} steps, but stage "
                        f"{self.name!r} keeps pipelines of {self.L} steps; set "
                        f"model.processes.<stage>.max_lead_time >= {int(lead.max())} for every stage")
            if "capacity" in store and bool((store.capacity < 0).any() | torch.isnan(store.capacity).any()):
                raise PopulationGraphError(f"edge type {et}: capacity must be >= 0 (inf: unlimited)")

    # -- running -------------------------------------------------------------
    def init(self, ctx: StepContext) -> Output:
        out = Output()
        for spec in self.state_specs():
            n = ctx.graph.num_nodes[spec.node_type]
            out.state[spec.key] = torch.zeros(n, ctx.replicates, *spec.shape, dtype=ctx.dtype, device=ctx.graph.device)
        if self.stocked:
            out.state[self.k("stock")] = out.state[self.k("stock")] + self.value(ctx, "initial_stock").to(ctx.dtype)
        return out

    def flows(self, ctx: StepContext, et) -> EdgeFlows:
        key = (et, ctx.dtype)
        entry = self._flows.get(key)
        if entry is None or entry[0] is not ctx.graph.data or entry[1].src.device != ctx.graph.device:
            entry = (ctx.graph.data, EdgeFlows(ctx.graph, et, self.lead_time, ctx.dtype))
            self._flows[key] = entry
        return entry[1]

    def capacity(self, ctx: StepContext, fields) -> Tensor | None:
        """``[N, 1]`` capacity per step times the open factor (``None``: unlimited and open)."""
        cap = None
        if self.capacity_attribute:
            c = ctx.graph.attribute(self.node_type, self.capacity_attribute).to(ctx.dtype)
            if not bool(torch.isinf(c).all()):
                cap = c.unsqueeze(1)
        open_ = fields.get(self.k("open"))
        if open_ is None:
            return cap
        open_ = torch.as_tensor(open_, dtype=ctx.dtype, device=ctx.graph.device)
        base = cap if cap is not None else torch.tensor(float("inf"), dtype=ctx.dtype, device=ctx.graph.device)
        return torch.where(open_ > 0, base * open_, torch.zeros((), dtype=ctx.dtype, device=ctx.graph.device))

    def order(self, fields: dict[str, Tensor], node_type: str | None = None) -> Tensor | None:
        """The order of ``node_type`` (this stage's by default) this step, times the decision
        ``<node type>.reorders`` where a behaviour writes it; ``None`` without an order."""
        q = fields.get(self.k("order", node_type))
        r = fields.get(self.k("reorders", node_type))
        return q if q is None or r is None else q * r

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        nt, out, dtype = self.node_type, Output(), ctx.dtype
        stochastic = ctx.stochastic
        n = ctx.graph.num_nodes[nt]
        q = self.order(fields)
        if self.receives:
            P = state[self.k("pipeline")]
            inbound = fields.get(self.k("inbound"))
            empty = torch.zeros(n, ctx.replicates, 1, dtype=dtype, device=P.device)
            if inbound is None:
                arrived = P[..., 0]
                pipeline = torch.cat([P[..., 1:], empty], dim=-1)
                received = None
            else:
                if inbound.size(-1) > self.L + 1:
                    raise ConfigError(f"stage {self.name!r}: its suppliers ship with lead times up to "
                                      f"{inbound.size(-1) - 1} steps but its pipeline holds {self.L}; give every "
                                      "stage the same max_lead_time")
                if inbound.size(-1) < self.L + 1:
                    pad = torch.zeros(n, ctx.replicates, self.L + 1 - inbound.size(-1), dtype=dtype, device=P.device)
                    inbound = torch.cat([inbound, pad], dim=-1)
                arrived = P[..., 0] + inbound[..., 0]
                pipeline = torch.cat([P[..., 1:], empty], dim=-1) + inbound[..., 1:]
                received = inbound.sum(-1)
            outstanding = state[self.k("outstanding")]
            if q is not None:
                outstanding = outstanding + q
            if received is not None:
                outstanding = outstanding - received
            out.state[self.k("pipeline")] = pipeline
            out.state[self.k("outstanding")] = outstanding
            out.events[self.k("arrived")] = arrived
            out.events[self.k("in_transit")] = pipeline.sum(-1)
        available = None
        if self.stocked:
            stock = state[self.k("stock")] + arrived
            wasted = self.value(ctx, "spoilage").to(dtype) * stock
            stock = stock - wasted
            available = stock
            out.events[self.k("wasted")] = wasted
            out.events[self.k("ordered")] = q if q is not None else torch.zeros_like(stock)
        if self.consumes:
            out.events[self.k("delivered")] = arrived
        cost = None
        if self.downstream:
            claims, demand = [], torch.zeros(n, ctx.replicates, dtype=dtype, device=ctx.graph.device)
            new = torch.zeros_like(demand)
            for et in self.downstream:
                f = self.flows(ctx, et)
                q_d = self.order(fields, et[2])
                owed = state[self.k("outstanding", et[2])]
                c = f.share * (owed if q_d is None else owed + q_d).index_select(0, f.dst)
                claims.append(c)
                demand = demand.index_add(0, f.src, c)
                if q_d is not None:
                    new = new.index_add(0, f.src, f.share * q_d.index_select(0, f.dst))
            shipped_total = smooth_min([available, self.capacity(ctx, fields), demand], self.tau, stochastic)
            fill = torch.where(demand > 0, shipped_total / demand.clamp_min(torch.finfo(dtype).tiny),
                               torch.zeros_like(demand))
            shipped = torch.zeros_like(demand)
            for et, c in zip(self.downstream, claims):
                f = self.flows(ctx, et)
                x = fill.index_select(0, f.src) * c
                if f.capacity is not None:
                    x = smooth_min([x, f.capacity], self.tau, stochastic)
                shipped = shipped.index_add(0, f.src, x)
                width = self.L + 1
                slots = torch.zeros(f.num_dst * width, ctx.replicates, dtype=dtype, device=x.device)
                slots = slots.index_add(0, f.dst * width + f.lead, x)
                key = self.k("inbound", et[2])
                out.fields[key] = slots.view(f.num_dst, width, ctx.replicates).transpose(1, 2)
            backlog = demand - shipped
            out.state[self.k("backlog")] = backlog
            out.state[self.k("demand_seen")] = new
            out.events[self.k("shipped")] = shipped
            if self.produces:
                out.events[self.k("produced")] = shipped
            cost = self.value(ctx, "backlog_cost").to(dtype) * backlog
        if self.stocked:
            if self.downstream:
                stock = stock - shipped
            out.state[self.k("stock")] = stock
            placed = fields.get(self.k("order_placed"))
            if placed is None:
                placed = (q > 0).to(dtype) if q is not None else torch.zeros_like(stock)
            elif fields.get(self.k("reorders")) is not None:
                placed = placed * fields[self.k("reorders")]   # the expected share of orders placed
            hold = self.value(ctx, "holding_cost").to(dtype) * stock + self.value(ctx, "order_cost").to(dtype) * placed
            cost = hold if cost is None else cost + hold
        if cost is not None:
            out.events[self.k("cost")] = cost
        return out

    def extra_repr(self) -> str:
        kind = "produces" if self.produces else "consumes" if self.consumes else "stocks"
        return f"name={self.name!r}, node_type={self.node_type!r}, {kind}, downstream={self.downstream}, L={self.L}"


class Demand(Process):
    r"""Poisson demand of end consumers: :math:`q_i(t) \sim \operatorname{Poisson}(\lambda\, m_i\, \Delta t)`.

    Writes the field ``<node type>.order`` (what the consumers' stage adds to their outstanding orders and
    their suppliers see as claims the same step) and emits ``<node type>.demand``.  :math:`\lambda` is the
    parameter ``rate`` (units per node and step), :math:`m_i` an optional node attribute (``attribute``,
    e.g. household size; 1 without).  Draws: the counter-based ``float64`` uniforms of stream ``demand``
    inverted by :meth:`~lpm_graph.core.sampling.Sampler.poisson` (straight-through on the mean); in expected
    mode the mean :math:`\lambda m_i \Delta t`.

    Args:
        node_type (str): the consumers' node type. (default: ``"consumer"``)
        attribute (str, optional): node attribute scaling each node's rate. (default: ``None``)
        name (str): process name. (default: ``"demand"``)
    """

    role = "behaviour"
    default_name = "demand"

    def __init__(self, node_type: str = "consumer", attribute: str | None = None, name: str | None = None):
        super().__init__(name)
        self.node_type, self.attribute = node_type, attribute

    def param_specs(self):
        return [ParamSpec("rate", "nonnegative", default=1.0, unit="units per node and step",
                          doc="Poisson rate of each consumer's demand")]

    def field_specs(self):
        return [FieldSpec(self.node_type, "order", unit=RATE, doc="units ordered this step")]

    def event_specs(self):
        return [EventSpec(self.node_type, "demand", RATE)]

    def streams(self):
        return [(self.node_type, self.stream("demand"))]

    def requirements(self) -> Requirements:
        req = Requirements()
        req.need(self.node_type, *([self.attribute] if self.attribute else []))
        return req

    def observables(self):
        return [Observable(f"{self.node_type}_demand", f"{self.node_type}.demand", "sum", panel="orders", unit=RATE,
                           doc="units demanded by the end consumers")]

    def forward(self, ctx: StepContext, state, fields) -> Output:
        n = ctx.graph.num_nodes[self.node_type]
        lam = self.value(ctx, "rate").to(ctx.dtype) * ctx.dt
        lam = lam * torch.ones(n, ctx.replicates, dtype=ctx.dtype, device=ctx.graph.device)
        if self.attribute:
            lam = lam * ctx.graph.attribute(self.node_type, self.attribute).to(ctx.dtype).unsqueeze(1)
        u = ctx.rng(self.node_type).uniform(ctx.t, self.stream("demand"), torch.float64) if ctx.stochastic else None
        d = ctx.sampler.poisson(lam, u)
        return Output(fields={f"{self.node_type}.order": d}, events={f"{self.node_type}.demand": d})
