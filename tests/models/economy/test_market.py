"""The goods market (lpm_graph.models.economy.market): one step against the hand computation; money and goods are
conserved exactly: every payment has a payer and a payee, every good is consumed or stored.

Checked at every step (a run of T steps for T = 1..12 from the same seed: the
state after step T), in float64, in expected and stochastic mode, with a
firm closure and a demand shock.  The tolerance is 8 ulps of the largest
holding times the number of nodes summed, i.e. rounding only; an error in
any flow (a payment not booked on both sides) is many orders larger.
"""
from __future__ import annotations

import pytest
import torch

from lpm_graph.behavior import FixedDecisions
from lpm_graph.data import generate_population
from lpm_graph.core.graph import Graph
from lpm_graph.core.process import StepContext
from lpm_graph.core.sampling import Sampler
from lpm_graph.models.economy import GoodsMarket
from tests.models.economy.helpers import closure, demand_shock, model, run, tiny_graph

EPS = torch.finfo(torch.float64).eps


@pytest.fixture(scope="module")
def population():
    return generate_population(600, seed=5)


def _money(state):
    return state["person.savings"].sum(0) + state["workplace.money"].sum(0)


def _tolerance(states, n_nodes):
    scale = max(float(s["person.savings"].abs().max()) + float(s["workplace.money"].abs().max()) for s in states)
    return 8 * EPS * n_nodes * scale


@pytest.mark.parametrize("mode,replicates", [("expected", 1), ("stochastic", 3)])
@pytest.mark.parametrize("shock", ["none", "closure", "demand", "spends"])
def test_money_and_goods_are_conserved_at_every_step(population, mode, replicates, shock):
    env = {"none": [], "closure": [closure(0.3, 3, 8)], "demand": [demand_shock(0.7, 3, 8)], "spends": []}[shock]
    # "spends": a behaviour's decision person.spends, a share of the planned spending (docs/behavior.md)
    behavior = {"fixed": FixedDecisions({"spends": 0.6}, grouping=None)} if shock == "spends" else {}
    m = model({"market": {"initial_savings": 1.6}}, environment=env, mode=mode, behavior=behavior)
    states = [run(m, population, steps=T, seed=4, replicates=replicates).final_state for T in range(1, 13)]
    n_nodes = population["person"].num_nodes + population["workplace"].num_nodes
    money0 = 1.6 * population["person"].num_nodes
    tol = _tolerance(states, n_nodes)
    assert tol < 1e-9
    previous_inventory = torch.zeros(replicates, dtype=torch.float64)
    for t, s in enumerate(states, start=1):
        drift = (_money(s) - money0).abs().max()
        assert drift <= tol, f"step {t}: money changed by {float(drift)}"
        produced = s["workplace.output"].sum(0)
        consumed = s["person.consumption"].sum(0)
        inventory = s["workplace.inventory"].sum(0)
        gap = (produced - consumed - (inventory - previous_inventory)).abs().max()
        assert gap <= 8 * EPS * n_nodes * float(produced.max()), f"step {t}: goods off by {float(gap)}"
        assert float(produced.min()) > 0
        previous_inventory = inventory
        assert float(s["person.savings"].min()) >= 0  # nobody spends more than they hold


def test_a_reverse_layout_that_is_not_the_membership_flipped_is_refused(population):
    """Wages and hiring reach people along the reverse edges; reverse edges that are not the membership edges
    flipped (here: every member paid by firm 0) would pay wages that no firm books, so the graph is refused,
    and a graph without the reverse direction too."""
    from lpm_graph.errors import PopulationGraphError

    m = model(mode="expected")
    rev = ("workplace", "rev_member_of", "person")
    wrong = population.clone()
    ei = wrong[rev].edge_index.clone()
    ei[0] = 0
    wrong[rev].edge_index = ei
    with pytest.raises(PopulationGraphError, match="must be the"):
        m.prepare(wrong)
    dropped = population.clone()
    del dropped[rev]
    with pytest.raises(PopulationGraphError, match="rev_member_of"):
        m.prepare(dropped)


# -----------------------------------------------------------------------------------------
# One step of GoodsMarket alone, by hand
# -----------------------------------------------------------------------------------------

F64 = torch.float64
#: w, z, c_y, c_m, delta of the hand-computed step
PARAMS = {"wage": 1.0, "productivity": 0.25, "propensity_income": 0.5, "propensity_wealth": 0.1, "payout": 0.2,
          "initial_savings": 1.0}


def _step(fields=None, inventory=(0.0, 0.1)):
    """The tiny economy (firm 0: people 0..3, firm 1: 4 and 5, person 6 outside): people 0, 1, 3 and 4 employed,
    everyone holding 1, firm money (10, -5), the price 2."""
    market = GoodsMarket()
    graph = Graph(tiny_graph(), market.requirements(), F64)
    ctx = StepContext(0, graph, {f"market.{k}": torch.tensor(v, dtype=F64) for k, v in PARAMS.items()},
                      Sampler("expected"), 1.0, 1, F64)
    col = lambda *v: torch.tensor(v, dtype=F64).unsqueeze(1)  # noqa: E731
    state = {"person.employed": col(1, 1, 0, 1, 1, 0, 0), "workplace.price_level": col(2.0, 2.0),
             "person.savings": col(*[1.0] * 7), "workplace.money": col(10.0, -5.0),
             "workplace.inventory": col(*inventory)}
    return market(ctx, state, fields or {}).state


def test_one_step_of_the_goods_market_by_hand():
    """E = (3, 1), Y = z E = (0.75, 0.25); wages 1 to each employed person, W = (3, 1); dividends 0.2 max(M, 0)
    = (2, 0), shared by the 7 people: d = 2/7; income y = e + 2/7, sum 6; desired x = 0.5 y + 0.1 m, sum 3.7; real
    demand D = 3.7 / 2 = 1.85, shared by workforce 4 : 2, D_f = (1.2333, 0.6167); available S + Y = (0.75, 0.35):
    both firms sell out, served rho = 1.1 / 1.85; M' = (10 - 3 - 2 + 2 * 0.75, -5 - 1 + 2 * 0.35) = (6.5, -5.3)."""
    s = _step()
    e = torch.tensor([1, 1, 0, 1, 1, 0, 0], dtype=F64)
    y = e + 2 / 7
    desired = 0.5 * y + 0.1
    rho = 1.1 / 1.85
    c = rho * desired / 2
    torch.testing.assert_close(s["person.income"][:, 0], y, rtol=0, atol=1e-15)
    torch.testing.assert_close(s["person.consumption"][:, 0], c, rtol=0, atol=1e-15)
    torch.testing.assert_close(s["person.savings"][:, 0], 1 + y - 2 * c, rtol=0, atol=1e-15)
    torch.testing.assert_close(s["workplace.money"][:, 0], torch.tensor([6.5, -5.3], dtype=F64), rtol=0, atol=1e-14)
    torch.testing.assert_close(s["workplace.output"][:, 0], torch.tensor([0.75, 0.25], dtype=F64))
    torch.testing.assert_close(s["workplace.inventory"][:, 0], torch.zeros(2, dtype=F64), rtol=0, atol=1e-15)
    demand = torch.tensor([1.85 * 4 / 6, 1.85 * 2 / 6], dtype=F64)
    torch.testing.assert_close(s["workplace.demand"][:, 0], demand, rtol=0, atol=1e-15)
    torch.testing.assert_close(s["workplace.labour_demand"][:, 0], demand / 0.25, rtol=0, atol=1e-14)
    # every payment booked twice: the money of people and firms together is unchanged
    assert float(s["person.savings"].sum() + s["workplace.money"].sum()) == pytest.approx(7 + 5, abs=1e-13)


def test_stock_left_unsold_is_kept_and_a_closed_firm_sells_nothing():
    # firm 1 with 5 units in stock sells its demand 0.6167 and keeps the rest; closed (operating 0), demand goes
    # to firm 0 alone (which can sell only 0.75 of 1.85)
    s = _step(inventory=(0.0, 5.0))
    assert float(s["workplace.inventory"][1, 0]) == pytest.approx(5.25 - 1.85 * 2 / 6, abs=1e-14)
    closed = _step(fields={"workplace.operating": torch.tensor([[1.0], [0.0]], dtype=F64)}, inventory=(0.0, 5.0))
    torch.testing.assert_close(closed["workplace.demand"][:, 0], torch.tensor([1.85, 0.0], dtype=F64))
    assert float(closed["workplace.inventory"][1, 0]) == 5.25  # nothing sold
    assert float(closed["person.consumption"].sum()) == pytest.approx(0.75 / 1, abs=1e-14)  # firm 0's output only


def test_a_demand_shock_scales_spending_but_nobody_spends_more_than_they_hold():
    # sigma = 10: desired 10 (0.5 y + 0.1 m) exceeds income and savings y + m for everyone, so x = y + m; with
    # ample stock every unit demanded is sold
    s = _step(fields={"person.spending_scale": torch.tensor(10.0, dtype=F64)}, inventory=(100.0, 100.0))
    y = torch.tensor([1, 1, 0, 1, 1, 0, 0], dtype=F64) + 2 / 7
    torch.testing.assert_close(s["person.consumption"][:, 0], (y + 1) / 2, rtol=0, atol=1e-15)
    torch.testing.assert_close(s["person.savings"][:, 0], torch.zeros(7, dtype=F64), rtol=0, atol=1e-15)
    half = _step(fields={"person.spending_scale": torch.tensor(0.5, dtype=F64)}, inventory=(100.0, 100.0))
    torch.testing.assert_close(half["person.consumption"][:, 0], 0.5 * (0.5 * y + 0.1) / 2, rtol=0, atol=1e-15)


def test_the_decision_to_spend_scales_each_persons_planned_spending():
    # spends 0.5 for everyone: desired x = 0.5 (0.5 y + 0.1 m), real demand D = 1.85 / 2, shared 4 : 2; with ample
    # stock all of it is sold
    y = torch.tensor([1, 1, 0, 1, 1, 0, 0], dtype=F64) + 2 / 7
    half = _step(fields={"person.spends": torch.full((7, 1), 0.5, dtype=F64)}, inventory=(100.0, 100.0))
    torch.testing.assert_close(half["workplace.demand"][:, 0], torch.tensor([0.925 * 4 / 6, 0.925 * 2 / 6], dtype=F64),
                               rtol=0, atol=1e-15)
    torch.testing.assert_close(half["person.consumption"][:, 0], 0.5 * (0.5 * y + 0.1) / 2, rtol=0, atol=1e-15)
    # per person: person 0 spends nothing, person 2 all of the plan; nobody spends more than they hold
    spends = torch.tensor([0.0, 0.5, 1.0, 1.0, 0.25, 1.0, 1.0], dtype=F64)
    each = _step(fields={"person.spends": spends.unsqueeze(1)}, inventory=(100.0, 100.0))
    torch.testing.assert_close(each["person.consumption"][:, 0], spends * (0.5 * y + 0.1) / 2, rtol=0, atol=1e-15)
    torch.testing.assert_close(each["person.savings"][:, 0], 1 + y - spends * (0.5 * y + 0.1), rtol=0, atol=1e-15)


def test_the_firm_must_be_a_node_type():
    from lpm_graph.errors import ConfigError

    with pytest.raises(ConfigError, match=r"GoodsMarket \(market\)\.firm must be a node type"):
        GoodsMarket(firm="workplace.x")
