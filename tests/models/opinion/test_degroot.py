"""DeGroot: consensus at the stationary distribution, convergence at the second eigenvalue, frozen opinions,
initial opinions, per-group susceptibility."""
from __future__ import annotations

import math

import pytest
import torch

from lpm_graph.core import Model, Scale
from lpm_graph.data import random_graph
from lpm_graph.errors import ConfigError, PopulationGraphError
from lpm_graph.models.opinion import DeGroot, NeighbourMean
from tests.models.opinion.helpers import CONTACT, dense_w, final, graph, model

# strongly connected and aperiodic (the triangle 0-1-2 and the 4-cycle 0-1-3-4 have coprime lengths);
# asymmetric weights, so the stationary distribution is not proportional to degree
EDGES = [(0, 1), (1, 2), (2, 0), (1, 3), (3, 4), (4, 0), (2, 5), (5, 1), (0, 4), (3, 1)]
WEIGHTS = [1.0, 2.0, 0.7, 1.3, 0.4, 2.5, 1.1, 0.9, 0.6, 1.7]
X0 = [0.9, 0.1, 0.4, 0.75, 0.0, 0.55]


def _stationary(w: torch.Tensor) -> torch.Tensor:
    """pi with pi^T W = pi^T, sum 1: the eigenvector of W^T for the eigenvalue 1 (torch.linalg.eig)."""
    values, vectors = torch.linalg.eig(w.T)
    k = int(torch.argmin((values - 1).abs()))
    assert abs(complex(values[k]) - 1) < 1e-10
    pi = vectors[:, k].real
    return pi / pi.sum()


def _second_modulus(p: torch.Tensor) -> float:
    moduli = torch.linalg.eigvals(p).abs().sort(descending=True).values
    assert abs(float(moduli[0]) - 1) < 1e-10
    return float(moduli[1])


@pytest.mark.parametrize("alpha", [1.0, 0.6, 0.2])
def test_consensus_is_the_initial_opinions_weighted_by_the_stationary_distribution(alpha):
    data = graph(EDGES, 6, WEIGHTS, opinion=X0)
    pi = _stationary(dense_w(data))
    assert float(pi.min()) > 0 and float((pi - 1 / 6).abs().max()) > 0.02  # not uniform: a real check
    consensus = float(pi @ torch.tensor(X0, dtype=torch.float64))
    steps = {1.0: 150, 0.6: 250, 0.2: 800}[alpha]
    x = final(model(alpha, initial="attribute"), data, steps)
    torch.testing.assert_close(x[:, 0], torch.full((6,), consensus, dtype=torch.float64), rtol=0, atol=1e-9)


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_deviation_decays_at_the_second_largest_eigenvalue_modulus(alpha):
    data = graph(EDGES, 6, WEIGHTS, opinion=X0)
    w = dense_w(data)
    lam2 = _second_modulus((1 - alpha) * torch.eye(6, dtype=torch.float64) + alpha * w)
    consensus = float(_stationary(w) @ torch.tensor(X0, dtype=torch.float64))
    m = model(alpha, initial="attribute")
    ts = list(range(20, 61, 4))
    dev = [float((final(m, data, t)[:, 0] - consensus).norm()) for t in ts]
    t = torch.tensor(ts, dtype=torch.float64)
    y = torch.log(torch.tensor(dev, dtype=torch.float64))
    slope = float(((t - t.mean()) * (y - y.mean())).sum() / ((t - t.mean()) ** 2).sum())
    assert math.exp(slope) == pytest.approx(lam2, rel=1e-3)  # measured: within 1e-5


def test_the_update_is_one_lazy_averaging_step():
    data = graph(EDGES, 6, WEIGHTS, opinion=X0)
    x0 = torch.tensor(X0, dtype=torch.float64)
    expected = x0 + 0.25 * (dense_w(data) @ x0 - x0)  # 0.25: the same in the parameters' float32
    torch.testing.assert_close(final(model(0.25, initial="attribute"), data, 1)[:, 0], expected, rtol=1e-13,
                               atol=1e-13)


def test_nodes_without_neighbours_keep_their_opinion():
    # 6 hears no one (it talks to 0), 7 is alone, 8 hears only a weight-0 tie
    edges = [*EDGES, (6, 0), (2, 8)]
    data = graph(edges, 9, [*WEIGHTS, 1.0, 0.0], opinion=[*X0, 0.05, 0.95, 0.33])
    x = final(model(0.7, initial="attribute"), data, 900)[:, 0]
    torch.testing.assert_close(x[6:], torch.tensor([0.05, 0.95, 0.33], dtype=torch.float64), rtol=0, atol=0)
    # the others listen to 6 (through 0) and 6 to no one: they all end at 6's opinion
    torch.testing.assert_close(x[:6], torch.full((6,), 0.05, dtype=torch.float64), rtol=0, atol=1e-9)


def test_zero_influence_scale_freezes_opinions():
    data = random_graph(300, 6.0, seed=1)
    frozen = model(0.8, environment=[Scale("person.influence_scale", 0, None, 0.0)])
    x0 = final(model(0.0), data, 1, seed=4, replicates=1)
    torch.testing.assert_close(final(frozen, data, 25, seed=4), x0, rtol=0, atol=0)
    # a window: opinions stand still for steps 3..7 and move outside it
    window = model(0.8, environment=[Scale("person.influence_scale", 3, 8, 0.0, name="shutdown")])
    free = model(0.8)
    torch.testing.assert_close(final(window, data, 8, seed=4), final(free, data, 3, seed=4), rtol=0, atol=0)
    assert not torch.equal(final(window, data, 9, seed=4), final(window, data, 8, seed=4))


def test_influence_scale_multiplies_the_susceptibility():
    data = random_graph(200, 5.0, seed=2)
    halved = model(0.6, environment=[Scale("person.influence_scale", 0, None, 0.5)])
    torch.testing.assert_close(final(halved, data, 10, seed=1), final(model(0.3), data, 10, seed=1),
                               rtol=1e-12, atol=1e-14)


def test_initial_opinions_are_layout_invariant_and_within_the_range():
    data = random_graph(500, 4.0, seed=3)
    perm = torch.randperm(500, generator=torch.Generator().manual_seed(0))
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(500)
    permuted = graph(inverse[data[CONTACT].edge_index].t(), 500, uid=data["person"].uid[perm])
    m = model(0.0, low=-2.0, high=3.0, mode="stochastic")
    x, y = final(m, data, 1, seed=9, replicates=3), final(m, permuted, 1, seed=9, replicates=3)
    torch.testing.assert_close(y, x[perm], rtol=0, atol=0)  # node k of the permuted graph is node perm[k]
    assert float(x.min()) >= -2.0 and float(x.max()) <= 3.0
    assert float(x.mean()) == pytest.approx(0.5, abs=0.15)  # uniform on [-2, 3]: mean 0.5, sd 1.44 / sqrt(1500)
    assert float(x.var()) == pytest.approx(25 / 12, rel=0.1)
    assert not torch.equal(x[:, 0], x[:, 1])  # replicates draw their own initial opinions
    # and they move the same way: after 10 steps, the same opinions per uid (summation order may differ)
    moving = model(0.5, low=-2.0, high=3.0, mode="stochastic")
    torch.testing.assert_close(final(moving, permuted, 10, seed=9), final(moving, data, 10, seed=9)[perm],
                               rtol=1e-12, atol=1e-12)


def test_expected_mode_draws_the_initial_opinions_of_replicate_zero():
    data = random_graph(200, 5.0, seed=4)
    expected = final(model(0.4, mode="expected"), data, 5, seed=7)
    stochastic = final(model(0.4, mode="stochastic"), data, 5, seed=7, replicates=2)
    torch.testing.assert_close(expected[:, 0], stochastic[:, 0], rtol=0, atol=0)
    assert not torch.equal(final(model(0.4), data, 5, seed=8), expected)  # the seed keys them


def test_initial_opinions_from_an_attribute():
    data = graph(EDGES, 6, WEIGHTS, opinion=X0)
    x = final(model(0.0, initial="attribute", mode="stochastic"), data, 1, replicates=2)
    torch.testing.assert_close(x, torch.tensor(X0, dtype=torch.float64).unsqueeze(1).expand(6, 2))
    renamed = graph(EDGES, 6, WEIGHTS, belief=torch.tensor(X0))
    x = final(model(0.0, initial="attribute", attribute="belief"), renamed, 1)
    torch.testing.assert_close(x[:, 0], torch.tensor(X0, dtype=torch.float64))


def test_a_missing_or_bad_initial_attribute_is_a_clear_error():
    m = model(0.5, initial="attribute", attribute="belief")
    with pytest.raises(PopulationGraphError, match=r"missing attribute\(s\) \['belief'\]"):
        final(m, graph(EDGES, 6, WEIGHTS), 1)
    bad = graph(EDGES, 6, WEIGHTS, belief=torch.tensor([0.1, float("nan"), 0.2, 0.3, 0.4, 0.5]))
    with pytest.raises(PopulationGraphError, match=r"person.belief; node 1 has nan"):
        final(m, bad, 1)


def test_per_group_susceptibility():
    """A group with susceptibility 0 keeps its opinions; the other group moves."""
    data = random_graph(400, 6.0, seed=5)
    groupings = {"age": {"node_type": "person", "attribute": "age", "bins": [0, 40]}}
    m = model([0.0, 0.9], grouping="age", groupings=groupings)
    x0, x = final(model(0.0), data, 1, seed=2), final(m, data, 20, seed=2)
    young = data["person"].age < 40
    listens = torch.bincount(data[CONTACT].edge_index[1], minlength=400) > 0
    torch.testing.assert_close(x[young], x0[young], rtol=0, atol=0)
    assert bool((x != x0)[~young & listens].all()) and bool((x == x0)[~listens].all())
    traj = m(data, steps=3, seed=2)
    assert traj.grouped["age"]["opinion_var"].shape == (4, 2, 1)


def test_declarations_and_outcomes():
    data = random_graph(300, 8.0, seed=6)
    m = model(0.3)
    assert [s.key for s in m.state_specs.values()] == ["person.opinion"]
    assert m.state_specs["person.opinion"].kind == "continuous"
    assert list(m.observables) == ["opinion_var", "opinion_mean"]
    assert list(m.outcomes) == ["final_variance", "final_mean", "total_variance"]
    with torch.no_grad():
        traj = m(data, steps=15, seed=1)
    var, mean = traj.series["opinion_var"][:, 0], traj.series["opinion_mean"][:, 0]
    assert float(var[0]) == pytest.approx(1 / 12, rel=0.15) and float(var[-1]) < 1e-2 * float(var[0])
    assert float(m.outcomes["final_variance"](traj)) == float(var[-1])
    assert float(m.outcomes["final_mean"](traj)) == float(mean[-1])
    assert float(m.outcomes["total_variance"](traj)) == pytest.approx(float(var.sum()), rel=1e-12)
    other = DeGroot(state="belief", neighbours="person.neighbour_belief", name="belief")
    assert [o.name for o in other.outcomes()] == ["belief_final_variance", "belief_final_mean", "belief_total_variance"]


def test_gradient_of_the_final_variance_matches_finite_differences():
    data = random_graph(200, 5.0, seed=7)

    def outcome(alpha):
        m = Model(processes={"neighbours": NeighbourMean(), "degroot": DeGroot()}, mode="expected",
                  params={"degroot": {"susceptibility": 0.3}}).to(torch.float64)
        traj = m(data, steps=12, seed=3, overrides={"degroot.susceptibility": alpha})
        return m.outcomes["total_variance"](traj).sum()

    alpha = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    outcome(alpha).backward()
    h = 1e-6
    with torch.no_grad():
        up, down = (outcome(torch.tensor(0.3 + d, dtype=torch.float64)) for d in (h, -h))
        fd = (up - down) / (2 * h)
    assert float(alpha.grad) == pytest.approx(float(fd), rel=1e-6)
    assert float(alpha.grad) < 0  # more susceptible, less disagreement


@pytest.mark.parametrize("kwargs, match", [
    ({"initial": "normal"}, "initial must be one of"),
    ({"low": 1.0, "high": 1.0}, "high must be > low"),
    ({"low": float("nan")}, "low must be a finite number"),
    ({"neighbours": "venue.mean"}, "neighbours must be a field 'person.<name>'"),
])
def test_bad_arguments_name_the_field(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DeGroot(**kwargs)


def test_susceptibility_outside_its_domain_is_refused():
    with pytest.raises(ConfigError, match=r"model.params.degroot.susceptibility must be a probability"):
        model(1.5)
    with pytest.raises(ConfigError, match=r"degroot.susceptibility is missing"):
        Model(processes={"neighbours": NeighbourMean(), "degroot": DeGroot()})
