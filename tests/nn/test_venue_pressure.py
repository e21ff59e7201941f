"""Tests for VenuePressure (person -> venue)."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.nn import SparseAdjacency, VenuePressure

F64 = torch.float64

# person -> venue membership, 4 people, 2 venues; 1 -> 0 is listed twice.
#   venue 0: person 0 (w 1), person 1 (w 2 + 4)
#   venue 1: person 1 (w 0.5), person 2 (w 1), person 3 (w 3)
EDGES = torch.tensor([[0, 1, 1, 2, 3, 1],
                      [0, 0, 1, 1, 1, 0]])
WEIGHTS = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0, 4.0], dtype=F64)
X = torch.tensor([1.0, 10.0, 100.0, 1000.0], dtype=F64)


def both_paths(x, **kw):
    """Output of the edge_index path and of the fused path for the graph above."""
    adj = SparseAdjacency.from_edge_index(EDGES, WEIGHTS, size=(4, 2), dtype=F64)
    return VenuePressure()(x, EDGES, WEIGHTS, **kw), VenuePressure()(x, adj, **kw)


def test_hand_computed_weighted_sum():
    # p0 = 1*1 + (2+4)*10 = 61;  p1 = 0.5*10 + 1*100 + 3*1000 = 3105
    for out in both_paths(X):
        assert torch.equal(out, torch.tensor([61.0, 3105.0], dtype=F64))


def test_hand_computed_venue_scale():
    for out in both_paths(X, venue_scale=torch.tensor([0.5, 0.1], dtype=F64)):
        assert torch.allclose(out, torch.tensor([30.5, 310.5], dtype=F64), rtol=1e-15, atol=0)


def test_hand_computed_replicate_columns_with_per_column_scale():
    x = torch.stack([X, torch.tensor([2.0, 0.0, 1.0, 0.0], dtype=F64)], dim=1)
    scale = torch.tensor([[0.5, 1.0], [0.1, 2.0]], dtype=F64)
    # column 1: p = [1*2, 1*1] = [2, 1], scaled by [1, 2] -> [2, 2]
    expected = torch.tensor([[30.5, 2.0], [310.5, 2.0]], dtype=F64)
    for out in both_paths(x, venue_scale=scale):
        assert out.shape == (2, 2)
        assert torch.allclose(out, expected, rtol=1e-15, atol=0)


def test_unweighted_edges_count_duplicates():
    # p0 = x0 + x1 + x1 = 21;  p1 = x1 + x2 + x3 = 1110
    expected = torch.tensor([21.0, 1110.0], dtype=F64)
    assert torch.equal(VenuePressure()(X, EDGES), expected)
    assert torch.equal(VenuePressure()(X, SparseAdjacency.from_edge_index(EDGES, size=(4, 2), dtype=F64)), expected)


def test_num_venues_inferred_or_given():
    assert VenuePressure()(X, EDGES).shape == (2,)
    out = VenuePressure()(X, EDGES, WEIGHTS, num_venues=4)
    assert torch.equal(out, torch.tensor([61.0, 3105.0, 0.0, 0.0], dtype=F64))  # venues 2, 3 have no members


def test_mean_aggregation_on_edge_index_path():
    # messages into venue 0: 1, 10, 10 -> 7;  into venue 1: 10, 100, 1000 -> 370
    out = VenuePressure(aggr="mean")(X, EDGES)
    assert torch.allclose(out, torch.tensor([7.0, 370.0], dtype=F64), rtol=1e-15, atol=0)
    adj = SparseAdjacency.from_edge_index(EDGES, size=(4, 2), dtype=F64)
    with pytest.raises(ValueError, match="pass an edge_index tensor"):
        VenuePressure(aggr="mean")(X, adj)


def test_matches_dense_product(random_edges, dense, rand):
    ei, w = random_edges(10, 4, 30, seed=3)
    x, c = rand(10, 3, seed=1), rand(4, seed=2)
    expected = c[:, None] * (dense(ei, w, 10, 4) @ x)
    adj = SparseAdjacency.from_edge_index(ei, w, size=(10, 4), dtype=F64)
    assert torch.allclose(VenuePressure()(x, ei, w, venue_scale=c, num_venues=4), expected, rtol=1e-12, atol=0)
    assert torch.allclose(VenuePressure()(x, adj, venue_scale=c), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("trailing", [(), (2,)], ids=["N", "NxR"])
def test_relabelling_people_changes_no_venue(random_edges, rand, trailing):
    # Person k of the relabelled graph is old person perm[k]; edges follow.
    ei, w = random_edges(10, 4, 30, seed=8)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(3))
    inv = torch.argsort(perm)
    ei_p = torch.stack([inv[ei[0]], ei[1]])
    x = rand(10, *trailing, seed=4)
    ref = VenuePressure()(x, ei, w, num_venues=4)
    assert torch.allclose(VenuePressure()(x[perm], ei_p, w, num_venues=4), ref, rtol=1e-12, atol=0)
    adj_p = SparseAdjacency.from_edge_index(ei_p, w, size=(10, 4), dtype=F64)
    assert torch.allclose(VenuePressure()(x[perm], adj_p), ref, rtol=1e-12, atol=0)


def test_relabelling_venues_permutes_the_output(random_edges, rand):
    ei, w = random_edges(10, 4, 30, seed=9)
    perm = torch.tensor([2, 0, 3, 1])
    inv = torch.argsort(perm)
    ei_p = torch.stack([ei[0], inv[ei[1]]])
    x = rand(10, 2, seed=5)
    ref = VenuePressure()(x, ei, w, num_venues=4)
    assert torch.allclose(VenuePressure()(x, ei_p, w, num_venues=4), ref[perm], rtol=1e-12, atol=0)
    adj_p = SparseAdjacency.from_edge_index(ei_p, w, size=(10, 4), dtype=F64)
    assert torch.allclose(VenuePressure()(x, adj_p), ref[perm], rtol=1e-12, atol=0)
