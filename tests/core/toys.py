"""Tiny processes and graphs that exercise the core without any epidemic.

A toy supply chain: ``firm`` nodes (a ``sector`` code with labels, a numeric
``size``) hold a continuous ``stock`` driven by counter-based uniforms; they
ship a share of it along ``('firm', 'supplies', 'retailer')`` edges into the
``inventory`` of ``retailer`` nodes; firms fail (an indicator) with a hazard
that grows with their stock.  Every rate is per node, so a permutation of the
nodes changes nothing but the order.
"""
from __future__ import annotations

import json

import torch
from torch_geometric.data import HeteroData

from lpm_graph.core import (EventSpec, FieldSpec, Observable, Output, ParamSpec, Process, Read, Requirements,
                            StateSpec)
from lpm_graph.core.random import refinement, words_to_float32, words_to_float64
from lpm_graph.nn import WeightedSum

SUPPLIES = ("firm", "supplies", "retailer")
SECTORS = ["farm", "mill", "bakery"]


def supply_graph(num_firms: int = 6, num_retailers: int = 3, seed: int = 0, uid_offset: int = 100) -> HeteroData:
    """Firms with sectors, sizes and non-contiguous uids; every firm supplies one or two retailers."""
    g = torch.Generator().manual_seed(seed)
    d = HeteroData()
    d["firm"].num_nodes = num_firms
    d["firm"].uid = uid_offset + 7 * torch.arange(num_firms)
    d["firm"].sector = torch.randint(len(SECTORS), (num_firms,), generator=g)
    d["firm"].sector[: len(SECTORS)] = torch.arange(len(SECTORS))[:num_firms]  # every sector present
    d["firm"].sector_categories = json.dumps(SECTORS)
    d["firm"].size = 1.0 + 9.0 * torch.rand(num_firms, generator=g)
    d["retailer"].num_nodes = num_retailers
    d["retailer"].uid = torch.arange(num_retailers)
    src = torch.cat([torch.arange(num_firms), torch.arange(0, num_firms, 2)])
    dst = torch.randint(num_retailers, (src.numel(),), generator=g)
    d[SUPPLIES].edge_index = torch.stack([src, dst])
    d[SUPPLIES].edge_weight = 0.25 + torch.rand(src.numel(), generator=g)
    return d


def permute_nodes(data: HeteroData, node_type: str, perm: torch.Tensor) -> HeteroData:
    """The same graph with the nodes of ``node_type`` reordered: new node ``i`` is old node ``perm[i]``."""
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    out = HeteroData()
    for nt in data.node_types:
        for key, value in data[nt].items():
            moved = nt == node_type and torch.is_tensor(value) and value.dim() > 0
            out[nt][key] = value[perm] if moved else value
    for et in data.edge_types:
        for key, value in data[et].items():
            out[et][key] = value
        ei = data[et].edge_index.clone()
        if et[0] == node_type:
            ei[0] = inv[ei[0]]
        if et[2] == node_type:
            ei[1] = inv[ei[1]]
        out[et].edge_index = ei
    return out


class Supply(Process):
    r"""``firm.stock`` (continuous): :math:`s_0 = s^{(0)} u_{-1}`, :math:`s' = d\,s + g\,u_t` (uniforms of stream
    ``shock``); emits ``firm.produced`` :math:`= g\,u_t` from step 1 on."""

    role = "update"
    default_name = "supply"

    def state_specs(self):
        return [StateSpec("firm", "stock", "continuous", init=None, unit="units")]

    def event_specs(self):
        return [EventSpec("firm", "produced", "units")]

    def param_specs(self):
        return [ParamSpec("growth", "nonnegative", default=1.0), ParamSpec("decay", "probability", default=0.5),
                ParamSpec("initial", "nonnegative", default=2.0)]

    def reads(self):
        return ["firm.stock"]

    def streams(self):
        return [("firm", self.stream("shock"))]

    def observables(self):
        return [Observable("stock", "firm.stock", "mean"), Observable("produced", "firm.produced", "sum")]

    def init(self, ctx):
        u = ctx.rng("firm").uniform(-1, self.stream("shock"), ctx.dtype)
        return Output(state={"firm.stock": self.value(ctx, "initial").to(ctx.dtype) * u})

    def forward(self, ctx, state, fields):
        u = ctx.rng("firm").uniform(ctx.t, self.stream("shock"), ctx.dtype)
        made = self.value(ctx, "growth") * u
        return Output(state={"firm.stock": self.value(ctx, "decay") * state["firm.stock"] + made},
                      events={"firm.produced": made})


class Ship(Process):
    """Emission: ``firm.shipment = share * firm.stock`` (times ``firm.ship_factor`` if some process writes it)."""

    role = "emission"
    default_name = "ship"

    def param_specs(self):
        return [ParamSpec("share", "probability", default=0.5)]

    def reads(self):
        return ["firm.stock", Read("firm.ship_factor", optional=True, default=1.0)]

    def field_specs(self):
        return [FieldSpec("firm", "shipment")]

    def forward(self, ctx, state, fields):
        return Output(fields={"firm.shipment": self.value(ctx, "share") * state["firm.stock"]
                              * fields.get("firm.ship_factor", 1.0)})


class Deliver(Process):
    """Interaction: ``retailer.received`` (a sum) = the weighted sum of shipments along ``supplies`` edges,
    times the scalar field ``supplies.scale`` (1 without a writer)."""

    role = "interaction"
    default_name = "deliver"

    def __init__(self, edge_type=SUPPLIES, name=None):
        super().__init__(name)
        self.edge_type = tuple(edge_type)
        self.layer = WeightedSum()

    def reads(self):
        return ["firm.shipment", Read("supplies.scale", optional=True, default=1.0)]

    def field_specs(self):
        return [FieldSpec("retailer", "received", combine="sum")]

    def requirements(self):
        return Requirements(edge_types={self.edge_type})

    def forward(self, ctx, state, fields):
        adj = ctx.graph.layout(self.edge_type, ctx.t)
        return Output(fields={"retailer.received": self.layer(fields["firm.shipment"], adj)
                              * fields.get("supplies.scale", 1.0)})


class Stockroom(Process):
    """``retailer.inventory`` (continuous) accumulates what is received; emits ``retailer.arrivals``."""

    role = "update"
    default_name = "stockroom"

    def state_specs(self):
        return [StateSpec("retailer", "inventory", "continuous", init=0.0)]

    def event_specs(self):
        return [EventSpec("retailer", "arrivals")]

    def reads(self):
        return ["retailer.inventory", "retailer.received"]

    def observables(self):
        return [Observable("inventory", "retailer.inventory", "mean")]

    def forward(self, ctx, state, fields):
        got = fields["retailer.received"]
        return Output(state={"retailer.inventory": state["retailer.inventory"] + got},
                      events={"retailer.arrivals": got})


class Failure(Process):
    r"""``firm.failed`` (indicator): a working firm fails with :math:`p = 1 - e^{-h\,s\,\Delta t}` (stock
    :math:`s`, hazard :math:`h`), lane 0 of stream ``fail`` with its refinement; emits ``firm.failures``."""

    role = "update"
    default_name = "failure"

    def state_specs(self):
        return [StateSpec("firm", "failed", "indicator", init=0.0)]

    def event_specs(self):
        return [EventSpec("firm", "failures")]

    def param_specs(self):
        return [ParamSpec("hazard", "nonnegative", default=0.05)]

    def reads(self):
        return ["firm.failed", "firm.stock"]

    def streams(self):
        return [("firm", self.stream("fail"))]

    def observables(self):
        return [Observable("failed", "firm.failed", "count"), Observable("failures", "firm.failures", "sum")]

    def forward(self, ctx, state, fields):
        failed = state["firm.failed"]
        p = -torch.expm1(-self.value(ctx, "hazard") * state["firm.stock"] * ctx.dt)
        if ctx.stochastic:
            words = ctx.rng("firm").bits(ctx.t, self.stream("fail"))
            if ctx.dtype == torch.float32:
                u, j = words_to_float32(words), refinement(words)
            else:
                u, j = words_to_float64(words), None
            hit = ctx.sampler(p, u, j)
        else:
            hit = ctx.sampler(p, None)
        new = (1.0 - failed) * hit
        return Output(state={"firm.failed": failed + new}, events={"firm.failures": new})


def supply_chain():
    """Processes of the toy supply chain in step order."""
    return [Supply(), Failure(), Ship(), Deliver(), Stockroom()]
