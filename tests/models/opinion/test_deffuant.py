"""Deffuant: the pair update, the matching (a matching, reproducible, layout-invariant), consensus and
about floor(1/(2 epsilon)) clusters on a complete graph, the gradient in epsilon."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.core import Model
from lpm_graph.core.random import CounterRNG
from lpm_graph.data import random_graph
from lpm_graph.models.opinion import DeffuantPairs, DeGroot
from lpm_graph.models.opinion.clusters import cluster_tops
from lpm_graph.models.opinion.deffuant import matching
from tests.models.opinion.helpers import CONTACT, complete, graph


def deffuant(epsilon=0.3, mu=0.5, initial="uniform", mode="stochastic", **kwargs) -> Model:
    return Model(processes={"deffuant": DeffuantPairs(**kwargs), "degroot": DeGroot(initial=initial)},
                 params={"deffuant": {"epsilon": epsilon}, "degroot": {"susceptibility": mu}},
                 mode=mode, dtype=torch.float64)


def _final(m, data, steps, replicates=1, seed=0):
    with torch.no_grad():
        return m(data, steps=steps, seed=seed, replicates=replicates).final_state["person.opinion"]


@pytest.mark.parametrize("mu", [0.5, 0.3, 0.1])
def test_a_pair_within_epsilon_moves_towards_each_other_by_mu(mu):
    """Two people and one tie (stored both ways): the only matching is the pair, every step."""
    data = graph([(0, 1), (1, 0)], 2, opinion=[0.2, 0.45])
    x = _final(deffuant(0.3, mu, initial="attribute"), data, 1)[:, 0]
    d = 0.25
    torch.testing.assert_close(x, torch.tensor([0.2 + mu * d, 0.45 - mu * d], dtype=torch.float64), rtol=0,
                               atol=1e-15)
    x = _final(deffuant(0.3, mu, initial="attribute"), data, 5)[:, 0]
    gap = d * (1 - 2 * mu) ** 5  # the gap shrinks by 1 - 2 mu per meeting, the mean stays
    torch.testing.assert_close(x, torch.tensor([0.325 - gap / 2, 0.325 + gap / 2], dtype=torch.float64), rtol=0,
                               atol=1e-15)


def test_a_pair_beyond_epsilon_and_a_one_way_tie():
    far = graph([(0, 1), (1, 0)], 2, opinion=[0.2, 0.6])
    torch.testing.assert_close(_final(deffuant(0.3, initial="attribute"), far, 3)[:, 0],
                               torch.tensor([0.2, 0.6], dtype=torch.float64), rtol=0, atol=0)
    one_way = graph([(0, 1)], 2, opinion=[0.2, 0.4])  # 1 listens to 0: only 1 moves
    torch.testing.assert_close(_final(deffuant(0.3, 0.5, initial="attribute"), one_way, 1)[:, 0],
                               torch.tensor([0.2, 0.3], dtype=torch.float64), rtol=0, atol=1e-15)


def test_the_matching_pairs_each_person_at_most_once_and_preserves_the_mean():
    data = random_graph(400, 8.0, seed=1)
    ei = data[CONTACT].edge_index
    rng = CounterRNG(data["person"].uid, seed=3, replicates=4)
    chosen = matching(rng.bits(0, "pairing"), ei, 400)
    for r in range(4):
        e = chosen[:, r]
        src, dst = ei[0, e], ei[1, e]
        assert torch.equal(torch.bincount(dst, minlength=400).clamp_max(1), torch.bincount(dst, minlength=400))
        # undirected ties: the pair is chosen both ways, so each person's partner is unique and mutual
        assert torch.equal(torch.bincount(torch.cat([src, dst]), minlength=400) % 2, torch.zeros(400).long())
        assert 0.15 < dst.unique().numel() / 400 < 0.9  # measured about 0.5 of the people meet
    x = _final(deffuant(0.3), data, 20, replicates=3, seed=2)
    x0 = _final(deffuant(0.3, mu=0.0), data, 1, replicates=3, seed=2)
    torch.testing.assert_close(x.mean(0), x0.mean(0), rtol=0, atol=1e-13)  # symmetric compromises keep the mean
    assert float((x - x0).abs().max()) > 0.05


def test_pairs_are_reproducible_and_layout_invariant():
    data = random_graph(300, 6.0, seed=4)
    perm = torch.randperm(300, generator=torch.Generator().manual_seed(0))
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(300)
    permuted = graph(inverse[data[CONTACT].edge_index].t(), 300, uid=data["person"].uid[perm])
    m = deffuant(0.3)
    x = _final(m, data, 15, replicates=2, seed=5)
    torch.testing.assert_close(_final(m, data, 15, replicates=2, seed=5), x, rtol=0, atol=0)
    torch.testing.assert_close(_final(m, permuted, 15, replicates=2, seed=5), x[perm], rtol=0, atol=0)
    assert not torch.equal(_final(m, data, 15, replicates=2, seed=6), x)


@pytest.fixture(scope="module")
def complete_runs():
    """Deffuant on the complete graph of 100 people, opinions uniform on [0, 1], mu 0.5, 12 seeds (replicate
    columns), 600 steps (200 for epsilon 1/2); final opinions per epsilon."""
    data = complete(100)
    with torch.no_grad():
        return {eps: deffuant(eps, 0.5)(data, steps=200 if eps >= 0.5 else 600, seed=1,
                                        replicates=12).final_state["person.opinion"]
                for eps in (0.5, 0.25, 0.15, 0.1)}


@pytest.mark.parametrize("epsilon", [0.5, 0.25, 0.15, 0.1])
def test_complete_graph_ends_in_about_one_cluster_per_two_epsilon(complete_runs, epsilon):
    """Deffuant et al. (2000), Weisbuch et al. (2002): one cluster for epsilon >= 1/2, about floor(1/(2 epsilon))
    major clusters below; minor clusters of a few extremists are left out of that count, here clusters of fewer
    than 3 people (3%). Tolerance: the law is 'about' floor(1/(2 epsilon)) (1/(2 x 0.15) = 3.3), so the mean over
    12 seeds must be within 1 of it; per seed the count varies by about 0.5, so the mean's own noise (0.15) is far
    inside that. Measured means: 1.0, 2.17, 3.25, 4.92 (every cluster, minor ones too: 1.0, 2.25, 3.42, 5.58)."""
    x = complete_runs[epsilon]
    tops = cluster_tops(x, 0.01)
    # the count is final: every gap is inside a cluster (at most 0.01) or at least epsilon, so no two
    # clusters can ever meet (a compromise keeps each person inside their cluster's range)
    gaps = x.sort(0).values.diff(dim=0)
    assert bool(((gaps <= 0.01) | (gaps >= epsilon)).all())
    major = cluster_tops(x, 0.01, min_size=3).sum(0)
    expected = int(1 / (2 * epsilon))
    if epsilon >= 0.5:
        assert bool((major == 1).all()) and bool((tops.sum(0) == 1).all())  # consensus in every seed
    else:
        assert abs(float(major.mean()) - expected) <= 1.0
        assert float(tops.sum(0).mean()) >= float(major.mean())


@pytest.mark.parametrize("indicator", ["smooth", "hard"])
def test_gradient_in_epsilon(indicator):
    data = random_graph(150, 6.0, seed=3)

    def outcome(eps):
        m = Model(processes={"deffuant": DeffuantPairs(indicator=indicator, temperature=0.05), "degroot": DeGroot()},
                  mode="expected", params={"deffuant": {"epsilon": 0.2}, "degroot": {"susceptibility": 0.5}},
                  checkpoint=True).to(torch.float64)
        traj = m(data, steps=10, seed=2, overrides={"deffuant.epsilon": eps})
        return m.outcomes["total_variance"](traj).sum()

    eps = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    outcome(eps).backward()
    assert torch.isfinite(eps.grad) and float(eps.grad) < 0
    if indicator == "smooth":  # the pairings do not depend on epsilon: the smooth model is differentiable
        h = 1e-6
        with torch.no_grad():
            fd = (outcome(torch.tensor(0.2 + h, dtype=torch.float64))
                  - outcome(torch.tensor(0.2 - h, dtype=torch.float64))) / (2 * h)
        assert float(eps.grad) == pytest.approx(float(fd), rel=1e-6)
