"""SparseAdjacency (CSR and its transpose, built once) and spmm (sparse product with a sparse backward),
including edge values that change during a run."""
from __future__ import annotations

import pytest
import torch

import lpm_graph.nn.sparse as sparse_mod
from lpm_graph.nn import SparseAdjacency, spmm
from tests.nn.graphs import A, EDGES, F64, WEIGHTS, X, central_difference, dense, rand, random_edges


@pytest.fixture
def adj():
    return SparseAdjacency.from_edge_index(EDGES, WEIGHTS, size=(4, 2), dtype=F64)


def _dense_with(adj: SparseAdjacency, values: torch.Tensor) -> torch.Tensor:
    """The dense ``[num_dst, num_src]`` matrix of ``adj``'s pattern with ``values`` in its CSR order."""
    out = torch.zeros(adj.shape, dtype=values.dtype)
    out[adj.rows(), adj.csr.col_indices().long()] = values
    return out


# --------------------------------------------------------------------------- the layout


def test_from_edge_index_layout_by_hand(adj):
    assert adj.shape == (2, 4)
    assert adj.num_edges == 5  # the duplicate is merged
    assert torch.equal(adj.csr.to_dense(), A)
    assert torch.equal(adj.csr_t.to_dense(), A.T)
    assert adj.csr.crow_indices().tolist() == [0, 2, 5]
    assert adj.csr.col_indices().tolist() == [0, 1, 1, 2, 3]
    assert adj.csr_t.crow_indices().tolist() == [0, 1, 3, 4, 5]
    assert adj.values.tolist() == [1.0, 6.0, 0.5, 1.0, 3.0]
    assert adj.csr.dtype == F64


def test_small_graphs_use_int32_indices(adj):
    for m in (adj.csr, adj.csr_t):
        assert m.crow_indices().dtype == torch.int32
        assert m.col_indices().dtype == torch.int32
    assert "int32" in repr(adj) and "shape=(2, 4)" in repr(adj)


def test_int64_indices_when_int32_would_overflow(adj, monkeypatch):
    # Pretend int32 holds only up to 3: the 4-node graph needs int64 and gives the same products.
    monkeypatch.setattr(sparse_mod, "_INT32_MAX", 3)
    big = SparseAdjacency.from_edge_index(EDGES, WEIGHTS, size=(4, 2), dtype=F64)
    assert big.csr.col_indices().dtype == torch.int64
    assert big.csr_t.crow_indices().dtype == torch.int64
    assert torch.equal(spmm(big, X), spmm(adj, X))
    y = torch.tensor([1.0, 2.0], dtype=F64)
    assert torch.equal(spmm(big.T, y), A.T @ y)
    v = torch.arange(1.0, 6.0, dtype=F64)
    assert torch.equal(spmm(big, X, v), spmm(adj, X, v))


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
    y = torch.tensor([1.0, 2.0], dtype=F64)
    assert torch.equal(spmm(t, y), A.T @ y)


def test_layouts_convert_once_and_cache():
    adj = SparseAdjacency.from_edge_index(EDGES, WEIGHTS, size=(4, 2))  # float32
    assert adj.layouts(torch.float32) == (adj.csr, adj.csr_t)
    pair = adj.layouts(F64)
    assert pair[0].dtype == F64 and pair[1].dtype == F64
    assert pair[0].col_indices().dtype == torch.int32
    assert torch.equal(pair[0].to_dense(), A) and torch.equal(pair[1].to_dense(), A.T)
    again = adj.layouts(F64)
    assert again is pair and again[0] is pair[0]
    assert adj.T.layouts(F64)[0] is pair[1]  # the transpose shares the converted pair, swapped


def test_float32_layout_with_float64_input():
    adj = SparseAdjacency.from_edge_index(EDGES, WEIGHTS, size=(4, 2))  # weights exact in float32
    y = spmm(adj, X)
    assert y.dtype == F64
    assert torch.equal(y, torch.tensor([61.0, 3105.0], dtype=F64))


def test_to_dtype_and_device(adj):
    f32 = adj.to(dtype=torch.float32)
    assert f32.csr.dtype == torch.float32 and f32.csr_t.dtype == torch.float32
    assert f32.csr.col_indices().dtype == torch.int32
    assert torch.equal(f32.csr.to_dense().double(), A)
    same = adj.to("cpu")
    assert same.shape == adj.shape and torch.equal(same.csr.to_dense(), A)
    assert torch.equal(same.transpose_order(), adj.transpose_order())


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


@pytest.mark.parametrize("edge_index, match", [
    (torch.tensor([[0, 3], [0, 1]]), r"row 0 \(source\) has indices in \[0, 3\] but must be in \[0, 3\)"),
    (torch.tensor([[0, 1], [-1, 1]]), r"row 1 \(destination\) has indices in \[-1, 1\]"),
])
def test_from_edge_index_refuses_out_of_range_indices(edge_index, match):
    with pytest.raises(ValueError, match=match):
        SparseAdjacency.from_edge_index(edge_index, size=(3, 2))


# --------------------------------------------------------------------------- CSR bookkeeping


def test_rows_are_the_destination_of_every_stored_entry(adj):
    assert adj.rows().tolist() == [0, 0, 1, 1, 1]
    assert adj.T.rows().tolist() == [0, 1, 1, 2, 3]


def test_transpose_order_maps_the_transposes_entries_to_the_layouts(adj):
    # A's CSR entries: (0,0)=1 (0,1)=6 (1,1)=0.5 (1,2)=1 (1,3)=3; A^T's CSR order is (0,0) (1,0) (1,1) (2,1) (3,1)
    assert adj.transpose_order().tolist() == [0, 1, 2, 3, 4]
    ei, w = random_edges(7, 5, 20, seed=4)
    big = SparseAdjacency.from_edge_index(ei, w, size=(7, 5), dtype=F64)
    assert torch.equal(big.values[big.transpose_order()], big.csr_t.values())
    assert torch.equal(big.T.values[big.T.transpose_order()], big.csr.values())


def test_positions_by_hand(adj):
    assert adj.positions(EDGES).tolist() == [0, 1, 2, 3, 4, 1]
    assert adj.positions(torch.tensor([[3, 0], [1, 0]])).tolist() == [4, 0]


@pytest.mark.parametrize("edge", [[[0], [1]], [[2], [0]],              # absent edges inside the layout
                                  [[4], [0]], [[5], [0]], [[-1], [1]],   # sources out of range
                                  [[0], [2]], [[3], [-1]]],              # destinations out of range
                         ids=["0->1", "2->0", "src=4", "src=5", "src=-1", "dst=2", "dst=-1"])
def test_positions_refuses_an_edge_not_in_the_layout(adj, edge):
    # 5 -> 0 has the lookup key of 1 -> 1 (a real edge) and 4 -> 0 that of 0 -> 1: out-of-range indices must
    # not alias other edges
    with pytest.raises(ValueError, match=r"edge 0 .* is not in this layout"):
        adj.positions(torch.tensor(edge))


def test_positions_in_an_empty_layout():
    empty = SparseAdjacency.from_edge_index(torch.zeros(2, 0, dtype=torch.long), size=(3, 2))
    assert empty.positions(torch.zeros(2, 0, dtype=torch.long)).numel() == 0
    with pytest.raises(ValueError, match="is not in this layout"):
        empty.positions(torch.tensor([[0], [0]]))


def test_values_from_edges_sums_duplicates_in_csr_order(adj):
    # the layout's own weights come back from the edge list it was built from
    assert torch.equal(adj.values_from_edges(EDGES, WEIGHTS), adj.values)
    # new per-edge values (edge_index order) land on their CSR entries, the two 1 -> 0 edges summed
    new = torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0, 60.0], dtype=F64)
    assert adj.values_from_edges(EDGES, new).tolist() == [10.0, 80.0, 30.0, 40.0, 50.0]
    # any order of the edge list gives the same values
    perm = torch.tensor([5, 3, 0, 4, 1, 2])
    assert torch.equal(adj.values_from_edges(EDGES[:, perm], new[perm]), adj.values_from_edges(EDGES, new))
    # a subset of the edges leaves the others at zero
    assert adj.values_from_edges(EDGES[:, [4]], new[[4]]).tolist() == [0.0, 0.0, 0.0, 0.0, 50.0]


def test_values_from_edges_matches_a_layout_built_from_the_values():
    ei, w = random_edges(9, 6, 30, seed=2)
    base = SparseAdjacency.from_edge_index(ei, None, size=(9, 6), dtype=F64)
    assert torch.allclose(base.values_from_edges(ei, w),
                          SparseAdjacency.from_edge_index(ei, w, size=(9, 6), dtype=F64).values, rtol=1e-15, atol=0)


def test_values_from_edges_is_differentiable(adj):
    w = WEIGHTS.clone().requires_grad_(True)
    c = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=F64)
    (adj.values_from_edges(EDGES, w) * c).sum().backward()
    # d/dw_e sum_k c_k v_k = c[position of e]
    assert w.grad.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 2.0]


# --------------------------------------------------------------------------- spmm with the stored weights


@pytest.mark.parametrize("trailing", [(), (3,), (2, 3)])
def test_spmm_matches_dense_product(adj, trailing):
    x = rand(4, *trailing)
    y = spmm(adj, x)
    assert y.shape == (2, *trailing)
    assert torch.allclose(y, torch.einsum("ij,j...->i...", A, x), rtol=1e-14, atol=0)
    assert torch.equal(adj.matmul(x), y)


@pytest.mark.parametrize("trailing", [(), (3,)])
def test_spmm_gradcheck(adj, trailing):
    x = rand(4, *trailing).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: spmm(adj, x), (x,))
    assert torch.autograd.gradcheck(lambda v: spmm(adj.T, v), (rand(2, *trailing).requires_grad_(True),))


def test_spmm_backward_reads_the_cached_transpose(adj):
    # Pair A with a different "transpose" B^T: the forward uses A, the backward the stored layout.
    b = torch.tensor([[0.0, 2.0, 0.0, 7.0],
                      [5.0, 0.0, 0.0, 1.0]], dtype=F64)
    mixed = SparseAdjacency(adj.csr, b.T.contiguous().to_sparse_csr())
    x = rand(4, 2, seed=3).requires_grad_(True)
    g = rand(2, 2, seed=4)
    y = spmm(mixed, x)
    (gx,) = torch.autograd.grad(y, x, g)
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


# --------------------------------------------------------------------------- spmm with values that change


@pytest.fixture
def layout():
    """A random 7 -> 5 layout with duplicates, new values in its CSR order, and its dense form."""
    ei, w = random_edges(7, 5, 20, seed=6)
    adj = SparseAdjacency.from_edge_index(ei, w, size=(7, 5), dtype=F64)
    values = 0.1 + rand(adj.num_edges, seed=7)
    return adj, values, _dense_with(adj, values)


@pytest.mark.parametrize("trailing", [(), (3,)])
def test_spmm_with_values_is_the_product_with_those_values(layout, trailing):
    adj, values, a = layout
    x = rand(7, *trailing, seed=1)
    assert not torch.allclose(a, _dense_with(adj, adj.values))  # the values are not the stored weights
    assert torch.allclose(spmm(adj, x, values), torch.einsum("ij,j...->i...", a, x), rtol=1e-14, atol=0)
    # the stored weights themselves as values give the plain product
    assert torch.allclose(spmm(adj, x, adj.values), spmm(adj, x), rtol=1e-15, atol=0)


def test_transposed_product_with_new_values(layout):
    adj, values, a = layout
    y = rand(5, 2, seed=2)
    t_values = values[adj.transpose_order()]  # the same edges' values in the transpose's CSR order
    assert torch.allclose(spmm(adj.T, y, t_values), a.T @ y, rtol=1e-14, atol=0)


def test_values_from_edges_drive_spmm(layout):
    ei, w = random_edges(7, 5, 20, seed=6)
    adj = layout[0]
    new = rand(ei.size(1), seed=9)
    x = rand(7, 2, seed=3)
    assert torch.allclose(spmm(adj, x, adj.values_from_edges(ei, new)), dense(ei, new, 7, 5) @ x, rtol=1e-14, atol=0)


@pytest.mark.parametrize("trailing", [(), (2,)])
def test_gradients_of_values_and_x_match_central_differences(layout, trailing):
    adj, values, _ = layout
    x = rand(7, *trailing, seed=4)
    g = rand(5, *trailing, seed=5)  # upstream gradient: the loss is <g, A(v) x>

    def loss(x, v):
        return (spmm(adj, x, v) * g).sum()

    v = values.clone().requires_grad_(True)
    xx = x.clone().requires_grad_(True)
    gx, gv = torch.autograd.grad(loss(xx, v), (xx, v))
    assert torch.allclose(gv, central_difference(lambda v: loss(x, v), values), rtol=1e-7, atol=1e-9)
    assert torch.allclose(gx, central_difference(lambda x: loss(x, values), x), rtol=1e-7, atol=1e-9)
    # the value gradient is the SDDMM on the edges: sum_f g[dst(e), f] x[src(e), f]
    src = adj.csr.col_indices().long()
    sddmm = (g[adj.rows()] * x[src]).reshape(adj.num_edges, -1).sum(1)
    assert torch.allclose(gv, sddmm, rtol=1e-14, atol=0)


def test_gradcheck_through_values_and_x_on_the_transpose(layout):
    adj, values, _ = layout
    t = adj.T
    y = rand(5, 2, seed=6).requires_grad_(True)
    v = values[adj.transpose_order()].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda y, v: spmm(t, y, v), (y, v))
    assert torch.autograd.gradcheck(lambda x, v: spmm(adj, x, v),
                                    (rand(7, 3, seed=8).requires_grad_(True), values.clone().requires_grad_(True)))


def test_backward_for_x_uses_the_new_values_transposed(layout):
    # d<g, A(v) x>/dx = A(v)^T g: a backward with the stored weights, or with v not reordered by
    # transpose_order, gives another matrix (the values differ edge by edge)
    adj, values, a = layout
    x = rand(7, 2, seed=1).requires_grad_(True)
    g = rand(5, 2, seed=2)
    (gx,) = torch.autograd.grad(spmm(adj, x, values), x, g)
    assert torch.allclose(gx, a.T @ g, rtol=1e-14, atol=0)


def test_values_of_the_wrong_shape_are_refused(adj):
    with pytest.raises(ValueError, match=r"values must have shape \[5\]"):
        spmm(adj, X, WEIGHTS)  # one per edge of the edge list, not per stored edge


def test_float32_values_with_float64_x_follow_x(adj):
    v = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    y = spmm(adj, X, v)
    assert y.dtype == F64
    # row 0: 1*1 + 2*10 = 21;  row 1: 3*10 + 4*100 + 5*1000 = 5430
    assert y.tolist() == [21.0, 5430.0]
