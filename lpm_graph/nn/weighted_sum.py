r"""The linear interaction layer: a weighted sum (or mean) of source features over incoming edges."""
from __future__ import annotations

import weakref

import torch
from torch import Tensor
from torch_geometric import EdgeIndex
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.aggr import SumAggregation
from torch_geometric.utils import is_sparse
from torch_geometric.utils import spmm as pyg_spmm

from lpm_graph.nn.sparse import SparseAdjacency, spmm

__all__ = ["WeightedSum"]

_ROW_SUMS: "weakref.WeakKeyDictionary[SparseAdjacency, dict]" = weakref.WeakKeyDictionary()


def _inverse(total: Tensor) -> Tensor:
    """``1 / total`` where positive, 0 where a node has no incoming weight."""
    return torch.where(total > 0, 1.0 / total.clamp_min(torch.finfo(total.dtype).tiny), torch.zeros_like(total))


class WeightedSum(MessagePassing):
    r"""Weighted sum of source features over the incoming edges of each destination.

    .. math::

        \mathbf{y}_i = c_i \sum_{j \in \mathcal{N}(i)} w_{ji}\, \mathbf{x}_j,
        \qquad c_i = \Big(\sum_{j \in \mathcal{N}(i)} w_{ji}\Big)^{-1}
        \text{ if } \texttt{normalize} \text{ (0 without edges), else } s_i

    for edges :math:`j \to i` with weight :math:`w_{ji}` (1 if absent) and an
    optional per-destination factor :math:`s_i` (``scale``) applied after the
    sum.  Every interaction of a population model whose message is linear in
    :math:`\mathbf{x}_j` is this layer: infectious pressure in a venue
    (person → venue), force of infection from venues (venue → person) or from
    contacts (person → person), orders a warehouse receives, neighbours'
    mean opinion (``normalize=True``).  Rates that depend on one node (a
    contact intensity, a closure, a susceptibility) belong in :math:`s_i` or
    in the caller, never in the message: the sum then stays a sparse matrix
    product and autograd keeps nothing per edge.

    ``edge_index`` may be anything a PyG layer accepts — an ``[2, E]``
    ``Tensor`` or :class:`torch_geometric.EdgeIndex` (row 0 source; PyG's
    ``message``/``aggregate`` path, with differentiable ``edge_weight``), a
    ``torch_sparse.SparseTensor`` or a ``torch.sparse`` tensor (the
    transposed adjacency ``adj_t`` of shape ``[num_dst, num_src]``, PyG's
    convention) — or a :class:`~lpm_graph.nn.SparseAdjacency`: the fused CSR
    product with a custom sparse backward (:func:`~lpm_graph.nn.spmm`).
    There, ``edge_weight`` replaces the stored weights (one per stored edge,
    in CSR order) and gets the SDDMM gradient when it requires grad.

    Args:
        normalize (bool): divide by the total incoming weight, i.e. the
            weighted mean of the neighbours. (default: ``False``)
        **kwargs (optional): arguments of
            :class:`torch_geometric.nn.conv.MessagePassing` (e.g. ``aggr``;
            only ``"add"``/``"sum"`` is a weighted sum, and only it may use a
            :class:`SparseAdjacency`).

    Shapes:
        - **input:**
          source features :math:`(|\mathcal{V}_s|, *)` or a pair
          :math:`((|\mathcal{V}_s|, *), (|\mathcal{V}_t|, *))`,
          edges :math:`(2, |\mathcal{E}|)` or a sparse adjacency
          :math:`(|\mathcal{V}_t|, |\mathcal{V}_s|)`,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*,
          ``size`` :math:`(|\mathcal{V}_s|, |\mathcal{V}_t|)` *(optional; default
          square, or the destination count of a pair or a sparse adjacency)*,
          scale :math:`(|\mathcal{V}_t|)` or :math:`(|\mathcal{V}_t|, *)` *(optional)*
        - **output:** :math:`(|\mathcal{V}_t|, *)`
    """

    def __init__(self, normalize: bool = False, **kwargs):
        kwargs.setdefault("aggr", "add")
        if type(kwargs["aggr"]) is SumAggregation:  # a sum: keep the fused paths (PyG fuses string aggrs only)
            kwargs["aggr"] = "sum"
        # Nodes are always dim 0 (x is ``[N]`` or ``[N, *]``); PyG's default
        # node_dim=-2 does not exist for a 1-D x.
        kwargs.setdefault("node_dim", 0)
        super().__init__(**kwargs)
        self.normalize = bool(normalize)

    def forward(self, x: Tensor | tuple, edge_index, edge_weight: Tensor | None = None,
                size: tuple[int, int] | None = None, scale: Tensor | None = None) -> Tensor:
        """Args:
            x: source features, or ``(x_src, x_dst)`` (``x_dst`` only sets the destination count).
            edge_index: edges or a sparse adjacency (class docstring).
            edge_weight: per-edge weights.
            size: ``(num_src, num_dst)``.
            scale: per-destination factor :math:`s_i` applied after the sum (not with ``normalize``).
        """
        name = type(self).__name__
        x_src, x_dst = x if isinstance(x, tuple) else (x, None)
        if self.normalize and scale is not None:
            raise ValueError(f"{name}: normalize=True sets the per-destination factor itself; drop scale")
        if isinstance(edge_index, SparseAdjacency):
            if self.aggr not in ("add", "sum"):
                raise ValueError(f"{name}: the fused SparseAdjacency path computes a sum; with aggr="
                                 f"{self.aggr!r} pass an edge_index tensor instead")
            if size is not None and tuple(size) != (edge_index.shape[1], edge_index.shape[0]):
                raise ValueError(f"{name}: size={tuple(size)} does not match the SparseAdjacency of shape "
                                 f"[num_dst, num_src] = {list(edge_index.shape)}")
            out = self.propagate(edge_index.csr, x=(x_src, x_dst), adj=edge_index, edge_weight=edge_weight)
            if self.normalize:
                scale = self._fused_inverse_degree(edge_index, edge_weight, out.dtype)
        elif isinstance(edge_index, Tensor) and not is_sparse(edge_index):
            if edge_index.dim() != 2 or edge_index.size(0) != 2 or edge_index.is_floating_point():
                raise ValueError(f"{name}: edge_index must be an integer tensor of shape [2, E] "
                                 f"(row 0 source, row 1 destination), got {edge_index.dtype} "
                                 f"{tuple(edge_index.shape)}")
            if edge_weight is not None and edge_weight.shape != (edge_index.size(1),):
                raise ValueError(f"{name}: edge_weight must have shape [{edge_index.size(1)}], "
                                 f"got {tuple(edge_weight.shape)}")
            if size is None and not isinstance(edge_index, EdgeIndex):
                size = (x_src.size(0), x_dst.size(0) if x_dst is not None else x_src.size(0))
            out = self.propagate(edge_index, x=(x_src, x_dst), edge_weight=edge_weight, adj=None, size=size)
            if self.normalize:
                n_dst = out.size(0)
                w = edge_weight if edge_weight is not None else torch.ones(edge_index.size(1), dtype=out.dtype,
                                                                            device=out.device)
                total = torch.zeros(n_dst, dtype=out.dtype, device=out.device).index_add_(
                    0, edge_index[1].to(torch.int64), w.to(out.dtype))
                scale = _inverse(total)
        elif is_sparse(edge_index):
            if edge_weight is not None:
                raise ValueError(f"{name}: a sparse adjacency carries its own values; edge_weight is for "
                                 "edge_index tensors and SparseAdjacency")
            out = self.propagate(edge_index, x=(x_src, x_dst), adj=None, edge_weight=None, size=size)
            if self.normalize:
                ones = torch.ones(x_src.size(0), 1, dtype=out.dtype, device=out.device)
                scale = _inverse(pyg_spmm(edge_index, ones, reduce="sum").squeeze(1))
        else:
            raise TypeError(f"{name}: edge_index must be a [2, E] tensor, an EdgeIndex, a SparseTensor, a "
                            f"torch.sparse tensor or a SparseAdjacency, got {type(edge_index).__name__}")
        if scale is not None:
            out = out * (scale.view(-1, *([1] * (out.dim() - 1))) if scale.dim() == 1 else scale)
        return out

    @staticmethod
    def _fused_inverse_degree(adj: SparseAdjacency, edge_weight: Tensor | None, dtype) -> Tensor:
        if edge_weight is not None:
            ones = torch.ones(adj.shape[1], 1, dtype=dtype, device=edge_weight.device)
            return _inverse(spmm(adj, ones, edge_weight).squeeze(1))
        cache = _ROW_SUMS.setdefault(adj, {})
        if dtype not in cache:
            ones = torch.ones(adj.shape[1], 1, dtype=dtype, device=adj.csr.device)
            cache[dtype] = _inverse(spmm(adj, ones).squeeze(1))
        return cache[dtype]

    def message(self, x_j: Tensor, edge_weight: Tensor | None) -> Tensor:
        if edge_weight is None:
            return x_j
        return x_j * edge_weight.view(-1, *([1] * (x_j.dim() - 1)))

    def message_and_aggregate(self, adj_t, x, adj=None, edge_weight=None) -> Tensor:
        if adj is not None:  # a SparseAdjacency: adj_t is adj.csr, adj also carries the transpose
            return spmm(adj, x[0], edge_weight)
        src = x[0]
        # a torch.sparse / SparseTensor adjacency reduces by the configured aggr (PyG's convention), not always a sum
        out = pyg_spmm(adj_t, src.reshape(src.size(0), -1), reduce=self.aggr)
        return out.reshape(out.size(0), *src.shape[1:])

    def extra_repr(self) -> str:
        return f"normalize={self.normalize}"
