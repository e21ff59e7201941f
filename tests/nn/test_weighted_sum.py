"""WeightedSum: a weighted sum (or mean) of source features over incoming edges, for every adjacency form."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch_geometric import EdgeIndex
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.aggr import SumAggregation

import lpm_graph.nn
from lpm_graph.models.epidemic.transmission import ContactInfection, VenueInfection, VenuePressure
from lpm_graph.nn import SparseAdjacency, WeightedSum
from tests.nn.graphs import EDGES, F64, WEIGHTS, X, central_difference, dense, rand, random_edges

# PyG converts a COO adjacency to CSR on every call and says so; that is the form's cost, not an error here
pytestmark = pytest.mark.filterwarnings("ignore:Converting sparse tensor to CSR format:UserWarning")

FORMS = ["edge_index", "EdgeIndex", "coo", "csr", "SparseAdjacency"]


def _torch_sparse(edge_index, edge_weight, num_src, num_dst, layout):
    """PyG's ``adj_t``: ``[num_dst, num_src]``, values the weights (ones without)."""
    w = torch.ones(edge_index.size(1), dtype=F64) if edge_weight is None else edge_weight
    coo = torch.sparse_coo_tensor(edge_index.flip(0), w, (num_dst, num_src), check_invariants=True).coalesce()
    if layout == "coo":
        return coo
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        return coo.to_sparse_csr()


def call(layer, form, x, edge_index, edge_weight, num_src, num_dst, **kw):
    """``layer`` on the graph ``(edge_index, edge_weight)`` given in ``form``."""
    if form == "edge_index":
        return layer(x, edge_index, edge_weight, size=(num_src, num_dst), **kw)
    if form == "EdgeIndex":
        return layer(x, EdgeIndex(edge_index, sparse_size=(num_src, num_dst)), edge_weight, **kw)
    if form in ("coo", "csr"):
        return layer(x, _torch_sparse(edge_index, edge_weight, num_src, num_dst, form), **kw)
    adj = SparseAdjacency.from_edge_index(edge_index, edge_weight, size=(num_src, num_dst), dtype=F64)
    return layer(x, adj, **kw)


def mean_reference(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(A x) / (A 1)`` row by row, 0 for a row without weight."""
    total = a.sum(1)
    inv = torch.where(total > 0, 1.0 / total.clamp_min(1e-300), torch.zeros_like(total))
    return inv.view(-1, *([1] * (x.dim() - 1))) * torch.einsum("ij,j...->i...", a, x)


# --------------------------------------------------------------------------- the layer


def test_aliases_are_the_same_parameter_free_layer():
    assert VenuePressure is WeightedSum and VenueInfection is WeightedSum and ContactInfection is WeightedSum
    assert "WeightedSum" in lpm_graph.nn.__all__
    # no model's names in the layers' package
    assert not {"VenuePressure", "VenueInfection", "ContactInfection"} & set(dir(lpm_graph.nn))
    layer = WeightedSum()
    assert isinstance(layer, MessagePassing)
    assert list(layer.parameters()) == [] and list(layer.buffers()) == []
    assert layer.aggr == "add"


# --------------------------------------------------------------------------- equals the dense product


@pytest.mark.parametrize("form", FORMS)
def test_hand_computed_weighted_and_unweighted_sums(form):
    # weighted: y0 = 1*1 + (2+4)*10 = 61;  y1 = 0.5*10 + 1*100 + 3*1000 = 3105 (the two 1 -> 0 edges summed)
    assert torch.equal(call(WeightedSum(), form, X, EDGES, WEIGHTS, 4, 2), torch.tensor([61.0, 3105.0], dtype=F64))
    # unweighted: y0 = x0 + 2*x1 = 21 (the duplicate counts twice);  y1 = x1 + x2 + x3 = 1110
    assert torch.equal(call(WeightedSum(), form, X, EDGES, None, 4, 2), torch.tensor([21.0, 1110.0], dtype=F64))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("weighted", [True, False], ids=["weighted", "unweighted"])
@pytest.mark.parametrize("trailing", [(), (3,)], ids=["1-D", "2-D"])
def test_matches_the_dense_reference(form, weighted, trailing):
    ei, w = random_edges(9, 5, 30, seed=3)
    w = w if weighted else None
    x = rand(9, *trailing, seed=1)
    out = call(WeightedSum(), form, x, ei, w, 9, 5)
    assert out.shape == (5, *trailing)
    assert torch.allclose(out, torch.einsum("ij,j...->i...", dense(ei, w, 9, 5), x), rtol=1e-13, atol=0)


@pytest.mark.parametrize("form", FORMS)
def test_bipartite_size_gives_rows_to_destinations_without_edges(form):
    # 4 sources -> 6 destinations, edges only into 0 and 1
    out = call(WeightedSum(), form, X, EDGES, WEIGHTS, 4, 6)
    assert torch.equal(out, torch.tensor([61.0, 3105.0, 0.0, 0.0, 0.0, 0.0], dtype=F64))


def test_edge_index_without_size_is_square_and_a_pair_sets_the_destinations():
    assert torch.equal(WeightedSum()(X, EDGES, WEIGHTS), torch.tensor([61.0, 3105.0, 0.0, 0.0], dtype=F64))
    x_dst = torch.zeros(3, dtype=F64)  # only its count matters
    assert torch.equal(WeightedSum()((X, x_dst), EDGES, WEIGHTS), torch.tensor([61.0, 3105.0, 0.0], dtype=F64))


@pytest.mark.parametrize("form", ["coo", "csr", "SparseAdjacency"])
def test_a_pair_with_a_sparse_adjacency_reads_the_sources(form):
    out = call(WeightedSum(), form, (X, torch.zeros(2, dtype=F64)), EDGES, WEIGHTS, 4, 2)
    assert torch.equal(out, torch.tensor([61.0, 3105.0], dtype=F64))


@pytest.mark.parametrize("form", FORMS)
def test_scale_per_destination_and_per_column(form):
    s = torch.tensor([0.5, 0.1], dtype=F64)
    assert torch.allclose(call(WeightedSum(), form, X, EDGES, WEIGHTS, 4, 2, scale=s),
                          torch.tensor([30.5, 310.5], dtype=F64), rtol=1e-15, atol=0)
    x = torch.stack([X, torch.tensor([2.0, 0.0, 1.0, 0.0], dtype=F64)], dim=1)
    s2 = torch.tensor([[0.5, 1.0], [0.1, 2.0]], dtype=F64)
    # column 1: A x = [1*2, 1*1] = [2, 1], scaled by [1, 2] -> [2, 2]
    assert torch.allclose(call(WeightedSum(), form, x, EDGES, WEIGHTS, 4, 2, scale=s2),
                          torch.tensor([[30.5, 2.0], [310.5, 2.0]], dtype=F64), rtol=1e-15, atol=0)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("weighted", [True, False], ids=["weighted", "unweighted"])
@pytest.mark.parametrize("trailing", [(), (2,)], ids=["1-D", "2-D"])
def test_normalize_is_the_weighted_mean_and_zero_without_edges(form, weighted, trailing):
    ei, w = random_edges(8, 6, 12, seed=5)
    ei[1] = ei[1].clamp_max(3)  # destinations 4 and 5 receive nothing
    w = w if weighted else None
    x = rand(8, *trailing, seed=2)
    out = call(WeightedSum(normalize=True), form, x, ei, w, 8, 6)
    assert torch.allclose(out, mean_reference(dense(ei, w, 8, 6), x), rtol=1e-13, atol=0)
    assert torch.equal(out[4:], torch.zeros_like(out[4:]))


def test_normalize_by_hand():
    # y0 = (1*1 + 6*10) / 7;  y1 = (0.5*10 + 1*100 + 3*1000) / 4.5
    for form in FORMS:
        out = call(WeightedSum(normalize=True), form, X, EDGES, WEIGHTS, 4, 2)
        assert torch.allclose(out, torch.tensor([61.0 / 7.0, 3105.0 / 4.5], dtype=F64), rtol=1e-15, atol=0), form


def test_normalize_refuses_a_scale():
    with pytest.raises(ValueError, match="normalize=True sets the per-destination factor itself; drop scale"):
        WeightedSum(normalize=True)(X, EDGES, WEIGHTS, scale=torch.ones(4, dtype=F64))


# --------------------------------------------------------------------------- aggregations


def test_mean_aggregation_on_edge_index_path_averages_messages():
    # messages into 0: 1*1, 2*10, 4*10 -> 61/3;  into 1: 0.5*10, 1*100, 3*1000 -> 3105/3
    out = WeightedSum(aggr="mean")(X, EDGES, WEIGHTS, size=(4, 2))
    assert torch.allclose(out, torch.tensor([61.0 / 3, 1035.0], dtype=F64), rtol=1e-15, atol=0)


@pytest.mark.parametrize("aggr", ["mean", "max", "min"])
@pytest.mark.parametrize("form", ["coo", "csr"])
def test_a_torch_sparse_adjacency_reduces_by_the_layers_aggr(aggr, form):
    # without duplicate edges a sparse adjacency holds the same messages as the edge list
    ei = torch.tensor([[0, 1, 2, 3, 1], [0, 0, 1, 1, 1]])
    w = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0], dtype=F64)
    expected = WeightedSum(aggr=aggr)(X, ei, w, size=(4, 2))
    assert not torch.allclose(expected, WeightedSum()(X, ei, w, size=(4, 2)))
    assert torch.allclose(call(WeightedSum(aggr=aggr), form, X, ei, w, 4, 2), expected, rtol=1e-15, atol=0)


def test_a_sum_aggregation_object_is_a_sum_on_every_path():
    adj = SparseAdjacency.from_edge_index(EDGES, WEIGHTS, size=(4, 2), dtype=F64)
    layer = WeightedSum(aggr=SumAggregation())
    assert torch.equal(layer(X, adj), torch.tensor([61.0, 3105.0], dtype=F64))
    assert torch.equal(layer(X, EDGES, WEIGHTS, size=(4, 2)), torch.tensor([61.0, 3105.0], dtype=F64))


def test_the_fused_path_refuses_other_aggregations():
    adj = SparseAdjacency.from_edge_index(EDGES, WEIGHTS, size=(4, 2), dtype=F64)
    with pytest.raises(ValueError, match=r"aggr='mean' pass an edge_index tensor instead"):
        WeightedSum(aggr="mean")(X, adj)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("edge_index", [EDGES.double(), EDGES.repeat(2, 1), EDGES[0]], ids=["float", "4xE", "1-D"])
def test_rejects_a_bad_edge_index(edge_index):
    with pytest.raises(ValueError, match=r"integer tensor of shape \[2, E\]"):
        WeightedSum()(X, edge_index)


@pytest.mark.parametrize("bad", [WEIGHTS[:5], WEIGHTS.view(2, 3)], ids=["short", "2-D"])
def test_rejects_a_bad_edge_weight(bad):
    with pytest.raises(ValueError, match=r"edge_weight must have shape \[6\]"):
        WeightedSum()(X, EDGES, bad)


def test_rejects_a_size_that_does_not_match_the_sparse_adjacency():
    adj = SparseAdjacency.from_edge_index(EDGES, WEIGHTS, size=(4, 2), dtype=F64)
    with pytest.raises(ValueError, match=r"size=\(4, 3\) does not match the SparseAdjacency"):
        WeightedSum()(X, adj, size=(4, 3))
    assert torch.equal(WeightedSum()(X, adj, size=(4, 2)), torch.tensor([61.0, 3105.0], dtype=F64))


def test_rejects_x_with_the_wrong_number_of_sources():
    adj = SparseAdjacency.from_edge_index(EDGES, WEIGHTS, size=(4, 2), dtype=F64)
    with pytest.raises(ValueError, match=r"x has 3 rows but the adjacency has 4 source nodes"):
        WeightedSum()(X[:3], adj)


def test_rejects_edge_weight_with_a_torch_sparse_adjacency():
    with pytest.raises(ValueError, match="a sparse adjacency carries its own values"):
        WeightedSum()(X, _torch_sparse(EDGES, WEIGHTS, 4, 2, "csr"), WEIGHTS)


def test_rejects_an_edge_list_that_is_not_a_tensor():
    with pytest.raises(TypeError, match=r"must be a \[2, E\] tensor, an EdgeIndex"):
        WeightedSum()(X, EDGES.tolist())


# --------------------------------------------------------------------------- invariances


@pytest.mark.parametrize("form", FORMS)
def test_relabelling_sources_changes_nothing_and_destinations_permute_the_output(form):
    ei, w = random_edges(10, 4, 30, seed=8)
    x = rand(10, 2, seed=4)
    ref = call(WeightedSum(), form, x, ei, w, 10, 4)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(3))  # new source k is old perm[k]
    ei_s = torch.stack([torch.argsort(perm)[ei[0]], ei[1]])
    assert torch.allclose(call(WeightedSum(), form, x[perm], ei_s, w, 10, 4), ref, rtol=1e-13, atol=0)
    dperm = torch.tensor([2, 0, 3, 1])
    ei_d = torch.stack([ei[0], torch.argsort(dperm)[ei[1]]])
    assert torch.allclose(call(WeightedSum(), form, x, ei_d, w, 10, 4), ref[dperm], rtol=1e-13, atol=0)
    shuffle = torch.randperm(ei.size(1), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(call(WeightedSum(), form, x, ei[:, shuffle], w[shuffle], 10, 4), ref, rtol=1e-13, atol=0)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("form", ["edge_index", "EdgeIndex"])
def test_edge_index_gradcheck_in_x_and_edge_weight(form):
    ei, w = random_edges(6, 3, 12, seed=2)
    x = rand(6, 2, seed=3).requires_grad_(True)
    w = w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, w: call(WeightedSum(), form, x, ei, w, 6, 3), (x, w))
    assert torch.autograd.gradcheck(lambda x, w: call(WeightedSum(normalize=True), form, x, ei, w, 6, 3), (x, w))


def test_edge_weight_gradient_is_upstream_times_message():
    # d/dw_e <g, y> = <g[dst_e], x[src_e]> for y_i = sum_e w_e x_{src_e}
    ei, w = random_edges(6, 3, 12, seed=4)
    x, g = rand(6, 2, seed=5), rand(3, 2, seed=6)
    w = w.requires_grad_(True)
    (gw,) = torch.autograd.grad(WeightedSum()(x, ei, w, size=(6, 3)), w, g)
    assert torch.allclose(gw, (g[ei[1]] * x[ei[0]]).sum(1), rtol=1e-14, atol=0)


@pytest.mark.parametrize("form", FORMS)
def test_gradient_in_x_and_scale_is_the_transposed_product(form):
    ei, w = random_edges(7, 4, 15, seed=7)
    a = dense(ei, w, 7, 4)
    x = rand(7, 2, seed=8).requires_grad_(True)
    s = rand(4, seed=9).requires_grad_(True)
    g = rand(4, 2, seed=10)
    gx, gs = torch.autograd.grad(call(WeightedSum(), form, x, ei, w, 7, 4, scale=s), (x, s), g)
    assert torch.allclose(gx, a.T @ (s[:, None] * g), rtol=1e-13, atol=0)
    assert torch.allclose(gs, ((a @ x.detach()) * g).sum(1), rtol=1e-13, atol=0)


@pytest.mark.parametrize("form", ["edge_index", "EdgeIndex", "SparseAdjacency"])
def test_edge_index_and_fused_paths_agree_in_value_and_gradient(form):
    ei, w = random_edges(9, 4, 25, seed=11)
    x, g = rand(9, 3, seed=1), rand(4, 3, seed=2)
    outs = []
    for f in ("edge_index", form):
        xx = x.clone().requires_grad_(True)
        y = call(WeightedSum(), f, xx, ei, w, 9, 4)
        outs.append((y.detach(), torch.autograd.grad(y, xx, g)[0]))
    assert torch.allclose(outs[0][0], outs[1][0], rtol=1e-13, atol=0)
    assert torch.allclose(outs[0][1], outs[1][1], rtol=1e-13, atol=0)


# --------------------------------------------------------------------------- a SparseAdjacency with new values


@pytest.fixture
def fused():
    ei, w = random_edges(7, 5, 20, seed=12)
    adj = SparseAdjacency.from_edge_index(ei, w, size=(7, 5), dtype=F64)
    new = 0.2 + rand(ei.size(1), seed=13)  # per-edge values in edge_index order
    return ei, adj, new


@pytest.mark.parametrize("normalize", [False, True], ids=["sum", "mean"])
@pytest.mark.parametrize("trailing", [(), (2,)], ids=["1-D", "2-D"])
def test_edge_weight_in_csr_order_replaces_the_stored_weights(fused, normalize, trailing):
    ei, adj, new = fused
    x = rand(7, *trailing, seed=3)
    a = dense(ei, new, 7, 5)
    out = WeightedSum(normalize=normalize)(x, adj, adj.values_from_edges(ei, new))
    expected = mean_reference(a, x) if normalize else torch.einsum("ij,j...->i...", a, x)
    assert torch.allclose(out, expected, rtol=1e-13, atol=0)
    # and on the transposed layout (destination -> source), values reordered by transpose_order
    y = rand(5, *trailing, seed=4)
    t_values = adj.values_from_edges(ei, new)[adj.transpose_order()]
    out_t = WeightedSum(normalize=normalize)(y, adj.T, t_values)
    expected_t = mean_reference(a.T, y) if normalize else torch.einsum("ij,j...->i...", a.T, y)
    assert torch.allclose(out_t, expected_t, rtol=1e-13, atol=0)


@pytest.mark.parametrize("normalize", [False, True], ids=["sum", "mean"])
def test_gradient_flows_to_the_per_edge_values(fused, normalize):
    ei, adj, new = fused
    x = rand(7, 2, seed=5)
    g = rand(5, 2, seed=6)

    def loss(w):
        return (WeightedSum(normalize=normalize)(x, adj, adj.values_from_edges(ei, w)) * g).sum()

    w = new.clone().requires_grad_(True)
    (gw,) = torch.autograd.grad(loss(w), w)
    assert torch.allclose(gw, central_difference(loss, new), rtol=1e-7, atol=1e-9)
    assert bool((gw != 0).any())
