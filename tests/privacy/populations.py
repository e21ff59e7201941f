"""Small populations for the private-agent tests."""
from __future__ import annotations

import torch
from torch_geometric.data import HeteroData

VENUES = ("household", "school", "workplace", "community")


def blocks(n: int = 60, private_households=(0, 2), seed: int = 0) -> HeteroData:
    """``n`` people in households of three (household ``h = i // 3``); the first two members of a household go to
    school ``h % 2``, the last two to workplace ``h % 2``; everyone to one community.  ``person.private`` marks the
    members of ``private_households`` (even ones by default): every venue then has none or at least three private
    members.  Uids are not the rows (``7 i + 3``)."""
    g = torch.Generator().manual_seed(seed)
    d = HeteroData()
    i = torch.arange(n)
    h = i // 3
    d["person"].num_nodes = n
    d["person"].uid = i * 7 + 3
    d["person"].age = torch.randint(0, 90, (n,), generator=g).float()
    d["person"].private = torch.isin(h, torch.as_tensor(list(private_households)))
    school, work = i % 3 < 2, i % 3 > 0
    members = {
        "household": (i, h),
        "school": (i[school], h[school] % 2),
        "workplace": (i[work], h[work] % 2),
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
