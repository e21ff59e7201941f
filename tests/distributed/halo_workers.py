"""What a spawned rank of tests/distributed/test_halo.py does (no Hydra or CLI imports: a light child)."""
from __future__ import annotations

import os

import torch



#: the hand-made plan of tests/distributed/test_halo.py: 5 nodes, part 0 owns 0-2 and ghosts 3 (local row 3),
#: part 1 owns 3-4 (local rows 0-1) and ghosts 1 and 2 (local rows 2-3)
HALO_PLANS = {
    0: dict(num_local=4, num_owned=3, ghost_rows=[3], ghost_counts=[0, 1], serve_rows=[1, 2], serve_counts=[0, 2]),
    1: dict(num_local=4, num_owned=2, ghost_rows=[2, 3], ghost_counts=[2, 0], serve_rows=[0], serve_counts=[1, 0]),
}
#: global node of each local row, per part
HALO_NODES = {0: [0, 1, 2, 3], 1: [3, 4, 1, 2]}


def halo_checks(rank: int, world: int, init_file: str, out_dir: str) -> None:
    """One rank of the exchange checks: the broadcast, the reduction, their backward passes and all_sum, on
    float64 values that name their node, their rank and their column (results to ``halo<r>.pt``)."""
    import torch.distributed as dist

    from lpm_graph.distributed.halo import Exchange, all_sum, average_gradients
    from lpm_graph.distributed.partition import Halo

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        p = HALO_PLANS[rank]
        ex = Exchange(Halo(p["num_local"], p["num_owned"], torch.tensor(p["ghost_rows"]), p["ghost_counts"],
                           torch.tensor(p["serve_rows"]), p["serve_counts"]))
        nodes = torch.tensor(HALO_NODES[rank], dtype=torch.float64)
        # the node id and 10 x it + 1, and on the rows this part does not own a stale 100 x (rank + 1) more,
        # which the broadcast must overwrite
        stale = 100.0 * (rank + 1) * (torch.arange(4) >= p["num_owned"]).to(torch.float64)
        x = torch.stack([nodes + stale, 10 * nodes + 1 + stale], 1)
        x.requires_grad_(True)
        gen = torch.Generator().manual_seed(rank)
        w = torch.randn(4, 2, generator=gen, dtype=torch.float64)
        b = ex.broadcast(x)
        (b * w).sum().backward()
        y = torch.randn(4, 2, generator=gen, dtype=torch.float64, requires_grad=True)
        r = ex.reduce(y)
        v = torch.randn(4, 2, generator=gen, dtype=torch.float64)
        (r * v).sum().backward()
        s = torch.tensor([float(rank + 1)], dtype=torch.float64, requires_grad=True)
        ((rank + 1) * all_sum(s)).sum().backward()
        lin = torch.nn.Linear(1, 1, dtype=torch.float64)
        lin.weight.grad = torch.full_like(lin.weight, float(rank))
        average_gradients(lin.parameters())
        torch.save({"x": x.detach(), "w": w, "broadcast": b.detach(), "x_grad": x.grad, "y": y.detach(),
                    "v": v, "reduce": r.detach(), "y_grad": y.grad, "sum_grad": s.grad, "avg": lin.weight.grad},
                   os.path.join(out_dir, f"halo{rank}.pt"))
    finally:
        dist.destroy_process_group()
