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
