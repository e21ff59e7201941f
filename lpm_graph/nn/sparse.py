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

**Edge values that change during a run.**  The layout's own weights are
constants.  ``spmm(adj, x, values)`` multiplies with other values on the same
sparsity pattern (in CSR order, e.g. contact weights a behaviour scales), and
when they require grad their gradient is the sampled dense-dense product
(SDDMM)

.. math::

    \frac{\partial L}{\partial a_e} = \sum_f \Big(\frac{\partial L}{\partial \mathbf{Y}}\Big)_{\mathrm{dst}(e), f}
    \, \mathbf{X}_{\mathrm{src}(e), f},

computed on the edges only: no per-edge tensor is kept between the forward
and the backward (the values and ``x`` are inputs anyway).

The aggregation is a plain sum, linear in the messages: a sum of secret
shares is the share of the sum, which is what secure aggregation relies on.

**Partitioned layouts.**  On one part of a graph split across processes
(:mod:`lpm_graph.distributed`), a layout's ``src_halo`` and ``dst_halo``
(``None`` in one process) are the exchanges of its ghost rows: :func:`spmm`
broadcasts the owners' source values to the ghosts before the local product
and reduces the ghosts' partial sums to their owners after it, both
differentiable, so every linear interaction gives the sums of the whole graph.
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor

__all__ = ["SparseAdjacency", "spmm"]

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

    #: exchanges of a part of a partitioned graph (:mod:`lpm_graph.distributed.halo`); ``None`` in one process
    src_halo = None
    dst_halo = None

    def __init__(self, csr: Tensor, csr_t: Tensor):
        if csr.layout != torch.sparse_csr or csr_t.layout != torch.sparse_csr:
            raise TypeError("SparseAdjacency expects two torch.sparse_csr tensors; "
                            "build one with SparseAdjacency.from_edge_index(edge_index, edge_weight, size)")
        self.csr, self.csr_t = csr, csr_t
        self._by_dtype: dict[torch.dtype, tuple[Tensor, Tensor]] = {csr.dtype: (csr, csr_t)}
        self._rows: Tensor | None = None
        self._t_order: Tensor | None = None

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
        out._rows = out._t_order = None
        out.src_halo, out.dst_halo = self.dst_halo, self.src_halo
        return out

    @property
    def values(self) -> Tensor:
        """The stored weights in CSR order, ``[num_edges]``."""
        return self.csr.values()

    def rows(self) -> Tensor:
        """Destination (row) index of every stored entry, in CSR order (``int64``, built once)."""
        if self._rows is None:
            crow = self.csr.crow_indices().to(torch.int64)
            counts = crow[1:] - crow[:-1]
            self._rows = torch.repeat_interleave(torch.arange(self.shape[0], device=crow.device), counts)
        return self._rows

    def transpose_order(self) -> Tensor:
        """For every entry of :math:`\\mathbf{A}^\\top` in its CSR order, the index of the same edge in
        :math:`\\mathbf{A}`'s CSR order: ``values[transpose_order()]`` are the transpose's values."""
        if self._t_order is None:
            rows, cols = self.rows(), self.csr.col_indices().to(torch.int64)
            self._t_order = torch.argsort(cols * max(1, self.shape[0]) + rows, stable=True)
        return self._t_order

    def positions(self, edge_index: Tensor) -> Tensor:
        """The CSR position of each edge of a ``[2, E]`` ``edge_index`` (row 0 source, row 1
        destination) in this layout, so that per-edge values ``w`` become ``values[positions] += w``
        (:meth:`values_from_edges`).  Raises if an edge is not in the layout."""
        src, dst = edge_index.to(torch.int64)
        num_src = max(1, self.shape[1])
        keys = self.rows() * num_src + self.csr.col_indices().to(torch.int64)
        query = dst * num_src + src
        pos = torch.searchsorted(keys, query)
        # an out-of-range index would alias another edge: the key of num_src -> d is that of 0 -> d + 1
        inside = (pos < keys.numel()) & (src >= 0) & (src < self.shape[1]) & (dst >= 0) & (dst < self.shape[0])
        found = inside & (keys[pos.clamp_max(max(0, keys.numel() - 1))] == query) if keys.numel() else inside
        if not bool(found.all()):
            bad = int((~found).nonzero()[0])
            raise ValueError(f"SparseAdjacency.positions: edge {bad} ({int(src[bad])} -> {int(dst[bad])}) "
                             "is not in this layout")
        return pos

    def values_from_edges(self, edge_index: Tensor, weight: Tensor) -> Tensor:
        """Per-edge ``weight`` (``[E]``, in ``edge_index`` order) as values in this layout's CSR order,
        duplicate edges summed; differentiable in ``weight``."""
        pos = self.positions(edge_index)
        return torch.zeros(self.num_edges, dtype=weight.dtype, device=weight.device).index_add(0, pos, weight)

    def to(self, device=None, dtype: torch.dtype | None = None) -> "SparseAdjacency":
        csr, csr_t = self.csr, self.csr_t
        if dtype is not None and dtype != csr.dtype:
            csr, csr_t = self.layouts(dtype)
        out = SparseAdjacency(csr.to(device), csr_t.to(device))
        if device is None or torch.device(device) == self.csr.device:
            out._rows, out._t_order = self._rows, self._t_order
        out.src_halo, out.dst_halo = (None if h is None else h.to(device if device is not None else self.csr.device)
                                      for h in (self.src_halo, self.dst_halo))
        return out

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


class _CSRMatmulValues(torch.autograd.Function):
    """``A(v) @ X`` with values ``v`` on a fixed pattern: backward ``A(v)^T G`` for ``X`` and the SDDMM
    ``sum_f G[dst(e), f] X[src(e), f]`` for ``v``."""

    @staticmethod
    def forward(ctx, x: Tensor, values: Tensor, adj: "SparseAdjacency") -> Tensor:
        csr = _sparse_csr(adj.csr.crow_indices(), adj.csr.col_indices(), values, adj.csr.shape)
        ctx.adj = adj
        ctx.save_for_backward(x, values)
        return torch.sparse.mm(csr, x)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, values = ctx.saved_tensors
        adj = ctx.adj
        grad_out = grad_out.contiguous()
        grad_x = grad_v = None
        if ctx.needs_input_grad[0]:
            t = adj.csr_t
            csr_t = _sparse_csr(t.crow_indices(), t.col_indices(), values[adj.transpose_order()], t.shape)
            grad_x = torch.sparse.mm(csr_t, grad_out)
        if ctx.needs_input_grad[1]:
            src = adj.csr.col_indices().to(torch.int64)
            grad_v = (grad_out.index_select(0, adj.rows()) * x.index_select(0, src)).sum(1)
        return grad_x, grad_v, None


def spmm(adj: SparseAdjacency, x: Tensor, values: Tensor | None = None) -> Tensor:
    r"""Sparse product :math:`\mathbf{A}\mathbf{X}` with a sparse backward.

    Args:
        adj: the layout.
        x: the input, ``[num_src]`` or ``[num_src, *]``.
        values (Tensor, optional): edge values ``[num_edges]`` in ``adj``'s CSR
            order (see :meth:`SparseAdjacency.values_from_edges`) to use
            instead of the stored weights; differentiable (module docstring).

    Shapes:
        - **x:** ``[num_src]`` or ``[num_src, *]``
        - **output:** ``[num_dst]`` or ``[num_dst, *]``
    """
    if adj.src_halo is not None or adj.dst_halo is not None:  # a part of a partitioned graph (module docstring)
        if adj.src_halo is not None:
            x = adj.src_halo.broadcast(x)
        out = _local_spmm(adj, x, values)
        return out if adj.dst_halo is None else adj.dst_halo.reduce(out)
    return _local_spmm(adj, x, values)


def _local_spmm(adj: SparseAdjacency, x: Tensor, values: Tensor | None) -> Tensor:
    num_dst, num_src = adj.shape
    if x.size(0) != num_src:
        raise ValueError(f"spmm: x has {x.size(0)} rows but the adjacency has {num_src} source nodes "
                         f"(shape [num_dst, num_src] = {list(adj.shape)})")
    trailing = x.shape[1:]
    x2 = x.reshape(num_src, trailing.numel()).contiguous()  # not -1: ambiguous when num_src == 0
    if values is not None:
        if values.shape != (adj.num_edges,):
            raise ValueError(f"spmm: values must have shape [{adj.num_edges}] (one per stored edge, CSR order), "
                             f"got {tuple(values.shape)}")
        if values.device != x.device or adj.csr.device != x.device:
            raise ValueError(f"spmm: x is on {x.device}, values on {values.device}, the adjacency on "
                             f"{adj.csr.device}; move them to one device with .to(device)")
        out = _CSRMatmulValues.apply(x2, values.to(x.dtype), adj)
        return out.reshape(num_dst, *trailing)
    csr, csr_t = adj.layouts(x.dtype)
    if csr.device != x.device:
        raise ValueError(f"spmm: x is on {x.device} but the adjacency is on {csr.device}; move one with .to(device)")
    out = _CSRMatmul.apply(x2, csr, csr_t)
    return out.reshape(num_dst, *trailing)
