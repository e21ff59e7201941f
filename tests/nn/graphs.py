"""Tiny graphs and dense references for the interaction layer tests."""
from __future__ import annotations

import torch

F64 = torch.float64

# 4 sources -> 2 destinations; the edge 1 -> 0 appears twice (weights 2 and 4, summed to 6).
#   A = [[1, 6,   0, 0],
#        [0, 0.5, 1, 3]]
EDGES = torch.tensor([[0, 1, 1, 2, 3, 1],
                      [0, 0, 1, 1, 1, 0]])
WEIGHTS = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0, 4.0], dtype=F64)
A = torch.tensor([[1.0, 6.0, 0.0, 0.0],
                  [0.0, 0.5, 1.0, 3.0]], dtype=F64)
X = torch.tensor([1.0, 10.0, 100.0, 1000.0], dtype=F64)


def random_edges(num_src: int, num_dst: int, num_edges: int, seed: int = 0, duplicates: int = 3):
    """Random ``[2, E]`` edges (row 0 source) with positive float64 weights; the first ``duplicates``
    edges are repeated at the end with new weights, so duplicates are always exercised."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(num_src, (num_edges,), generator=g)
    dst = torch.randint(num_dst, (num_edges,), generator=g)
    edge_index = torch.stack([src, dst])
    edge_index = torch.cat([edge_index, edge_index[:, :duplicates]], dim=1)
    edge_weight = 0.5 + torch.rand(edge_index.size(1), generator=g, dtype=F64)
    return edge_index, edge_weight


def dense(edge_index, edge_weight, num_src: int, num_dst: int) -> torch.Tensor:
    """``A[dst, src] = sum of the weights of src -> dst`` (1 per edge without weights), float64."""
    a = torch.zeros(num_dst, num_src, dtype=F64)
    w = torch.ones(edge_index.size(1), dtype=F64) if edge_weight is None else edge_weight.detach().double()
    return a.index_put_((edge_index[1], edge_index[0]), w, accumulate=True)


def rand(*shape, seed: int = 0) -> torch.Tensor:
    """float64 uniforms from a private generator."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def central_difference(f, x: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    """``d f(x) / d x`` of a scalar function by central differences, one coordinate at a time (float64)."""
    x = x.detach().clone()
    out = torch.empty_like(x)
    flat, grad = x.view(-1), out.view(-1)
    for i in range(flat.numel()):
        old = float(flat[i])
        flat[i] = old + h
        up = float(f(x))
        flat[i] = old - h
        down = float(f(x))
        flat[i] = old
        grad[i] = (up - down) / (2 * h)
    return out
