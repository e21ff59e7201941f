"""Helpers shared by tests: graphs with reordered nodes."""
from __future__ import annotations

import torch
from torch_geometric.data import HeteroData


def permute_nodes(data: HeteroData, node_type: str, perm: torch.Tensor) -> HeteroData:
    """The same graph with the nodes of ``node_type`` reordered (new index i holds old node perm[i])."""
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    out = HeteroData()
    for nt in data.node_types:
        n = data[nt].num_nodes
        for key, value in data[nt].items():
            permuted = nt == node_type and torch.is_tensor(value) and value.dim() and value.size(0) == n
            out[nt][key] = value[perm] if permuted else value
    for et in data.edge_types:
        for key, value in data[et].items():
            out[et][key] = value.clone() if torch.is_tensor(value) else value
        ei = out[et].edge_index
        if et[0] == node_type:
            ei[0] = inv[ei[0]]
        if et[2] == node_type:
            ei[1] = inv[ei[1]]
    return out


def permute_people(data: HeteroData, perm: torch.Tensor) -> HeteroData:
    return permute_nodes(data, "person", perm)


CONTACT = ("person", "contact", "person")


def timed_chain(time, period=None, n: int = 4) -> HeteroData:
    """A 4-person chain of two-way contacts (weights 1, 2, 3) with per-edge windows ``time`` (and ``period``)."""
    d = HeteroData()
    d["person"].num_nodes = n
    d["person"].uid = torch.arange(n)
    d["person"].age = torch.full((n,), 30.0)
    d[CONTACT].edge_index = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    d[CONTACT].edge_weight = torch.tensor([1.0, 1.0, 2.0, 2.0, 3.0, 3.0])
    d[CONTACT].time = torch.as_tensor(time)
    if period is not None:
        d[CONTACT].time_period = period
    return d


def assert_grad_matches_central_differences(outcome, weight: torch.Tensor, indices, eps: float = 1e-5,
                                            moving: int = 3) -> None:
    """The autograd gradient of the scalar ``outcome()`` in the entries ``indices`` of the parameter ``weight``
    (changed in place and restored) against central differences, rel 1e-5 (float64); at least ``moving`` of the
    entries must move the outcome (a gradient of zeros matched by flat differences proves nothing)."""
    import pytest

    (grad,) = torch.autograd.grad(outcome(), [weight])
    checked = 0
    for idx in indices:
        with torch.no_grad():
            weight[idx] += eps
            up = float(outcome())
            weight[idx] -= 2 * eps
            down = float(outcome())
            weight[idx] += eps
        fd = (up - down) / (2 * eps)
        assert float(grad[idx]) == pytest.approx(fd, rel=1e-5, abs=1e-8), idx
        checked += abs(fd) > 1e-6
    assert checked >= moving  # the weights do move the outcome
