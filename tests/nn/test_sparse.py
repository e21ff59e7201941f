"""Tests for the fused sparse path (lpm_graph.nn.sparse) and what the layers share."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import MessagePassing

import lpm_graph.nn
import lpm_graph.nn.sparse as sparse_mod
from lpm_graph.nn import ContactInfection, SparseAdjacency, VenueInfection, VenuePressure, spmm

F64 = torch.float64

# 4 people -> 2 venues; the edge 1 -> 0 appears twice (weights 2 and 4, summed to 6).
#   A = [[1, 6,   0, 0],
#        [0, 0.5, 1, 3]]
EDGES = torch.tensor([[0, 1, 1, 2, 3, 1],
                      [0, 0, 1, 1, 1, 0]])
WEIGHTS = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0, 4.0], dtype=F64)
A = torch.tensor([[1.0, 6.0, 0.0, 0.0],
                  [0.0, 0.5, 1.0, 3.0]], dtype=F64)


@pytest.fixture
def adj():
    return SparseAdjacency.from_edge_index(EDGES, WEIGHTS, size=(4, 2), dtype=F64)


# --------------------------------------------------------------------------- SparseAdjacency


def test_from_edge_index_layout_by_hand(adj):
    assert adj.shape == (2, 4)
    assert adj.num_edges == 5  # the duplicate is merged
    assert torch.equal(adj.csr.to_dense(), A)
    assert torch.equal(adj.csr_t.to_dense(), A.T)
    assert adj.csr.crow_indices().tolist() == [0, 2, 5]
    assert adj.csr.col_indices().tolist() == [0, 1, 1, 2, 3]
    assert adj.csr_t.crow_indices().tolist() == [0, 1, 3, 4, 5]
    assert adj.csr.dtype == F64


def test_small_graphs_use_int32_indices(adj):
    for m in (adj.csr, adj.csr_t):
        assert m.crow_indices().dtype == torch.int32
        assert m.col_indices().dtype == torch.int32
    assert "int32" in repr(adj) and "shape=(2, 4)" in repr(adj)


def test_int64_indices_when_int32_would_overflow(adj, monkeypatch):
    # Pretend int32 holds only up to 3: the 4-person graph needs int64 and
    # must give the same products.
    monkeypatch.setattr(sparse_mod, "_INT32_MAX", 3)
    big = SparseAdjacency.from_edge_index(EDGES, WEIGHTS, size=(4, 2), dtype=F64)
    assert big.csr.col_indices().dtype == torch.int64
    assert big.csr_t.crow_indices().dtype == torch.int64
    x = torch.tensor([1.0, 10.0, 100.0, 1000.0], dtype=F64)
    assert torch.equal(spmm(big, x), spmm(adj, x))
    assert torch.equal(spmm(big.T, torch.tensor([1.0, 2.0], dtype=F64)), A.T @ torch.tensor([1.0, 2.0], dtype=F64))


def test_defaults_unit_weights_and_square_size():
    adj = SparseAdjacency.from_edge_index(torch.tensor([[0, 2, 2], [1, 0, 0]]))
    assert adj.shape == (3, 3)
    assert adj.csr.dtype == torch.float32
    expected = torch.zeros(3, 3)
    expected[1, 0], expected[0, 2] = 1.0, 2.0  # A[dst, src], duplicate 2 -> 0 counted twice
    assert torch.equal(adj.csr.to_dense(), expected)


def test_weights_are_constants_of_the_layout():
    w = WEIGHTS.clone().requires_grad_(True)
    adj = SparseAdjacency.from_edge_index(EDGES, w, size=(4, 2), dtype=F64)
    assert not adj.csr.values().requires_grad
    w.data.mul_(10)  # later changes to the weight tensor do not leak into the layout
    assert torch.equal(adj.csr.to_dense(), A)


def test_transpose_swaps_without_copying(adj):
    t = adj.T
    assert t.shape == (4, 2)
    assert t.csr is adj.csr_t and t.csr_t is adj.csr
    assert t.T.csr is adj.csr
    assert torch.equal(spmm(t, torch.tensor([1.0, 2.0], dtype=F64)), A.T @ torch.tensor([1.0, 2.0], dtype=F64))


def test_layouts_convert_once_and_cache():
    adj = SparseAdjacency.from_edge_index(EDGES, WEIGHTS, size=(4, 2))  # float32
    assert adj.layouts(torch.float32) == (adj.csr, adj.csr_t)
    pair = adj.layouts(F64)
    assert pair[0].dtype == F64 and pair[1].dtype == F64
    assert pair[0].col_indices().dtype == torch.int32
    assert torch.equal(pair[0].to_dense(), A) and torch.equal(pair[1].to_dense(), A.T)
    again = adj.layouts(F64)
    assert again is pair and again[0] is pair[0]
    # The transpose shares the converted pair, swapped.
    assert adj.T.layouts(F64)[0] is pair[1]


def test_float32_layout_with_float64_input():
    adj = SparseAdjacency.from_edge_index(EDGES, WEIGHTS, size=(4, 2))  # weights exact in float32
    x = torch.tensor([1.0, 10.0, 100.0, 1000.0], dtype=F64)
    y = spmm(adj, x)
    assert y.dtype == F64
    assert torch.equal(y, torch.tensor([61.0, 3105.0], dtype=F64))


def test_to_dtype_and_device(adj):
    f32 = adj.to(dtype=torch.float32)
    assert f32.csr.dtype == torch.float32 and f32.csr_t.dtype == torch.float32
    assert f32.csr.col_indices().dtype == torch.int32
    assert torch.equal(f32.csr.to_dense().double(), A)
    same = adj.to("cpu")
    assert same.shape == adj.shape and torch.equal(same.csr.to_dense(), A)


def test_nbytes_by_hand(adj):
    # csr:   crow 3 + col 5 int32, 5 float64 values = 12 + 20 + 40 = 72
    # csr_t: crow 5 + col 5 int32, 5 float64 values = 20 + 20 + 40 = 80
    assert adj.nbytes() == 152


def test_constructor_rejects_non_csr(adj):
    with pytest.raises(TypeError, match="from_edge_index"):
        SparseAdjacency(A.to_sparse(), adj.csr_t)


@pytest.mark.parametrize("edge_index", [EDGES.double(), EDGES[0], EDGES.repeat(2, 1)], ids=["float", "1-D", "4xE"])
def test_from_edge_index_rejects_bad_edge_index(edge_index):
    with pytest.raises(ValueError, match=r"shape \[2, E\]"):
        SparseAdjacency.from_edge_index(edge_index, size=(4, 2))


def test_from_edge_index_rejects_bad_weight_shape():
    with pytest.raises(ValueError, match=r"edge_weight must have shape \[6\]"):
        SparseAdjacency.from_edge_index(EDGES, WEIGHTS[:5], size=(4, 2))


# --------------------------------------------------------------------------- spmm


@pytest.mark.parametrize("trailing", [(), (3,), (2, 3)])
def test_spmm_matches_dense_product(adj, rand, trailing):
    x = rand(4, *trailing)
    y = spmm(adj, x)
    assert y.shape == (2, *trailing)
    assert torch.allclose(y, torch.einsum("ij,j...->i...", A, x), rtol=1e-14, atol=0)
    assert torch.allclose(adj.matmul(x), y, rtol=0, atol=0)


@pytest.mark.parametrize("trailing", [(), (3,)])
def test_spmm_gradcheck(adj, rand, trailing):
    x = rand(4, *trailing).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: spmm(adj, x), (x,))
    assert torch.autograd.gradcheck(lambda v: spmm(adj.T, v), (rand(2, *trailing).requires_grad_(True),))


def test_spmm_backward_is_the_transpose_product(adj, rand, value_and_grad):
    x, g = rand(4, 3, seed=1), rand(2, 3, seed=2)
    _, gx = value_and_grad(lambda x: spmm(adj, x), x, g)
    assert torch.allclose(gx, A.T @ g, rtol=1e-14, atol=0)


def test_spmm_backward_reads_the_cached_transpose(adj, rand, value_and_grad):
    # Pair A with a different "transpose" B^T: the forward must use A and the
    # backward must use the stored layout (not re-transpose A).
    b = torch.tensor([[0.0, 2.0, 0.0, 7.0],
                      [5.0, 0.0, 0.0, 1.0]], dtype=F64)
    bt = b.T.contiguous().to_sparse_csr()
    mixed = SparseAdjacency(adj.csr, bt)
    x, g = rand(4, 2, seed=3), rand(2, 2, seed=4)
    y, gx = value_and_grad(lambda x: spmm(mixed, x), x, g)
    assert torch.allclose(y, A @ x, rtol=1e-14, atol=0)
    assert torch.allclose(gx, b.T @ g, rtol=1e-14, atol=0)


def test_spmm_rejects_wrong_number_of_rows(adj):
    with pytest.raises(ValueError, match=r"x has 3 rows but the adjacency has 4 source nodes"):
        spmm(adj, torch.ones(3, dtype=F64))


@pytest.mark.parametrize("size", [(0, 3), (3, 0)], ids=["no-sources", "no-destinations"])
@pytest.mark.parametrize("trailing", [(), (2,)])
def test_spmm_on_empty_graph(size, trailing):
    adj = SparseAdjacency.from_edge_index(torch.zeros(2, 0, dtype=torch.long), size=size, dtype=F64)
    x = torch.ones(size[0], *trailing, dtype=F64, requires_grad=True)
    y = spmm(adj, x)
    assert y.shape == (size[1], *trailing)
    assert torch.equal(y, torch.zeros_like(y))
    y.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


# --------------------------------------------------------------------------- what all layers share

# (layer class, keyword that fixes the output size on the edge_index path)
LAYERS = [(VenuePressure, "num_venues"), (VenueInfection, "num_people"), (ContactInfection, None)]
LAYER_IDS = ["VenuePressure", "VenueInfection", "ContactInfection"]


def _square(cls):
    return cls is ContactInfection


@pytest.mark.parametrize(("cls", "size_kw"), LAYERS, ids=LAYER_IDS)
def test_layers_are_parameter_free_message_passing(cls, size_kw):
    layer = cls()
    assert isinstance(layer, MessagePassing)
    assert getattr(lpm_graph.nn, cls.__name__) is cls and cls.__name__ in lpm_graph.nn.__all__
    assert list(layer.parameters()) == [] and list(layer.buffers()) == []
    assert layer.aggr == "add"


@pytest.mark.parametrize(("cls", "size_kw"), LAYERS, ids=LAYER_IDS)
def test_fused_path_rejects_edge_weight(cls, size_kw):
    adj = SparseAdjacency.from_edge_index(EDGES, WEIGHTS, size=(4, 4), dtype=F64)
    with pytest.raises(ValueError, match=r"edge_weight is part of a SparseAdjacency.*from_edge_index"):
        cls()(torch.ones(4, dtype=F64), adj, WEIGHTS)


@pytest.mark.parametrize(("cls", "size_kw"), LAYERS, ids=LAYER_IDS)
def test_fused_path_rejects_non_sum_aggregation(cls, size_kw):
    adj = SparseAdjacency.from_edge_index(EDGES, WEIGHTS, size=(4, 4), dtype=F64)
    with pytest.raises(ValueError, match=r"aggr='mean' pass an edge_index tensor instead"):
        cls(aggr="mean")(torch.ones(4, dtype=F64), adj)


@pytest.mark.parametrize(("cls", "size_kw"), LAYERS, ids=LAYER_IDS)
@pytest.mark.parametrize("edge_index", [EDGES.double(), EDGES.repeat(2, 1)], ids=["float", "4xE"])
def test_edge_index_path_rejects_bad_edge_index(cls, size_kw, edge_index):
    with pytest.raises(ValueError, match=r"integer tensor of shape \[2, E\]"):
        cls()(torch.ones(4, dtype=F64), edge_index)


@pytest.mark.parametrize(("cls", "size_kw"), LAYERS, ids=LAYER_IDS)
@pytest.mark.parametrize("bad", [WEIGHTS[:5], WEIGHTS.view(2, 3)], ids=["short", "2-D"])
def test_edge_index_path_rejects_bad_edge_weight(cls, size_kw, bad):
    with pytest.raises(ValueError, match=r"edge_weight must have shape \[6\]"):
        cls()(torch.ones(4, dtype=F64), EDGES, bad)


@pytest.mark.parametrize(("cls", "size_kw"), LAYERS, ids=LAYER_IDS)
def test_fused_path_rejects_wrong_number_of_rows(cls, size_kw):
    adj = SparseAdjacency.from_edge_index(EDGES, WEIGHTS, size=(4, 4), dtype=F64)
    with pytest.raises(ValueError, match=r"x has 3 rows but the adjacency has 4 source nodes"):
        cls()(torch.ones(3, dtype=F64), adj)


@pytest.mark.parametrize(("cls", "size_kw"), LAYERS, ids=LAYER_IDS)
@pytest.mark.parametrize("trailing", [(), (3,)], ids=["N", "NxR"])
def test_edge_index_and_fused_paths_agree(cls, size_kw, trailing, random_edges, rand, value_and_grad):
    # Values and gradients w.r.t. x of PyG's message/aggregate path and the
    # fused CSR product, on a random graph with duplicate edges.
    n_src, n_dst = (9, 9) if _square(cls) else (9, 4)
    ei, w = random_edges(n_src, n_dst, 25, seed=11)
    kw = {size_kw: n_dst} if size_kw else {}
    adj = SparseAdjacency.from_edge_index(ei, w, size=(n_src, n_dst), dtype=F64)
    x, g = rand(n_src, *trailing, seed=1), rand(n_dst, *trailing, seed=2)
    y_ei, gx_ei = value_and_grad(lambda x: cls()(x, ei, w, **kw), x, g)
    y_adj, gx_adj = value_and_grad(lambda x: cls()(x, adj), x, g)
    assert y_ei.shape == y_adj.shape == (n_dst, *trailing)
    assert torch.allclose(y_ei, y_adj, rtol=1e-12, atol=0)
    assert torch.allclose(gx_ei, gx_adj, rtol=1e-12, atol=0)


@pytest.mark.parametrize(("cls", "size_kw"), LAYERS, ids=LAYER_IDS)
def test_shuffling_the_edge_list_changes_nothing(cls, size_kw, random_edges, rand):
    n_src, n_dst = (8, 8) if _square(cls) else (8, 3)
    ei, w = random_edges(n_src, n_dst, 20, seed=5)
    perm = torch.randperm(ei.size(1), generator=torch.Generator().manual_seed(1))
    kw = {size_kw: n_dst} if size_kw else {}
    x = rand(n_src, 2)
    ref = cls()(x, ei, w, **kw)
    assert torch.allclose(cls()(x, ei[:, perm], w[perm], **kw), ref, rtol=1e-12, atol=0)
    a1 = SparseAdjacency.from_edge_index(ei, w, size=(n_src, n_dst), dtype=F64)
    a2 = SparseAdjacency.from_edge_index(ei[:, perm], w[perm], size=(n_src, n_dst), dtype=F64)
    assert torch.allclose(cls()(x, a2), cls()(x, a1), rtol=1e-12, atol=0)
    assert torch.allclose(cls()(x, a1), ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize(("cls", "size_kw"), LAYERS, ids=LAYER_IDS)
def test_learnable_edge_weight_gradcheck(cls, size_kw, random_edges, rand):
    n_src, n_dst = (6, 6) if _square(cls) else (6, 3)
    ei, w = random_edges(n_src, n_dst, 12, seed=2)
    kw = {size_kw: n_dst} if size_kw else {}
    x = rand(n_src, 2, seed=3).requires_grad_(True)
    w = w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, w: cls()(x, ei, w, **kw), (x, w))


@pytest.mark.parametrize(("cls", "size_kw"), LAYERS, ids=LAYER_IDS)
def test_learnable_edge_weight_gradient_is_message_times_upstream(cls, size_kw, random_edges, rand):
    # d/dw_e <g, y> = <g[dst_e], x[src_e]> for y_i = sum_e w_e x_{src_e}.
    n_src, n_dst = (6, 6) if _square(cls) else (6, 3)
    ei, w = random_edges(n_src, n_dst, 12, seed=4)
    kw = {size_kw: n_dst} if size_kw else {}
    x, g = rand(n_src, 2, seed=5), rand(n_dst, 2, seed=6)
    w = w.requires_grad_(True)
    (gw,) = torch.autograd.grad(cls()(x, ei, w, **kw), w, g)
    assert torch.allclose(gw, (g[ei[1]] * x[ei[0]]).sum(1), rtol=1e-12, atol=0)


@pytest.mark.parametrize(("cls", "size_kw"), LAYERS, ids=LAYER_IDS)
def test_fused_path_gradcheck_through_scale(cls, size_kw, random_edges, rand):
    # The per-node factor (venue_scale / susceptibility) is where learnable
    # rates enter; gradients flow through it and x on the fused path.
    n_src, n_dst = (6, 6) if _square(cls) else (6, 3)
    ei, w = random_edges(n_src, n_dst, 12, seed=7)
    adj = SparseAdjacency.from_edge_index(ei, w, size=(n_src, n_dst), dtype=F64)
    scale_kw = {VenuePressure: "venue_scale"}.get(cls, "susceptibility")
    x = rand(n_src, 2, seed=8).requires_grad_(True)
    s = rand(n_dst, seed=9).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, s: cls()(x, adj, **{scale_kw: s}), (x, s))


@pytest.mark.parametrize("edge_index, match", [
    (torch.tensor([[0, 3], [0, 1]]), "row 0 \\(source\\) has indices in \\[0, 3\\] but must be in \\[0, 3\\)"),
    (torch.tensor([[0, 1], [-1, 1]]), "row 1 \\(destination\\) has indices in \\[-1, 1\\]"),
])
def test_from_edge_index_refuses_out_of_range_indices(edge_index, match):
    with pytest.raises(ValueError, match=match):
        SparseAdjacency.from_edge_index(edge_index, size=(3, 2))


def test_sum_aggregation_object_uses_the_fused_path():
    from torch_geometric.nn.aggr import SumAggregation

    from lpm_graph.nn import VenuePressure

    ei = torch.tensor([[0, 1, 2], [0, 0, 1]])
    adj = SparseAdjacency.from_edge_index(ei, size=(3, 2))
    x = torch.tensor([1.0, 2.0, 4.0])
    assert torch.equal(VenuePressure(aggr=SumAggregation())(x, adj), torch.tensor([3.0, 4.0]))


def test_a_list_edge_index_gets_the_type_error():
    from lpm_graph.nn import VenueInfection, VenuePressure

    for layer in (VenuePressure(), VenueInfection()):
        with pytest.raises(TypeError, match="must be a \\[2, E\\] tensor or a SparseAdjacency"):
            layer(torch.ones(2), [[0, 1], [0, 0]])
