"""Small populations and models with behaviours for the behaviour tests."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData

from lpm_graph.data import generate_population

VENUES = ("household", "school", "workplace", "community")


@pytest.fixture(scope="session")
def population():
    return generate_population(3000, seed=11)


def random_venues(n: int = 12, seed: int = 0, weighted: bool = True) -> HeteroData:
    """``n`` people, each in one household, some in one school or workplace, every one in 1-2 community venues;
    random membership weights, so that sizes and weights are checked, not only counts."""
    g = torch.Generator().manual_seed(seed)
    d = HeteroData()
    d["person"].num_nodes = n
    d["person"].uid = torch.arange(n)
    d["person"].age = torch.randint(0, 90, (n,), generator=g).float()
    counts = {"household": 4, "school": 2, "workplace": 2, "community": 3}
    for vt, k in counts.items():
        d[vt].num_nodes = k
        d[vt].uid = torch.arange(k)
        if vt == "household":
            src = torch.arange(n)
        elif vt == "community":
            src = torch.cat([torch.arange(n), torch.arange(0, n, 3)])
        else:
            src = torch.randperm(n, generator=g)[: n // 3]
        dst = torch.randint(0, k, (src.numel(),), generator=g)
        d["person", "member_of", vt].edge_index = torch.stack([src, dst])
        if weighted:
            d["person", "member_of", vt].edge_weight = 0.5 + torch.rand(src.numel(), generator=g)
    return d


def reference_force(data: HeteroData, x: torch.Tensor, betas: dict, home: torch.Tensor | None,
                    avoid: dict, stays_home_types=("school", "workplace")) -> torch.Tensor:
    """The force of infection written out edge by edge (the docstring of VenueTransmission), ``[N, R]``."""
    n, R = x.shape
    lam = torch.zeros(n, R, dtype=x.dtype)
    for vt in VENUES:
        et = ("person", "member_of", vt)
        src, dst = data[et].edge_index
        w = data[et].edge_weight.to(x.dtype) if "edge_weight" in data[et] else torch.ones(src.numel(), dtype=x.dtype)
        q = torch.ones(n, R, dtype=x.dtype)
        if home is not None and vt in stays_home_types:
            q = q * (1 - home)
        if avoid.get(vt) is not None:
            q = q * (1 - avoid[vt])
        for v in range(data[vt].num_nodes):
            members = (dst == v).nonzero().flatten()
            if not members.numel():
                continue
            people, wv = src[members], w[members]
            size = (wv.unsqueeze(1) * q[people]).sum(0)
            pressure = (wv.unsqueeze(1) * q[people] * x[people]).sum(0)
            rate = torch.where(size > 0, betas[vt] * pressure / size.clamp_min(1e-300), torch.zeros_like(size))
            lam.index_add_(0, people, wv.unsqueeze(1) * q[people] * rate)
    return lam
