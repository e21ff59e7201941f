"""Shared fixtures for the interaction layer tests: tiny random graphs."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def random_edges():
    """``make(num_src, num_dst, num_edges, seed=0, duplicates=3)`` -> ``(edge_index, edge_weight)``.

    Random ``[2, E]`` int64 edges (row 0 source) with positive float64
    weights; the first ``duplicates`` edges are repeated at the end with new
    weights, so duplicate handling is always exercised.
    """

    def make(num_src: int, num_dst: int, num_edges: int, seed: int = 0, duplicates: int = 3):
        g = torch.Generator().manual_seed(seed)
        src = torch.randint(num_src, (num_edges,), generator=g)
        dst = torch.randint(num_dst, (num_edges,), generator=g)
        edge_index = torch.stack([src, dst])
        edge_index = torch.cat([edge_index, edge_index[:, :duplicates]], dim=1)
        edge_weight = 0.5 + torch.rand(edge_index.size(1), generator=g, dtype=torch.float64)
        return edge_index, edge_weight

    return make


@pytest.fixture
def dense():
    """``dense(edge_index, edge_weight, num_src, num_dst)``: ``A[dst, src] = sum of w``, float64."""

    def make(edge_index, edge_weight, num_src, num_dst):
        a = torch.zeros(num_dst, num_src, dtype=torch.float64)
        w = torch.ones(edge_index.size(1), dtype=torch.float64) if edge_weight is None else edge_weight.double()
        return a.index_put_((edge_index[1], edge_index[0]), w.detach(), accumulate=True)

    return make


@pytest.fixture
def value_and_grad():
    """``value_and_grad(fn, x, g)`` -> ``(fn(x), d<fn(x), g>/dx)``."""

    def run(fn, x, g):
        x = x.detach().clone().requires_grad_(True)
        y = fn(x)
        (gx,) = torch.autograd.grad(y, x, g)
        return y.detach(), gx

    return run


@pytest.fixture
def rand():
    """``rand(*shape, seed=0)``: float64 uniforms from a private generator."""

    def make(*shape, seed: int = 0):
        return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)

    return make
