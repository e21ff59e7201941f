"""lpm_graph/distributed/runner.py: this rank's part as a prepared graph (``prepare_part``), and the refusal of a
call that gives it neither the population nor a written partition.  The equality on 2 and 4 processes is in
test_partitioned_run.py."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.errors import ConfigError
from tests.distributed import workers
from tests.distributed.test_partitioned_run import OVERRIDES, assert_same_run, reference


def test_one_process_group_of_one_is_the_plain_run(tmp_path):
    """P = 1 through the partitioned path (a process group of one, all-reduces over one rank)."""
    import torch.distributed as dist

    ref = reference(OVERRIDES)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        from lpm_graph.distributed.halo import average_gradients
        from lpm_graph.distributed.runner import prepare_part

        model, data, run_cfg = workers.build(OVERRIDES)
        graph, _ = prepare_part(model, data, method="contiguous", dtype=torch.float64)
        assert graph.partition is not None
        out = workers.run(model, graph, run_cfg, True)
        average_gradients([p for p in model.parameters() if p.requires_grad])
        out["grads"] = workers.grads(model)
    finally:
        torch.set_grad_enabled(True)
        dist.destroy_process_group()
    assert_same_run(ref, [out])


def test_prepare_part_needs_the_population_or_a_written_partition(tmp_path):
    import torch.distributed as dist

    from lpm_graph.distributed.runner import prepare_part

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        model, _, _ = workers.build(OVERRIDES)
        with pytest.raises(ConfigError, match="needs the population"):
            prepare_part(model, None)
    finally:
        dist.destroy_process_group()
