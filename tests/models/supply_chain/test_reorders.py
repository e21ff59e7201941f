"""The decision ``<node type>.reorders`` read by the stages: the expected share of its policy's order a node places."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.behavior import Behavior, FixedDecisions
from lpm_graph.models.supply_chain import supply_network
from tests.models.supply_chain.helpers import REL, chain_model, line_graph
from tests.models.supply_chain.test_stage import _goods

THREE = ["supplier", "retailer", "consumer"]
PARAMS = {"demand": {"rate": 1.1}, "warehouse": {"initial_stock": 100.0, "spoilage": 0.02},
          "retailer": {"initial_stock": 30.0, "spoilage": 0.05},
          "warehouse_policy": {"cover": 4.0, "safety_factor": 1.0, "initial_forecast": 60.0},
          "retailer_policy": {"cover": 3.0, "safety_factor": 0.5, "initial_forecast": 20.0}}


class PerNode(Behavior):
    """``reorders`` of node ``j`` = ``values[j % len(values)]`` (decisions that differ between nodes)."""

    def __init__(self, node_type, values):
        super().__init__(["reorders"], node_type=node_type, grouping=None, name=f"{node_type}_reorders")
        self.values = list(values)

    def decide(self, ctx, state, fields):
        n = ctx.graph.num_nodes[self.node_type]
        v = torch.tensor(self.values, dtype=ctx.dtype)
        return {"reorders": v[torch.arange(n) % len(v)].unsqueeze(1)}


def three(reorders: float | None, steps: int = 4):
    data = line_graph({"supplier": 1, "retailer": 1, "consumer": 1}, [2, 0], capacity={"supplier": 4.0})
    behavior = {} if reorders is None else {
        "fixed": FixedDecisions({"reorders": reorders}, node_type="retailer", grouping=None)}
    model = chain_model(THREE, policies={"retailer": {}}, mode="expected", behavior=behavior,
                        params={"demand": {"rate": 3.0}, "retailer_policy": {"level": 10.0},
                                "retailer": {"initial_stock": 5.0, "spoilage": 0.1, "holding_cost": 1.0,
                                             "backlog_cost": 2.0, "order_cost": 0.5}})
    return model(data, steps=steps)


def test_half_the_order_is_placed_and_claimed_by_hand():
    """The chain of test_stage.test_three_nodes_by_hand: at t=0 the base stock orders 5; with reorders 0.5 the
    retailer places 2.5, the supplier (capacity 4) ships 2.5 (supplier backlog 0 instead of 1) and the order
    cost is 0.5 x 0.5 on top of holding 1.5."""
    base, half = three(None, steps=1), three(0.5, steps=1)
    assert float(base.series["retailer_orders"][1, 0]) == pytest.approx(5.0, abs=1e-12)
    assert float(half.series["retailer_orders"][1, 0]) == pytest.approx(2.5, abs=1e-12)
    assert float(half.series["supplier_produced"][1, 0]) == pytest.approx(2.5, abs=1e-12)
    assert float(half.series["supplier_backlog"][1, 0]) == pytest.approx(0.0, abs=1e-12)
    assert float(half.series["retailer_cost"][1, 0]) == pytest.approx(1.5 + 0.25, abs=1e-12)
    assert float(base.series["retailer_cost"][1, 0]) == pytest.approx(1.5 + 0.5, abs=1e-12)


def test_a_factor_zero_places_no_orders():
    traj = three(0.0, steps=6)
    assert float(traj.series["retailer_orders"].abs().max()) == 0.0
    assert float(traj.series["supplier_produced"].abs().max()) == 0.0   # nothing claimed, nothing shipped
    assert float(traj.series["retailer_in_transit"].abs().max()) == 0.0
    assert float(three(None, steps=6).series["supplier_produced"].sum()) > 0


@pytest.mark.parametrize("mode", ["stochastic", "expected"])
def test_goods_are_conserved_with_decisions_that_differ_by_node(mode):
    """The balance of test_stage.test_goods_are_conserved_every_step with warehouses and retailers placing
    different shares of their orders."""
    data = supply_network({"supplier": 3, "warehouse": 6, "retailer": 20, "consumer": 400},
                          suppliers_per_node=[2, 2, 1], lead_time=[2, 1, 0], spread=[2, 1, 1],
                          capacity={"supplier": 150.0, "warehouse": 120.0}, seed=3)
    et = ("warehouse", REL, "retailer")
    data[et].edge_weight = torch.linspace(0.5, 2.0, data[et].num_edges)  # unequal order shares
    names = ["supplier", "warehouse", "retailer", "consumer"]
    behavior = {"warehouse_reorders": PerNode("warehouse", [1.0, 0.3, 0.7]), "retailer_reorders": PerNode("retailer", [0.2, 1.0, 0.5, 0.9])}
    model = chain_model(names, mode=mode, smoothing=0.0 if mode == "stochastic" else 2.0, behavior=behavior,
                        policies={"warehouse": {"forecast": True}, "retailer": {"forecast": True}},
                        params=PARAMS)
    traj = model(data, steps=30, seed=5, replicates=3)
    lhs, rhs = _goods(traj, ["warehouse", "retailer"], ["warehouse", "retailer", "consumer"], 6 * 100.0 + 20 * 30.0)
    assert torch.allclose(lhs, rhs, rtol=0, atol=1e-12 * float(rhs.max()))
    # fewer orders than the same run in which every node places its whole order
    orders = traj.series["retailer_orders"].sum(0)
    assert float(orders.min()) > 0
    ones = chain_model(names, mode=mode, smoothing=0.0 if mode == "stochastic" else 2.0,
                       policies={"warehouse": {"forecast": True}, "retailer": {"forecast": True}},
                       params=PARAMS)
    assert float(orders.sum()) < float(ones(data, steps=30, seed=5, replicates=3).series["retailer_orders"].sum())

