"""The labour market against hand-computed steps, its random streams, shocks, and its gradients."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.core.random import CounterRNG
from lpm_graph.data import generate_population
from lpm_graph.errors import PopulationGraphError
from tests.models.economy.helpers import closure, demand_shock, model, run, tiny_graph

#: s, A, a, mu and u0 of the hand-computed cases
HAND = {"labour": {"separation_rate": 0.1, "matching_efficiency": 0.5, "matching_elasticity": 0.5,
                   "hiring_margin": 0.0, "initial_unemployment": 0.25}}


def test_one_expected_step_equals_the_hand_computation():
    """Firm 0 has 4 members, firm 1 has 2, person 6 has no firm; everyone in the labour force starts employed
    with probability 0.75, firms start wanting their whole workforce (labour demand n_f).

    E = (3, 1.5), U = (1, 0.5); they keep (1 - s) E = (2.7, 1.35), so V = n - 2.7, n - 1.35 = (1.3, 0.65),
    V/U = 1.3 at both; h = min(1, 1.3, 0.5 * sqrt(1.3)) = 0.5700877; q = s = 0.1.
    e' = 0.75 - 0.1 * 0.75 + 0.25 * 0.5700877 = 0.8175219, unemployment 1 - e' = 0.1824781."""
    traj = run(model(HAND), tiny_graph(), steps=1)
    h = 0.5 * 1.3 ** 0.5
    e1 = 0.75 - 0.075 + 0.25 * h
    e = traj.final_state["person.employed"][:, 0]
    assert torch.allclose(e[:6], torch.full((6,), e1, dtype=torch.float64), rtol=0, atol=1e-15)
    assert float(e[6]) == 0.0
    assert float(traj.series["unemployment_rate"][0, 0]) == pytest.approx(0.25, abs=1e-15)
    assert float(traj.series["unemployment_rate"][1, 0]) == pytest.approx(1 - e1, abs=1e-15)
    assert float(traj.series["hires"][1, 0]) == pytest.approx(6 * 0.25 * h, abs=1e-14)
    assert float(traj.series["separations"][1, 0]) == pytest.approx(6 * 0.075, abs=1e-14)
    # the goods market of that step: output z E' per firm, wages w e' per person, no dividends (firms hold no
    # money yet), desired spending c_y y + c_m m at price 1, demand shared by capacity (4 : 2)
    s = traj.final_state
    assert torch.allclose(s["workplace.output"][:, 0], torch.tensor([4 * e1, 2 * e1], dtype=torch.float64))
    assert torch.allclose(s["person.income"][:6, 0], torch.full((6,), e1, dtype=torch.float64))
    desired = 0.8 * e1 + 0.05 * 1.6
    assert float(s["person.consumption"][6, 0]) == pytest.approx(0.05 * 1.6)  # out of the labour force: savings
    demand = 6 * desired + 0.05 * 1.6
    assert torch.allclose(s["workplace.demand"][:, 0], torch.tensor([demand * 4 / 6, demand * 2 / 6],
                                                                    dtype=torch.float64))


def test_a_firm_closure_raises_unemployment_by_the_hand_computed_amount():
    """Half of every firm closed (expected mode: o = 0.5): they want (2, 1) workers but keep (2.7, 1.35), so no
    vacancies and layoffs of 0.7/2.7 = 0.35/1.35 of the kept; q = 0.1 + 0.9 * 0.7/2.7 = 1/3, h = 0:
    e' = 0.75 * 2/3 = 0.5, unemployment 0.5 (against 0.1824781 without)."""
    traj = run(model(HAND, environment=[closure(0.5)]), tiny_graph(), steps=1)
    assert float(traj.series["unemployment_rate"][1, 0]) == pytest.approx(0.5, abs=1e-15)
    assert float(traj.series["hires"][1, 0]) == 0.0
    assert float(traj.series["separations"][1, 0]) == pytest.approx(6 * 0.25, abs=1e-14)


@pytest.fixture(scope="module")
def population():
    return generate_population(3000, seed=11)


@pytest.mark.parametrize("shock", ["closure", "demand"])
def test_shocks_raise_unemployment_while_they_last_and_it_recovers(population, shock):
    env = closure(0.2, 20, 26) if shock == "closure" else demand_shock(0.85, 20, 26)
    base = run(model(), population, steps=60).series["unemployment_rate"][:, 0]
    hit = run(model(environment=[env]), population, steps=60).series["unemployment_rate"][:, 0]
    assert torch.equal(base[:21], hit[:21])  # nothing changes before the shock
    # a closure acts on the labour market of its first step; a demand shock on the next one (firms hire
    # from last step's sales)
    first = 21 if shock == "closure" else 22
    assert float((hit[first:27] - base[first:27]).min()) > 0.01
    assert float((hit[-1] - base[-1]).abs()) < 0.005  # back to the labour market's steady state


def test_stochastic_draws_come_from_the_named_streams(population):
    """Separations use stream 'separation', hires stream 'hiring' (lanes of the counter-based generator at the
    step, keyed by uid): reproduce step 0 by hand from the model's own probabilities."""
    m = model(mode="stochastic")
    graph = m.prepare(population)
    R = 4
    e0 = run(m, graph, steps=1, seed=9, replicates=R)
    traj0 = m(graph, steps=1, seed=9, replicates=R)
    labour = m.process("labour")
    from lpm_graph.core.process import StepContext

    ctx = StepContext(0, graph, m.params.at(0), m.sampler, 1.0, R, torch.float64, 9)
    init = {**labour.init(ctx).state, **m.process("market").init(ctx).state}
    e = init["person.employed"]
    q, h, _, _ = labour.probabilities(ctx, e, init["workplace.labour_demand"], 1.0)
    rev = graph.layout(("workplace", "rev_member_of", "person"))
    q_i, h_i = rev.matmul(q), rev.matmul(h)
    rng = CounterRNG(graph.uid["person"], 9, R, "person")
    u_sep = rng.uniform(0, "separation", torch.float64)
    u_hire = rng.uniform(0, "hiring", torch.float64)
    lf = rev.matmul(torch.ones(graph.num_nodes["workplace"], 1, dtype=torch.float64))
    expected = e - e * (u_sep < q_i) + (lf - e) * (u_hire < h_i)
    assert torch.equal(traj0.final_state["person.employed"], expected)
    swapped = e - e * (u_hire < q_i) + (lf - e) * (u_sep < h_i)
    assert not torch.equal(expected, swapped)
    assert torch.equal(e0.final_state["person.employed"], expected)
    assert float(traj0.series["hires"][1].min()) > 0 and float(traj0.series["separations"][1].min()) > 0


def test_stochastic_runs_are_reproducible_and_the_mean_field_is_their_mean(population):
    m = model(mode="stochastic")
    a = run(m, population, steps=30, seed=2, replicates=8).series["unemployment_rate"]
    b = run(m, population, steps=30, seed=2, replicates=8).series["unemployment_rate"]
    assert torch.equal(a, b)
    assert not torch.equal(a[:, 0], a[:, 1])
    mean_field = run(model(), population, steps=30).series["unemployment_rate"][:, 0]
    assert float((a.mean(1) - mean_field)[10:].abs().max()) < 0.01


def test_graph_without_firms_or_with_two_jobs_is_refused():
    with pytest.raises(PopulationGraphError, match="at most one workplace"):
        model().prepare(_two_jobs())


def _two_jobs():
    data = tiny_graph([0, 0, 1])
    member = ("person", "member_of", "workplace")
    ei = torch.cat([data[member].edge_index, torch.tensor([[0], [1]])], 1)
    data[member].edge_index = ei
    data[("workplace", "rev_member_of", "person")].edge_index = ei.flip(0)
    return data


@pytest.mark.parametrize("name", ["labour.separation_rate", "labour.matching_efficiency", "market.propensity_income",
                                  "price.adjustment"])
def test_gradients_of_the_mean_field_equal_finite_differences(name):
    data = generate_population(400, seed=5)
    m = model(learnable=[name])
    traj = m(data, steps=15)
    value = traj.series["unemployment_rate"].sum() + traj.series["consumption"].sum()
    (grad,) = torch.autograd.grad(value, [m.params.raw(name)])
    base = float(m.params[name].detach())
    eps = 1e-6

    def at(v):
        ns, local = name.split(".")
        t = run(model({ns: {local: v}}), data, steps=15)
        return float(t.series["unemployment_rate"].sum() + t.series["consumption"].sum())

    fd = (at(base + eps) - at(base - eps)) / (2 * eps)
    assert float(grad) == pytest.approx(fd, rel=1e-5, abs=1e-9)
    assert abs(fd) > 1e-4
