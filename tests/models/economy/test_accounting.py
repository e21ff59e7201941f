"""Money and goods are conserved exactly: every payment has a payer and a payee, every good is consumed or stored.

Checked at every step (a run of T steps for T = 1..12 from the same seed: the
state after step T), in float64, in expected and stochastic mode, with a
firm closure and a demand shock.  The tolerance is 8 ulps of the largest
holding times the number of nodes summed, i.e. rounding only; an error in
any flow (a payment not booked on both sides) is many orders larger.
"""
from __future__ import annotations

import pytest
import torch

from lpm_graph.data import generate_population
from tests.models.economy.helpers import closure, demand_shock, model, run

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
@pytest.mark.parametrize("shock", ["none", "closure", "demand"])
def test_money_and_goods_are_conserved_at_every_step(population, mode, replicates, shock):
    env = {"none": [], "closure": [closure(0.3, 3, 8)], "demand": [demand_shock(0.7, 3, 8)]}[shock]
    m = model({"market": {"initial_savings": 1.6}}, environment=env, mode=mode)
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
