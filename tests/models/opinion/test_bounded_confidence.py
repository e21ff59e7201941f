"""Hegselmann-Krause: one step against a dense computation, finite-time convergence on a complete graph to
clusters at least epsilon apart, the surrogate's gradient in epsilon against finite differences."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.core import Model
from lpm_graph.data import random_graph
from lpm_graph.errors import ConfigError
from lpm_graph.models.opinion import BoundedConfidence, BoundedConfidenceMean, DeGroot
from lpm_graph.models.opinion.clusters import cluster_tops
from tests.models.opinion.helpers import complete, graph

# a weighted directed graph: 0 hears 1, 2 and 3; 1 hears 0; 2 hears 1; 3 hears 4; 4 hears 3 (weight 0.5)
EDGES = [(1, 0), (2, 0), (3, 0), (0, 1), (1, 2), (4, 3), (3, 4), (5, 1)]
WEIGHTS = [1.0, 2.0, 0.5, 1.5, 0.7, 1.2, 0.5, 3.0]
X0 = [0.30, 0.42, 0.55, 0.10, 0.25, 0.35]


def uniform_hk(epsilon, **kwargs) -> Model:
    return Model(processes={"confidence": BoundedConfidence(**kwargs), "degroot": DeGroot()},
                 params={"confidence": {"epsilon": epsilon}, "degroot": {"susceptibility": 1.0}},
                 mode="stochastic").to(torch.float64)


def dense_step(x, edges, weights, epsilon, self_weight=1.0):
    """x_i <- (s x_i + sum_j w_ji 1[|x_i - x_j| < eps] x_j) / (s + sum_j w_ji 1[...]), by loops."""
    out = []
    for i in range(len(x)):
        num, den = self_weight * x[i], self_weight
        for (j, k), w in zip(edges, weights):
            if k == i and abs(x[i] - x[j]) < epsilon:
                num, den = num + w * x[j], den + w
        out.append(num / den if den > 0 else x[i])
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("epsilon, self_weight", [(0.2, 1.0), (0.13, 0.0), (1.0, 2.0)])
def test_one_step_is_the_mean_of_the_confident_neighbours_and_self(epsilon, self_weight):
    data = graph(EDGES, 6, WEIGHTS, opinion=X0)
    m = Model(processes={"confidence": BoundedConfidence(self_weight=self_weight),
                         "degroot": DeGroot(initial="attribute")},
              params={"confidence": {"epsilon": epsilon}, "degroot": {"susceptibility": 1.0}}).to(torch.float64)
    with torch.no_grad():
        x = m(data, steps=1).final_state["person.opinion"][:, 0]
    expected = dense_step(X0, EDGES, WEIGHTS, epsilon, self_weight)
    torch.testing.assert_close(x, expected, rtol=1e-14, atol=1e-15)
    # the checks bite: something moves, and not everyone to the same place
    assert float((x - torch.tensor(X0, dtype=torch.float64)).abs().max()) > 0.01


def test_the_layer_accepts_a_sparse_adjacency_and_matches_the_edge_index():
    x = torch.rand(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ei = torch.tensor(EDGES).t()
    w = torch.tensor(WEIGHTS, dtype=torch.float64)
    layer = BoundedConfidenceMean()
    a = layer(x, ei, 0.3, w)
    adj_t = torch.sparse_coo_tensor(ei.flip(0), w, (6, 6), check_invariants=True).coalesce()  # adj_t: [dst, src]
    torch.testing.assert_close(layer(x, adj_t, 0.3), a, rtol=1e-14, atol=0)
    for r in range(3):
        torch.testing.assert_close(a[:, r], dense_step(x[:, r].tolist(), EDGES, WEIGHTS, 0.3), rtol=1e-14, atol=1e-15)


def _final(m, data, steps, replicates=16, seed=1):
    with torch.no_grad():
        return m(data, steps=steps, seed=seed, replicates=replicates).final_state["person.opinion"]


@pytest.mark.parametrize("epsilon", [0.5, 0.25, 0.15, 0.1])
def test_complete_graph_converges_in_finite_time_to_clusters_at_least_epsilon_apart(epsilon):
    """Dittmer (2001): finite-time convergence; at the fixed point two clusters closer than epsilon would still
    average, so they are at least epsilon apart (Blondel, Hendrickx, Tsitsiklis 2009). 100 people uniform on
    [0, 1], 16 seeds: every seed is at a fixed point by step 30 (measured: by step 20)."""
    data = complete(100)
    m = uniform_hk(epsilon)
    x, later = _final(m, data, 30), _final(m, data, 31)
    assert float((later - x).abs().max()) <= 1e-14  # not moving any more (one rounding at most)
    s = x.sort(0).values
    gaps = s[1:] - s[:-1]
    inside, between = gaps[gaps <= 1e-12], gaps[gaps > 1e-12]
    assert inside.numel() + between.numel() == gaps.numel()
    if between.numel():
        assert float(between.min()) >= epsilon  # measured minimum: 1.2 epsilon .. 1.7 epsilon
    clusters = cluster_tops(x, 1e-9).sum(0)
    if epsilon == 0.5:
        assert bool((clusters == 1).all())  # consensus in every seed
    else:  # between the theorem's bounds: at most 1/epsilon + 1 clusters, at least one per 1 / (2 epsilon) ... 1
        assert float(clusters.max()) <= 1 / epsilon + 1
        assert 1 < float(clusters.mean()) <= 1 / (2 * epsilon) + 1


def test_cluster_count_falls_as_the_confidence_bound_grows():
    data = complete(100)
    means = [float(cluster_tops(_final(uniform_hk(e), data, 30), 1e-9).sum(0).mean()) for e in (0.05, 0.1, 0.25)]
    assert means[0] > means[1] > means[2]  # measured 7.8, 3.5, 1.4


def test_no_neighbour_within_epsilon_keeps_ones_opinion():
    data = graph([(0, 1), (1, 0), (2, 1)], 3, opinion=[0.0, 0.5, 0.52])
    m = Model(processes={"confidence": BoundedConfidence(self_weight=0.0), "degroot": DeGroot(initial="attribute")},
              params={"confidence": {"epsilon": 0.1}, "degroot": {"susceptibility": 1.0}}).to(torch.float64)
    x = _final(m, data, 1, replicates=1)[:, 0]
    torch.testing.assert_close(x, torch.tensor([0.0, 0.52, 0.52], dtype=torch.float64), rtol=0, atol=0)


@pytest.mark.parametrize("indicator", ["smooth", "hard"])
def test_gradient_in_epsilon(indicator):
    """smooth: the exact derivative of the smooth model, against central differences in float64; hard: the
    straight-through surrogate, finite (its finite differences are 0 almost everywhere)."""
    data = random_graph(150, 6.0, seed=3)

    def outcome(eps):
        m = Model(processes={"confidence": BoundedConfidence(indicator=indicator, temperature=0.05),
                             "degroot": DeGroot()}, mode="expected",
                  params={"confidence": {"epsilon": 0.2}, "degroot": {"susceptibility": 0.8}},
                  checkpoint=True).to(torch.float64)
        traj = m(data, steps=8, seed=2, overrides={"confidence.epsilon": eps})
        return m.outcomes["total_variance"](traj).sum()

    eps = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    outcome(eps).backward()
    assert torch.isfinite(eps.grad) and float(eps.grad) < 0  # a wider bound, less disagreement
    if indicator == "smooth":
        h = 1e-6
        with torch.no_grad():
            fd = (outcome(torch.tensor(0.2 + h, dtype=torch.float64))
                  - outcome(torch.tensor(0.2 - h, dtype=torch.float64))) / (2 * h)
        assert float(eps.grad) == pytest.approx(float(fd), rel=1e-6)


def test_smooth_indicator_approaches_the_hard_one():
    data = graph(EDGES, 6, WEIGHTS, opinion=X0)
    xs = []
    for indicator, tau in (("hard", 0.01), ("smooth", 1e-4), ("smooth", 0.05)):
        m = Model(processes={"confidence": BoundedConfidence(indicator=indicator, temperature=tau),
                             "degroot": DeGroot(initial="attribute")},
                  params={"confidence": {"epsilon": 0.23}, "degroot": {"susceptibility": 1.0}}).to(torch.float64)
        xs.append(_final(m, data, 3, replicates=1))
    assert float((xs[1] - xs[0]).abs().max()) < 1e-6 < float((xs[2] - xs[0]).abs().max())


@pytest.mark.parametrize("kwargs, match", [
    ({"indicator": "soft"}, "indicator must be one of"),
    ({"temperature": 0.0}, "temperature must be a number > 0"),
    ({"self_weight": -1.0}, "self_weight must be a number >= 0"),
    ({"edge_type": ("person", "contact", "venue"), "target": "venue.m"}, "must be one node type"),
])
def test_bad_arguments_name_the_field(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        BoundedConfidence(**kwargs)


def test_declarations():
    p = BoundedConfidence()
    et = ("person", "contact", "person")
    assert p.role == "interaction" and [s.name for s in p.param_specs()] == ["epsilon"]
    assert p.workspace()[et] > 0 and p.saved()[et] > 0  # per-edge entries for the memory estimate
    with pytest.raises(ConfigError, match="confidence.epsilon must be a finite number > 0"):
        Model(processes={"confidence": p, "degroot": DeGroot()},
              params={"confidence": {"epsilon": 0.0}, "degroot": {"susceptibility": 1.0}})
