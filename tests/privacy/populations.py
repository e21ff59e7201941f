"""Small populations for the private-agent tests."""
from __future__ import annotations

import torch
from torch_geometric.data import HeteroData

VENUES = ("household", "school", "workplace", "community")


def blocks(n: int = 60, private_households: int = 4, seed: int = 0) -> HeteroData:
    """``n`` people in households of three; the even ones go to one of two schools, the odd ones to one of two
    workplaces (by ``(i // 2) % 2``), everyone to one community.  ``person.private`` marks the members of the first
    ``private_households`` households: every venue then has none or at least three private members."""
    g = torch.Generator().manual_seed(seed)
    d = HeteroData()
    i = torch.arange(n)
    d["person"].num_nodes = n
    d["person"].uid = i * 7 + 3                       # not the row: keys are uids
    d["person"].age = torch.randint(0, 90, (n,), generator=g).float()
    d["person"].private = i < 3 * private_households
    members = {
        "household": (i, i // 3),
        "school": (i[i % 2 == 0], (i[i % 2 == 0] // 2) % 2),
        "workplace": (i[i % 2 == 1], (i[i % 2 == 1] // 2) % 2),
        "community": (i, torch.zeros(n, dtype=torch.long)),
    }
    for vt, (p, v) in members.items():
        nv = int(v.max()) + 1
        d[vt].num_nodes = nv
        d[vt].uid = torch.arange(nv)
        d[vt].size = torch.bincount(v, minlength=nv)
        d["person", "member_of", vt].edge_index = torch.stack([p, v])
        d[vt, "rev_member_of", "person"].edge_index = torch.stack([v, p])
    return d
