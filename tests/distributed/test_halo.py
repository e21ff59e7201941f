"""The halo exchange on two spawned ranks (gloo) over a hand-made plan (``halo_workers.HALO_PLANS``), against the
same maps written out on the whole graph: the broadcast gives ghost rows their owners' values, the reduction adds
ghost partial sums at their owners and zeroes the ghosts, each one's backward is the other (adjoints), and
``all_sum``'s backward sums the ranks' gradients."""
from __future__ import annotations

import torch
import torch.multiprocessing as mp

from lpm_graph.distributed.partition import Halo
from tests.distributed import halo_workers as workers

NODES = workers.HALO_NODES


def owner(node: int) -> tuple[int, int]:
    """(part, local row) of the part that owns ``node``."""
    for part, plan in workers.HALO_PLANS.items():
        rows = NODES[part][:plan["num_owned"]]
        if node in rows:
            return part, rows.index(node)
    raise AssertionError(node)


def test_broadcast_reduce_and_their_gradients_are_the_maps_on_the_whole_graph(tmp_path):
    mp.spawn(workers.halo_checks, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    out = [torch.load(tmp_path / f"halo{r}.pt", weights_only=True) for r in range(2)]
    for part in range(2):
        owned = workers.HALO_PLANS[part]["num_owned"]
        for row, node in enumerate(NODES[part]):
            o, orow = owner(node)
            # broadcast: owned rows as they were, a ghost row its owner's value (never this part's stale one)
            assert torch.equal(out[part]["broadcast"][row], out[o]["x"][orow]), (part, row)
            # reduce: an owned row plus every ghost copy of it elsewhere; a ghost row 0
            if row < owned:
                copies = [out[q]["y"][NODES[q].index(node)] for q in range(2)
                          if q != part and node in NODES[q]]
                assert torch.allclose(out[part]["reduce"][row], out[part]["y"][row] + sum(copies, torch.zeros(2)),
                                      rtol=0, atol=1e-15)
            else:
                assert torch.equal(out[part]["reduce"][row], torch.zeros(2, dtype=torch.float64))
        # the backward of the broadcast is the reduction of the upstream gradient, and the reverse
    for part in range(2):
        owned = workers.HALO_PLANS[part]["num_owned"]
        for row, node in enumerate(NODES[part]):
            if row < owned:  # d/dx of sum_q <B_q(x), w_q>: w at the row, plus w at every ghost copy of it
                want = out[part]["w"][row] + sum((out[q]["w"][NODES[q].index(node)] for q in range(2)
                                                  if q != part and node in NODES[q]), torch.zeros(2))
            else:  # a ghost row's own value is overwritten: no gradient
                want = torch.zeros(2, dtype=torch.float64)
            assert torch.allclose(out[part]["x_grad"][row], want, rtol=0, atol=1e-15), (part, row)
            # d/dy of sum_q <R_q(y), v_q>: a ghost row's partial sum reaches its owner's v; an owned row its own v
            o, orow = owner(node)
            want = out[o]["v"][orow]
            assert torch.allclose(out[part]["y_grad"][row], want, rtol=0, atol=1e-15), (part, row)
    # all_sum: each rank's (rank + 1) * (s_0 + s_1) gives d/ds_r = 1 + 2 on every rank; the gradient mean
    for part in range(2):
        assert out[part]["sum_grad"].item() == 3.0
        assert out[part]["avg"].item() == 0.5


def test_offset_and_concat_lay_blocks_end_to_end_per_peer():
    a = Halo(3, 2, torch.tensor([2]), [0, 1], torch.tensor([0, 1]), [0, 2])
    b = Halo(2, 1, torch.tensor([1]), [0, 1], torch.tensor([0]), [0, 1])
    shifted = a.offset(5)
    assert shifted.ghost_rows.tolist() == [7] and shifted.serve_rows.tolist() == [5, 6]
    both = Halo.concat([a, b])
    assert (both.num_local, both.num_owned) == (5, 3)
    # per peer (here only peer 1): a's rows, then b's rows shifted past a's 3 local rows
    assert both.ghost_rows.tolist() == [2, 4] and both.ghost_counts == [0, 2]
    assert both.serve_rows.tolist() == [0, 1, 3] and both.serve_counts == [0, 3]
