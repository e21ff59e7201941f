"""The glue between the supply chain and the epidemic (lpm_graph.models.vaccine_logistics.glue): dose demand,
dose arrivals and the depots' allocation, each against the hand computation."""
from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.data import HeteroData

from lpm_graph.core.graph import Graph, Grouping
from lpm_graph.core.process import StepContext
from lpm_graph.core.sampling import Sampler
from lpm_graph.errors import ConfigError, PopulationGraphError
from lpm_graph.models.vaccine_logistics import Arrivals, DoseAllocation, DoseDemand

F64 = torch.float64


def _clinics(population=(100.0, 300.0, 50.0, 50.0), district=(0.0, 0.0, 1.0, 1.0), capacity=(30.0, 10.0)):
    data = HeteroData()
    data["clinic"].num_nodes = len(population)
    data["clinic"].uid = torch.arange(len(population))
    data["clinic"].population = torch.tensor(population)
    data["clinic"].district = torch.tensor(district)
    data["depot"].num_nodes = len(capacity)
    data["depot"].uid = torch.arange(len(capacity))
    data["depot"].capacity = torch.tensor(capacity)
    return data


def _ctx(process, data, params=None, replicates=2, dt=1.0):
    req = process.requirements()
    req.groupings["district"] = Grouping.from_config("district", {"node_type": "clinic", "attribute": "district",
                                                                  "bins": [0, 1]})
    graph = Graph(data, req, F64)
    process.check_graph(graph)
    values = {process.param(k): torch.as_tensor(v, dtype=F64) for k, v in (params or {}).items()}
    return StepContext(0, graph, values, Sampler("expected"), dt, replicates, F64)


def test_every_eligible_person_tops_their_claim_up_to_one_dose():
    demand = DoseDemand(exclude=["person.D", "person.H"])
    V = torch.tensor([[0.0], [1.0], [0.0], [0.5]], dtype=F64)
    D = torch.tensor([[0.0], [0.0], [1.0], [0.0]], dtype=F64)
    outstanding = torch.tensor([[0.0], [0.0], [0.0], [0.25]], dtype=F64)
    # person.H is not in the state (no process owns it): read where present, so it excludes nobody
    out = demand(None, {"person.V": V, "person.D": D, "person.outstanding": outstanding}, {}).fields
    # e = (1 - V)(1 - D) = (1, 0, 0, 0.5); the order is e - O: the vaccinated and the dead claim nothing
    torch.testing.assert_close(out["person.order"], torch.tensor([[1.0], [0.0], [0.0], [0.25]], dtype=F64))
    assert [getattr(r, "key", r) for r in demand.reads()] == ["person.outstanding", "person.V", "person.D",
                                                              "person.H"]
    with pytest.raises(ConfigError, match="DoseDemand.node_type must be a node type name"):
        DoseDemand(node_type="person.x")


def test_arrivals_are_the_pipelines_head_and_what_ships_with_no_lead_time():
    arrivals = Arrivals()
    pipeline = torch.tensor([[[2.0, 5.0]], [[0.0, 1.0]]], dtype=F64)   # [N, R, lead]: the head arrives now
    inbound = torch.tensor([[[1.0, 7.0]], [[3.0, 0.0]]], dtype=F64)    # shipped this step: its slot 0 lands now
    out = arrivals(None, {"person.pipeline": pipeline}, {"person.inbound": inbound}).fields
    torch.testing.assert_close(out["person.doses"], torch.tensor([[3.0], [3.0]], dtype=F64))
    assert arrivals.reads() == ["person.pipeline", "person.inbound"]


def test_the_uniform_and_proportional_allocations_split_the_daily_supply():
    data = _clinics()
    for allocation, shares in (("uniform", [0.25] * 4), ("proportional", [100 / 500, 300 / 500, 50 / 500, 50 / 500])):
        alloc = DoseAllocation(allocation=allocation)
        ctx = _ctx(alloc, data, dt=0.5)
        torch.testing.assert_close(alloc.shares(ctx), torch.tensor(shares, dtype=F64))
        q = alloc(ctx, {}, {}).fields["clinic.order"]
        # the depots' supply 30 + 10 per day, over half a day, one column per replicate
        torch.testing.assert_close(q, (20.0 * torch.tensor(shares, dtype=F64)).unsqueeze(1).expand(4, 2))
        assert alloc.param_specs() == []


def test_logits_over_districts_move_supply_between_them_and_zero_is_proportional():
    data = _clinics()
    alloc = DoseAllocation(allocation="logits")
    (spec,) = alloc.param_specs()
    assert spec.name == "allocation" and spec.grouping == "district"
    zero = alloc.shares(_ctx(alloc, data, {"allocation": [0.0, 0.0]}))
    torch.testing.assert_close(zero, torch.tensor([0.2, 0.6, 0.1, 0.1], dtype=F64))
    # phi = (log 2, 0): district weights softmax(phi + log s) with s = (0.8, 0.2): (1.6, 0.2) / 1.8; inside a
    # district by catchment (1 : 3, and 1 : 1)
    shares = alloc.shares(_ctx(alloc, data, {"allocation": [math.log(2.0), 0.0]}))
    w0, w1 = 1.6 / 1.8, 0.2 / 1.8
    torch.testing.assert_close(shares, torch.tensor([w0 / 4, 3 * w0 / 4, w1 / 2, w1 / 2], dtype=F64))
    assert float(shares.sum()) == pytest.approx(1.0, abs=1e-15)


def test_bad_allocations_and_graphs_are_refused_by_name():
    with pytest.raises(ConfigError, match="DoseAllocation.allocation must be one of"):
        DoseAllocation(allocation="greedy")
    with pytest.raises(PopulationGraphError, match="depot.capacity must be finite and >= 0"):
        _ctx(DoseAllocation(), _clinics(capacity=(30.0, -1.0)))
    with pytest.raises(PopulationGraphError, match="clinic.population must be >= 0"):
        _ctx(DoseAllocation(), _clinics(population=(100.0, -3.0, 50.0, 50.0)))
    _ctx(DoseAllocation(allocation="uniform"), _clinics(population=(100.0, -3.0, 50.0, 50.0)))  # not read
