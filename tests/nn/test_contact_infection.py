"""Tests for ContactInfection (person -> person)."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.nn import ContactInfection, SparseAdjacency

F64 = torch.float64

# Directed contacts j -> i (row 0 source): 0 -> 1 (w 2), 1 -> 0 (w 2),
# 2 -> 1 listed twice (w 1 and 1.5), self-contact 3 -> 3 (w 0.25).
EDGES = torch.tensor([[0, 1, 2, 2, 3],
                      [1, 0, 1, 1, 3]])
WEIGHTS = torch.tensor([2.0, 2.0, 1.0, 1.5, 0.25], dtype=F64)
X = torch.tensor([1.0, 10.0, 100.0, 1000.0], dtype=F64)


def both_paths(x, edges=EDGES, **kw):
    adj = SparseAdjacency.from_edge_index(edges, WEIGHTS, size=(x.size(0), x.size(0)), dtype=F64)
    return ContactInfection()(x, edges, WEIGHTS, **kw), ContactInfection()(x, adj, **kw)


def test_hand_computed_weighted_sum():
    # l0 = 2*x1 = 20;  l1 = 2*x0 + (1+1.5)*x2 = 252;  l2 = 0;  l3 = 0.25*x3 = 250
    for out in both_paths(X):
        assert torch.equal(out, torch.tensor([20.0, 252.0, 0.0, 250.0], dtype=F64))


def test_edges_are_directed_source_to_destination():
    # Reversed: l0 = 2*x1 = 20;  l1 = 2*x0 = 2;  l2 = 2.5*x1 = 25;  l3 = 250
    for out in both_paths(X, edges=EDGES.flip(0)):
        assert torch.equal(out, torch.tensor([20.0, 2.0, 25.0, 250.0], dtype=F64))


def test_hand_computed_susceptibility():
    s = torch.tensor([1.0, 1.0, 5.0, 0.5], dtype=F64)
    for out in both_paths(X, susceptibility=s):
        assert torch.equal(out, torch.tensor([20.0, 252.0, 0.0, 125.0], dtype=F64))


def test_hand_computed_replicate_columns():
    x = torch.stack([X, torch.tensor([0.0, 1.0, 0.0, 4.0], dtype=F64)], dim=1)
    s = torch.tensor([[1.0, 3.0], [1.0, 1.0], [5.0, 1.0], [0.5, 1.0]], dtype=F64)
    expected = torch.tensor([[20.0, 6.0], [252.0, 0.0], [0.0, 0.0], [125.0, 1.0]], dtype=F64)
    for out in both_paths(x, susceptibility=s):
        assert torch.equal(out, expected)


def test_output_has_a_row_per_person_even_without_contacts():
    x = torch.cat([X, torch.tensor([7.0, 8.0], dtype=F64)])  # people 4, 5 have no contacts
    for out in both_paths(x):
        assert torch.equal(out, torch.tensor([20.0, 252.0, 0.0, 250.0, 0.0, 0.0], dtype=F64))


def test_unweighted_and_mean_aggregation():
    # unweighted sums: l1 = x0 + 2*x2 = 201;  mean: l1 = (x0 + x2 + x2) / 3 = 67
    assert torch.equal(ContactInfection()(X, EDGES), torch.tensor([10.0, 201.0, 0.0, 1000.0], dtype=F64))
    assert torch.equal(ContactInfection(aggr="mean")(X, EDGES), torch.tensor([10.0, 67.0, 0.0, 1000.0], dtype=F64))


def test_rejects_a_non_tensor_edge_index():
    with pytest.raises(TypeError, match=r"\[2, E\] tensor or a SparseAdjacency"):
        ContactInfection()(X, EDGES.tolist())


@pytest.mark.parametrize("trailing", [(), (2,)], ids=["N", "NxR"])
def test_relabelling_people_permutes_the_output(random_edges, rand, trailing):
    ei, w = random_edges(10, 10, 40, seed=12)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(2))
    inv = torch.argsort(perm)
    ei_p = inv[ei]  # both endpoints relabelled
    x, s = rand(10, *trailing, seed=1), rand(10, seed=2)
    ref = ContactInfection()(x, ei, w, susceptibility=s)
    assert torch.allclose(ContactInfection()(x[perm], ei_p, w, susceptibility=s[perm]), ref[perm],
                          rtol=1e-12, atol=0)
    adj_p = SparseAdjacency.from_edge_index(ei_p, w, size=(10, 10), dtype=F64)
    assert torch.allclose(ContactInfection()(x[perm], adj_p, susceptibility=s[perm]), ref[perm],
                          rtol=1e-12, atol=0)


def test_matches_dense_product(random_edges, dense, rand):
    ei, w = random_edges(9, 9, 30, seed=13)
    x, s = rand(9, 3, seed=3), rand(9, 3, seed=4)
    expected = s * (dense(ei, w, 9, 9) @ x)
    adj = SparseAdjacency.from_edge_index(ei, w, size=(9, 9), dtype=F64)
    assert torch.allclose(ContactInfection()(x, ei, w, susceptibility=s), expected, rtol=1e-12, atol=0)
    assert torch.allclose(ContactInfection()(x, adj, susceptibility=s), expected, rtol=1e-12, atol=0)
