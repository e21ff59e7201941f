"""Tests for VenueInfection (venue -> person)."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.nn import SparseAdjacency, VenueInfection, VenuePressure

F64 = torch.float64

# person -> venue membership (as stored by the population graph), 4 people,
# 2 venues; 1 -> 0 twice.  VenueInfection runs on the reversed edges.
MEMBER = torch.tensor([[0, 1, 1, 2, 3, 1],
                       [0, 0, 1, 1, 1, 0]])
REV = MEMBER.flip(0)
WEIGHTS = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0, 4.0], dtype=F64)
P = torch.tensor([1.0, 10.0], dtype=F64)


def both_paths(p, **kw):
    """edge_index path on the reversed edges, fused path on the membership adjacency's .T."""
    adj = SparseAdjacency.from_edge_index(MEMBER, WEIGHTS, size=(4, 2), dtype=F64)
    return VenueInfection()(p, REV, WEIGHTS, **kw), VenueInfection()(p, adj.T, **kw)


def test_hand_computed_weighted_sum():
    # person 0: 1*p0 = 1;  person 1: (2+4)*p0 + 0.5*p1 = 11;  person 2: 1*p1 = 10;  person 3: 3*p1 = 30
    for out in both_paths(P):
        assert torch.equal(out, torch.tensor([1.0, 11.0, 10.0, 30.0], dtype=F64))


def test_hand_computed_susceptibility():
    s = torch.tensor([1.0, 0.5, 0.0, 2.0], dtype=F64)
    for out in both_paths(P, susceptibility=s):
        assert torch.equal(out, torch.tensor([1.0, 5.5, 0.0, 60.0], dtype=F64))


def test_hand_computed_replicate_columns():
    p = torch.tensor([[1.0, 0.0], [10.0, 1.0]], dtype=F64)
    s = torch.tensor([[1.0, 1.0], [0.5, 1.0], [0.0, 1.0], [2.0, 4.0]], dtype=F64)
    expected = torch.tensor([[1.0, 0.0], [5.5, 0.5], [0.0, 1.0], [60.0, 12.0]], dtype=F64)
    for out in both_paths(p, susceptibility=s):
        assert torch.equal(out, expected)


def test_adjacency_built_venue_to_person_equals_transpose():
    direct = SparseAdjacency.from_edge_index(REV, WEIGHTS, size=(2, 4), dtype=F64)
    assert torch.equal(VenueInfection()(P, direct), torch.tensor([1.0, 11.0, 10.0, 30.0], dtype=F64))


def test_num_people_inferred_or_given():
    assert VenueInfection()(P, REV).shape == (4,)
    out = VenueInfection()(P, REV, WEIGHTS, num_people=6)  # people 4, 5 belong to no venue
    assert torch.equal(out, torch.tensor([1.0, 11.0, 10.0, 30.0, 0.0, 0.0], dtype=F64))


def test_mean_aggregation_on_edge_index_path():
    # person 1 receives p0, p0, p1 -> (1 + 1 + 10) / 3 = 4;  the others receive one message each
    out = VenueInfection(aggr="mean")(P, REV)
    assert torch.equal(out, torch.tensor([1.0, 4.0, 10.0, 10.0], dtype=F64))


def test_pressure_then_infection_is_the_clique_product(random_edges, dense, rand):
    # lambda = A^T (A x): person i sees every co-member j once per shared venue
    # (weighted), which is what the bipartite factorisation replaces.
    ei, w = random_edges(12, 3, 30, seed=6)
    a = dense(ei, w, 12, 3)
    adj = SparseAdjacency.from_edge_index(ei, w, size=(12, 3), dtype=F64)
    x = rand(12, 2, seed=1)
    expected = a.T @ (a @ x)
    fused = VenueInfection()(VenuePressure()(x, adj), adj.T)
    plain = VenueInfection()(VenuePressure()(x, ei, w, num_venues=3), ei.flip(0), w, num_people=12)
    assert torch.allclose(fused, expected, rtol=1e-12, atol=0)
    assert torch.allclose(plain, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("trailing", [(), (2,)], ids=["N", "NxR"])
def test_relabelling_people_permutes_the_output(random_edges, rand, trailing):
    # Person k of the relabelled graph is old person perm[k].
    ei, w = random_edges(4, 10, 30, seed=2)  # venue -> person
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(5))
    inv = torch.argsort(perm)
    ei_p = torch.stack([ei[0], inv[ei[1]]])
    p, s = rand(4, *trailing, seed=3), rand(10, seed=4)
    ref = VenueInfection()(p, ei, w, susceptibility=s, num_people=10)
    out = VenueInfection()(p, ei_p, w, susceptibility=s[perm], num_people=10)
    assert torch.allclose(out, ref[perm], rtol=1e-12, atol=0)
    adj_p = SparseAdjacency.from_edge_index(ei_p, w, size=(4, 10), dtype=F64)
    assert torch.allclose(VenueInfection()(p, adj_p, susceptibility=s[perm]), ref[perm], rtol=1e-12, atol=0)


def test_relabelling_venues_changes_nobody(random_edges, rand):
    ei, w = random_edges(4, 10, 30, seed=3)
    perm = torch.tensor([3, 1, 0, 2])
    inv = torch.argsort(perm)
    ei_p = torch.stack([inv[ei[0]], ei[1]])
    p = rand(4, 2, seed=6)
    ref = VenueInfection()(p, ei, w, num_people=10)
    assert torch.allclose(VenueInfection()(p[perm], ei_p, w, num_people=10), ref, rtol=1e-12, atol=0)
