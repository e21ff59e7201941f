"""Stages, demand and policies: a hand-computed chain, exact conservation of goods, lead times, disruptions."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.core import Model
from lpm_graph.errors import ConfigError, PopulationGraphError
from lpm_graph.models.supply_chain import Disruption, ReorderPoint, Stage, supply_network
from tests.models.supply_chain.helpers import REL, chain_model, line_graph

THREE = ["supplier", "retailer", "consumer"]


def test_three_nodes_by_hand():
    """supplier (capacity 4) -> retailer (stock 5, spoilage 0.1, base stock 10) -> consumer (demand 3), lead
    times 2 and 0, expected mode, exact minima: four steps computed by hand (in the comments)."""
    data = line_graph({"supplier": 1, "retailer": 1, "consumer": 1}, [2, 0], capacity={"supplier": 4.0})
    model = chain_model(THREE, policies={"retailer": {}}, mode="expected",
                        params={"demand": {"rate": 3.0}, "retailer_policy": {"level": 10.0},
                                "retailer": {"initial_stock": 5.0, "spoilage": 0.1, "holding_cost": 1.0,
                                             "backlog_cost": 2.0}})
    traj = model(data, steps=4)
    s = {k: v[:, 0].tolist() for k, v in traj.series.items()}
    # t=0: IP 5 -> order 5; supplier ships min(4, 5) = 4 (lead 2: pipeline [0, 4]); retailer 5 - 0.5 spoiled,
    #      ships the consumer's 3, keeps 1.5; outstanding 1
    # t=1: IP 1.5 + 4 + 1 = 6.5 -> order 3.5; supplier ships min(4, 4.5) = 4 -> pipeline [4, 4]; nothing arrives;
    #      1.5 - 0.15 = 1.35 shipped of 3: backlog 1.65; outstanding 0.5
    # t=2: IP 0 + 8 + 0.5 - 1.65 = 6.85 -> order 3.15; supplier ships 3.65 -> [4, 3.65]; 4 arrive, 0.4 spoil,
    #      3.6 shipped of 4.65: backlog 1.05
    # t=3: IP 0 + 7.65 + 0 - 1.05 = 6.6 -> order 3.4; supplier ships 3.4 -> [3.65, 3.4]; 4 arrive, 0.4 spoil,
    #      3.6 shipped of 4.05: backlog 0.45
    expected = {
        "retailer_orders": [0, 5, 3.5, 3.15, 3.4],
        "supplier_produced": [0, 4, 4, 3.65, 3.4],
        "supplier_backlog": [0, 1, 0.5, 0, 0],
        "retailer_stock": [5, 1.5, 0, 0, 0],
        "retailer_wasted": [0, 0.5, 0.15, 0.4, 0.4],
        "retailer_in_transit": [0, 4, 8, 7.65, 7.05],
        "retailer_backlog": [0, 0, 1.65, 1.05, 0.45],
        "consumer_delivered": [0, 3, 1.35, 3.6, 3.6],
        "consumer_waiting": [0, 0, 1.65, 1.05, 0.45],
        "retailer_cost": [0, 1.5, 3.3, 2.1, 0.9],
        "consumer_demand": [0, 3, 3, 3, 3],
    }
    for name, values in expected.items():
        assert s[name] == pytest.approx(values, abs=1e-12), name


def _goods(traj, stocked, receiving, initial):
    s = traj.series
    held = sum(s[f"{nt}_stock"] for nt in stocked) + sum(s[f"{nt}_in_transit"] for nt in receiving)
    gone = s["consumer_delivered"].cumsum(0) + sum(s[f"{nt}_wasted"] for nt in stocked).cumsum(0)
    return held + gone, initial + s["supplier_produced"].cumsum(0)


@pytest.mark.parametrize("mode", ["stochastic", "expected"])
def test_goods_are_conserved_every_step(mode):
    """stock + in transit + delivered + wasted = initial + produced at every step, to 1e-12 of the total
    (float64), through spread lead times, capacities (node and edge), spoilage, shortages and a closure."""
    data = supply_network({"supplier": 3, "warehouse": 6, "retailer": 20, "consumer": 400},
                          suppliers_per_node=[2, 2, 1], lead_time=[2, 1, 0], spread=[2, 1, 1],
                          capacity={"supplier": 150.0, "warehouse": 120.0}, seed=3)
    et = ("warehouse", REL, "retailer")
    data[et].capacity = torch.linspace(5.0, 40.0, data[et].num_edges)  # some edges bind
    data[et].edge_weight = torch.linspace(0.5, 2.0, data[et].num_edges)  # unequal order shares
    names = ["supplier", "warehouse", "retailer", "consumer"]
    close = Disruption("warehouse", nodes=[0, 3], start=5, end=12)
    model = chain_model(names, mode=mode, smoothing=0.0 if mode == "stochastic" else 2.0, environment=[close],
                        policies={"warehouse": {"forecast": True}, "retailer": {"forecast": True}},
                        params={"demand": {"rate": 1.1},
                                "warehouse": {"initial_stock": 100.0, "spoilage": 0.02},
                                "retailer": {"initial_stock": 30.0, "spoilage": 0.05},
                                "warehouse_policy": {"cover": 4.0, "safety_factor": 1.0, "initial_forecast": 60.0},
                                "retailer_policy": {"cover": 3.0, "safety_factor": 0.5, "initial_forecast": 20.0}})
    traj = model(data, steps=30, seed=5, replicates=3)
    lhs, rhs = _goods(traj, ["warehouse", "retailer"], ["warehouse", "retailer", "consumer"], 6 * 100.0 + 20 * 30.0)
    assert torch.allclose(lhs, rhs, rtol=0, atol=1e-12 * float(rhs.max()))
    assert float(traj.series["retailer_backlog"].max()) > 0 and float(traj.series["retailer_wasted"].sum()) > 0
    # the closure binds: with warehouses 0 and 3 closed in steps 5..11 less is shipped then than without
    model.environment = torch.nn.ModuleList([p for p in model.environment if p.name != "disruption"])
    open_ = model(data, steps=30, seed=5, replicates=3)
    shipped, without = traj.series["warehouse_shipped"][6:13].sum(), open_.series["warehouse_shipped"][6:13].sum()
    assert float(shipped) < 0.9 * float(without)


def test_a_dropped_shipment_direction_breaks_conservation():
    """The balance test can fail: goods that leave the shipper but never enter a pipeline show up."""
    data = line_graph({"supplier": 1, "retailer": 2, "consumer": 8}, [1, 0])
    model = chain_model(THREE, policies={"retailer": {}}, params={"retailer_policy": {"level": 12.0}})
    stage = model.process("retailer")
    forward = stage.forward

    def leaky(ctx, state, fields):
        out = forward(ctx, state, fields)
        out.fields["consumer.inbound"] = out.fields["consumer.inbound"] * 0.5
        return out

    stage.forward = leaky
    traj = model(data, steps=5, seed=1)
    lhs, rhs = _goods(traj, ["retailer"], ["retailer", "consumer"], 0.0)
    assert not torch.allclose(lhs, rhs, atol=1e-6)


@pytest.mark.parametrize("lead", [0, 1, 3])
def test_a_shipment_is_available_lead_time_steps_later(lead):
    data = line_graph({"supplier": 1, "retailer": 1, "consumer": 1}, [lead, 0])
    model = chain_model(THREE, policies={"retailer": {}}, mode="expected",
                        params={"demand": {"rate": 0.0}, "retailer_policy": {"level": 7.0}})
    traj = model(data, steps=6)
    stock = traj.series["retailer_stock"][:, 0].tolist()
    # ordered and shipped at step 0, in stock after step `lead` (series index lead + 1)
    assert stock[lead] == 0.0 and stock[lead + 1] == 7.0


def test_poisson_demand_has_its_rate_and_variance():
    data = line_graph({"supplier": 1, "retailer": 1, "consumer": 2000}, [1, 0])
    model = chain_model(THREE, params={"demand": {"rate": 2.5}})
    traj = model(data, steps=20, seed=3, replicates=2)
    d = traj.series["consumer_demand"][1:]
    n = 2000 * d.numel()
    mean = float(d.sum()) / n
    assert abs(mean - 2.5) < 4 * (2.5 / n) ** 0.5  # a factor-2 error in the rate fails by far
    # per node: Poisson variance = mean (from the final step's draws of every consumer)
    assert float(traj.series["consumer_demand"][1:].var()) == pytest.approx(2000 * 2.5, rel=0.8)


def test_reorder_point_orders_only_at_the_reorder_point_and_its_gradient_flows():
    data = line_graph({"supplier": 1, "retailer": 1, "consumer": 1}, [1, 0])
    model = Model(processes={"demand": chain_model(THREE).process("demand"),
                             **{p.name: p for p in chain_model(THREE, smoothing=0.5).processes if p.name != "demand"}},
                  environment=[ReorderPoint("retailer", smoothing=0.5, name="reorder")], mode="stochastic",
                  surrogate="straight_through", dtype=torch.float64,
                  params={"demand": {"rate": 3.0}, "reorder": {"reorder_point": 4.0, "quantity": 10.0},
                          "retailer": {"initial_stock": 10.0, "holding_cost": 1.0, "order_cost": 5.0,
                                       "backlog_cost": 3.0}})
    traj = model(data, steps=40, seed=2, replicates=4)
    orders = traj.series["retailer_orders"]
    placed = (orders > 0).double().mean()
    assert 0.1 < float(placed) < 0.5  # orders of about s + Q - IP every few steps, not every step
    assert float(orders[orders > 0].min()) >= 10.0 - 1e-9
    leaves = {"reorder.reorder_point": torch.tensor(4.0, dtype=torch.float64, requires_grad=True)}
    traj = model(data, steps=40, seed=2, replicates=4, overrides=leaves)
    traj.series["retailer_cost"].sum().backward()
    g = leaves["reorder.reorder_point"].grad
    assert g is not None and torch.isfinite(g) and float(g) != 0.0


def test_wiring_and_graph_errors_name_the_fix():
    data = line_graph({"supplier": 1, "retailer": 1, "consumer": 1}, [6, 0])
    with pytest.raises(PopulationGraphError, match="max_lead_time >= 6"):
        chain_model(THREE)(data, steps=1)
    with pytest.raises(ConfigError, match="does not start at"):
        Stage("retailer", downstream=[["warehouse", REL, "consumer"]])
    with pytest.raises(ConfigError, match="either produces"):
        Stage("x", downstream=[["x", REL, "y"]], produces=True, consumes=True)
    bad = line_graph({"supplier": 1, "retailer": 1, "consumer": 1}, [1, 0])
    with pytest.raises(PopulationGraphError, match="does not exist"):
        chain_model(THREE, environment=[Disruption("retailer", nodes=[3])])(bad, steps=1)
