r"""The fused sparse path shared by the interaction layers.

An interaction whose message is linear in :math:`x_j`,

.. math::

    \mathbf{y}_i = \sum_{j \in \mathcal{N}(i)} w_{ji}\, \mathbf{x}_j
    \quad\Longleftrightarrow\quad \mathbf{Y} = \mathbf{A}\mathbf{X},

is a sparse matrix product.  :class:`SparseAdjacency` holds :math:`\mathbf{A}`
(``[num_dst, num_src]``) in CSR layout with ``int32`` indices where they fit,
*and* its transpose, both built once per graph.  :func:`spmm` multiplies with a
custom autograd function whose backward is the transposed product
:math:`\partial L / \partial \mathbf{X} = \mathbf{A}^\top \partial L/\partial\mathbf{Y}`,
so a backward step costs about one forward step and autograd keeps no per-edge
tensor.  (``torch.sparse``'s own backward for CSR is 40-60x slower here and,
with differentiable values, tries to allocate a dense ``N x N`` gradient.)

The edge weights are constants of the layout.  To learn per-edge weights, use
the layers' ``edge_index``/``edge_weight`` path, which goes through PyG's
``message``/``aggregate``.

The aggregation is a plain sum, linear in the messages: a sum of secret
shares is the share of the sum, which is what secure aggregation relies on.
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.aggr import SumAggregation

__all__ = ["SparseAdjacency", "spmm", "LinearAggregation"]

_INT32_MAX = 2**31 - 1


def _sparse_csr(crow: Tensor, col: Tensor, values: Tensor, shape) -> Tensor:
    """``torch.sparse_csr_tensor`` without its one-time 'support is in beta' warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def _csr(row: Tensor, col: Tensor, weight: Tensor, shape: tuple[int, int], index_dtype) -> Tensor:
    """CSR of ``[shape[0], shape[1]]`` from COO, duplicates summed."""
    coo = torch.sparse_coo_tensor(torch.stack([row, col]), weight, shape, check_invariants=False).coalesce()
    r, c = coo.indices()
    crow = torch._convert_indices_from_coo_to_csr(r, shape[0], out_int32=index_dtype == torch.int32)
    return _sparse_csr(crow, c.to(index_dtype), coo.values(), shape)


class SparseAdjacency:
    r"""A sparse adjacency :math:`\mathbf{A}` and its transpose in CSR layout.

    ``A[i, j] = w_{ji}`` for an edge :math:`j \to i` (row: destination,
    column: source, PyG's ``adj_t`` convention), duplicate edges summed.

    Args:
        csr (Tensor): :math:`\mathbf{A}` as a ``torch.sparse_csr`` tensor.
        csr_t (Tensor): :math:`\mathbf{A}^\top` in the same layout.

    Build one with :meth:`from_edge_index`.  ``adj.T`` swaps the two without
    copying, so the person → venue and venue → person products of a
    membership edge type share one object.

    Shapes:
        - **csr:** ``[num_dst, num_src]``
        - **csr_t:** ``[num_src, num_dst]``
    """

    def __init__(self, csr: Tensor, csr_t: Tensor):
        if csr.layout != torch.sparse_csr or csr_t.layout != torch.sparse_csr:
            raise TypeError("SparseAdjacency expects two torch.sparse_csr tensors; "
                            "build one with SparseAdjacency.from_edge_index(edge_index, edge_weight, size)")
        self.csr, self.csr_t = csr, csr_t
        self._by_dtype: dict[torch.dtype, tuple[Tensor, Tensor]] = {csr.dtype: (csr, csr_t)}

    @classmethod
    def from_edge_index(cls, edge_index: Tensor, edge_weight: Tensor | None = None,
                        size: tuple[int, int] | None = None,
                        dtype: torch.dtype = torch.float32) -> "SparseAdjacency":
        """Build from a ``[2, E]`` ``edge_index`` (row 0 source, row 1 destination).

        Args:
            edge_index (Tensor): integer edge indices, ``[2, E]``.
            edge_weight (Tensor, optional): non-negative weights ``[E]``;
                ones if omitted.
            size (tuple, optional): ``(num_src, num_dst)``; inferred from the
                largest index if omitted.
            dtype: floating type of the stored values. (default: float32)
        """
        if edge_index.dim() != 2 or edge_index.size(0) != 2 or edge_index.is_floating_point():
            raise ValueError(f"SparseAdjacency.from_edge_index: edge_index must be an integer tensor of shape "
                             f"[2, E], got {edge_index.dtype} {tuple(edge_index.shape)}")
        src, dst = edge_index.to(torch.int64)
        if size is None:
            n = int(edge_index.max()) + 1 if edge_index.numel() else 0
            size = (n, n)
        num_src, num_dst = int(size[0]), int(size[1])
        if src.numel():
            for name, idx, n in (("row 0 (source)", src, num_src), ("row 1 (destination)", dst, num_dst)):
                lo, hi = int(idx.min()), int(idx.max())
                if lo < 0 or hi >= n:
                    raise ValueError(f"SparseAdjacency.from_edge_index: edge_index {name} has indices in "
                                     f"[{lo}, {hi}] but must be in [0, {n}) for size={tuple(size)}")
        if edge_weight is None:
            edge_weight = torch.ones(src.numel(), dtype=dtype, device=src.device)
        elif edge_weight.shape != src.shape:
            raise ValueError(f"SparseAdjacency.from_edge_index: edge_weight must have shape [{src.numel()}] "
                             f"(one weight per edge), got {tuple(edge_weight.shape)}")
        edge_weight = edge_weight.detach().to(dtype)
        index_dtype = torch.int32 if max(num_src, num_dst, src.numel()) <= _INT32_MAX else torch.int64
        csr = _csr(dst, src, edge_weight, (num_dst, num_src), index_dtype)
        csr_t = _csr(src, dst, edge_weight, (num_src, num_dst), index_dtype)
        return cls(csr, csr_t)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.csr.shape)

    @property
    def num_edges(self) -> int:
        return int(self.csr.values().numel())

    @property
    def T(self) -> "SparseAdjacency":
        out = SparseAdjacency.__new__(SparseAdjacency)
        out.csr, out.csr_t = self.csr_t, self.csr
        out._by_dtype = {k: (b, a) for k, (a, b) in self._by_dtype.items()}
        return out

    def to(self, device=None, dtype: torch.dtype | None = None) -> "SparseAdjacency":
        csr, csr_t = self.csr, self.csr_t
        if dtype is not None and dtype != csr.dtype:
            csr, csr_t = self.layouts(dtype)
        return SparseAdjacency(csr.to(device), csr_t.to(device))

    def layouts(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """The CSR pair with values of ``dtype``, converted once and cached."""
        pair = self._by_dtype.get(dtype)
        if pair is None:
            pair = tuple(_sparse_csr(m.crow_indices(), m.col_indices(), m.values().to(dtype), m.shape)
                         for m in (self.csr, self.csr_t))
            self._by_dtype[dtype] = pair
        return pair

    def nbytes(self) -> int:
        """Bytes held by both layouts (indices and values)."""
        return sum(t.numel() * t.element_size() for m in (self.csr, self.csr_t)
                   for t in (m.crow_indices(), m.col_indices(), m.values()))

    def matmul(self, x: Tensor) -> Tensor:
        """:math:`\\mathbf{A}\\mathbf{X}` for ``x`` of shape ``[num_src, *]``."""
        return spmm(self, x)

    def __repr__(self) -> str:
        return (f"SparseAdjacency(shape={self.shape}, num_edges={self.num_edges}, "
                f"index_dtype={self.csr.col_indices().dtype}, dtype={self.csr.dtype})")


class _CSRMatmul(torch.autograd.Function):
    """``A @ X`` forward, ``A^T @ G`` backward, both CSR products."""

    @staticmethod
    def forward(ctx, x: Tensor, csr: Tensor, csr_t: Tensor) -> Tensor:
        ctx.csr_t = csr_t
        return torch.sparse.mm(csr, x)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        grad_x = torch.sparse.mm(ctx.csr_t, grad_out.contiguous()) if ctx.needs_input_grad[0] else None
        return grad_x, None, None


def spmm(adj: SparseAdjacency, x: Tensor) -> Tensor:
    r"""Sparse product :math:`\mathbf{A}\mathbf{X}` with a sparse backward.

    Shapes:
        - **x:** ``[num_src]`` or ``[num_src, *]``
        - **output:** ``[num_dst]`` or ``[num_dst, *]``
    """
    num_dst, num_src = adj.shape
    if x.size(0) != num_src:
        raise ValueError(f"spmm: x has {x.size(0)} rows but the adjacency has {num_src} source nodes "
                         f"(shape [num_dst, num_src] = {list(adj.shape)})")
    csr, csr_t = adj.layouts(x.dtype)
    if csr.device != x.device:
        raise ValueError(f"spmm: x is on {x.device} but the adjacency is on {csr.device}; move one with .to(device)")
    trailing = x.shape[1:]
    x2 = x.reshape(num_src, trailing.numel()).contiguous()  # not -1: ambiguous when num_src == 0
    out = _CSRMatmul.apply(x2, csr, csr_t)
    return out.reshape(num_dst, *trailing)


class LinearAggregation(MessagePassing):
    r"""Base of the interaction layers: :math:`y_i = c_i \sum_j w_{ji} x_j`.

    Subclasses document their own meaning.  Given a :class:`SparseAdjacency`
    the sum runs through :meth:`message_and_aggregate` (fused CSR product);
    given an ``edge_index`` it runs through :meth:`message` and PyG's
    aggregation, which also allows differentiable ``edge_weight``.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("aggr", "add")
        # Nodes are always dim 0 (x is ``[N]`` or ``[N, *]``); PyG's default
        # node_dim=-2 does not exist for a 1-D x.
        kwargs.setdefault("node_dim", 0)
        super().__init__(**kwargs)

    def _aggregate_linear(self, x: Tensor, edge_index, edge_weight: Tensor | None,
                          num_dst: int | None, scale: Tensor | None) -> Tensor:
        """:math:`c \\odot (A x)`; ``num_dst`` (``edge_index`` path) defaults to the largest destination + 1."""
        name = type(self).__name__
        if isinstance(edge_index, SparseAdjacency):
            if edge_weight is not None:
                raise ValueError(f"{name}: edge_weight is part of a SparseAdjacency; build it with "
                                 "SparseAdjacency.from_edge_index(edge_index, edge_weight, size) or pass "
                                 "an edge_index tensor to use per-call (learnable) weights")
            if not isinstance(self.aggr_module, SumAggregation):
                raise ValueError(f"{name}: the fused SparseAdjacency path computes a sum; with aggr="
                                 f"{self.aggr!r} pass an edge_index tensor instead")
            out = self.propagate(edge_index.csr, x=(x, None), adj=edge_index, edge_weight=None)
        elif isinstance(edge_index, Tensor):
            if edge_index.dim() != 2 or edge_index.size(0) != 2 or edge_index.is_floating_point():
                raise ValueError(f"{name}: edge_index must be an integer tensor of shape [2, E] "
                                 f"(row 0 source, row 1 destination), got {edge_index.dtype} "
                                 f"{tuple(edge_index.shape)}")
            if edge_weight is not None and edge_weight.shape != (edge_index.size(1),):
                raise ValueError(f"{name}: edge_weight must have shape [{edge_index.size(1)}], "
                                 f"got {tuple(edge_weight.shape)}")
            if num_dst is None:
                num_dst = int(edge_index[1].max()) + 1 if edge_index.numel() else 0
            out = self.propagate(edge_index, x=(x, None), edge_weight=edge_weight, adj=None,
                                 size=(x.size(0), num_dst))
        else:
            raise TypeError(f"{name}: edge_index must be a [2, E] tensor or a SparseAdjacency, "
                            f"got {type(edge_index).__name__}")
        if scale is not None:
            out = out * (scale.view(-1, *([1] * (out.dim() - 1))) if scale.dim() == 1 else scale)
        return out

    def message(self, x_j: Tensor, edge_weight: Tensor | None) -> Tensor:
        if edge_weight is None:
            return x_j
        return x_j * edge_weight.view(-1, *([1] * (x_j.dim() - 1)))

    def message_and_aggregate(self, adj_t, x, adj=None, edge_weight=None) -> Tensor:
        # ``adj_t`` is ``adj.csr``; ``adj`` also carries the transpose for the
        # backward.  Weights are baked into ``adj`` (``edge_weight`` is None).
        return spmm(adj, x[0])
