r"""Partitioned runs: the process group, a part of the population, and who writes.

``torchrun --nproc_per_node=P -m lpm_graph <overrides>`` starts ``P``
processes with the same config (``docs/distributed.md``).  Each calls
:func:`init` (``torch.distributed.init_process_group`` from torchrun's
environment: gloo on CPU, nccl on CUDA with one device per local rank, a
timeout on every collective), then :func:`prepare_part`:

* with ``distributed.partition=<folder>`` (written once by
  :func:`~lpm_graph.distributed.partition.write_partition`), each rank reads
  its own part only;
* otherwise every rank builds the population from its config (the same on
  every rank: the builders are seeded), rank 0 partitions it
  (``distributed.method``), the assignment is broadcast, and each rank keeps
  its part.

The model must be made of processes that declare themselves
``partitionable`` (:func:`~lpm_graph.distributed.halo.check_partitionable`):
anything else is refused before any work, naming the process.  Parameters
start equal on every rank (built from the same config) and stay so: their
gradients are averaged (:func:`~lpm_graph.distributed.halo.average_gradients`)
and, after each optimiser step, rank 0's values are broadcast.  Only rank 0
writes outputs (:func:`is_writer`).
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist

from lpm_graph.errors import ConfigError

__all__ = ["world", "partitioned", "is_writer", "init", "prepare_part", "sync_parameters", "rank_label",
           "DEFAULT_TIMEOUT"]

#: seconds a collective waits for the other ranks before the run fails (distributed.timeout)
DEFAULT_TIMEOUT = 300.0

_GROUPS: dict[str, object] = {}


def world() -> tuple[int, int]:
    """``(rank, world size)``: of the process group when one is initialised, else of torchrun's environment."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def partitioned() -> bool:
    """Whether this process is one of several of a partitioned run."""
    return world()[1] > 1


def is_writer() -> bool:
    """Only rank 0 writes outputs."""
    return world()[0] == 0


def rank_label() -> str:
    rank, size = world()
    return f"rank {rank} of {size}"


def init(device: str = "cpu", timeout: float = DEFAULT_TIMEOUT, backend: str | None = None) -> tuple[str, object]:
    """Join torchrun's process group (once); returns ``(device, cpu group)``.

    ``backend`` defaults to nccl for a CUDA device and gloo on the CPU; with nccl each local rank takes
    ``cuda:<LOCAL_RANK>`` and a gloo group carries the setup's small CPU collectives (the broadcast of the
    assignment, the group counts).
    """
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ConfigError(f"distributed.timeout must be a positive number of seconds, got {timeout!r}")
    cuda = device.startswith("cuda")
    backend = backend or ("nccl" if cuda else "gloo")
    if backend not in ("gloo", "nccl"):
        raise ConfigError(f"distributed.backend must be gloo or nccl (or null: by device), got {backend!r}")
    if backend == "nccl" and not cuda:
        raise ConfigError("distributed.backend=nccl needs device=cuda")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        if device == "cuda" or torch.cuda.device_count() > 1:
            device = f"cuda:{local % max(1, torch.cuda.device_count())}"
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
            if key not in os.environ:
                raise ConfigError(f"a partitioned run is launched by torchrun (environment variable {key} is not "
                                  "set): torchrun --nproc_per_node=P -m lpm_graph ...")
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=float(timeout)))
    _GROUPS["cpu"] = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=float(timeout))) \
        if backend == "nccl" else None
    return device, _GROUPS["cpu"]


def shutdown() -> None:
    """Leave the process group (at the end of a partitioned run, or after its failure)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _GROUPS.clear()


def cpu_group():
    return _GROUPS.get("cpu")


def prepare_part(model, data=None, *, folder=None, method: str = "metis", seed: int = 0, dtype=torch.float32,
                 device: str = "cpu", group=None, cpu_group=None, edge_type_weights=None):
    """This rank's part of the population as a prepared :class:`~lpm_graph.core.graph.Graph` of ``model``
    (module docstring): read from ``folder``, or split from the whole ``data`` by rank 0's partition."""
    from lpm_graph.distributed.halo import attach, check_partitionable
    from lpm_graph.distributed.partition import Partition, load_part, partition_graph, split

    check_partitionable(model)
    rank, size = dist.get_rank(), dist.get_world_size()
    if folder is not None:
        local, info = load_part(folder, rank, size)
    else:
        if data is None:
            raise ConfigError("prepare_part needs the population (data) or a written partition (folder)")
        box = [None]
        if rank == 0:
            partition = partition_graph(data, size, method, seed=seed, edge_type_weights=edge_type_weights)
            box = [(partition.assignment, partition.method, partition.home, partition.constraints)]
        dist.broadcast_object_list(box, src=0, group=cpu_group)
        assignment, used, home, constraints = box[0]
        local, info = split(data, Partition(size, assignment, used, home, 0.0, constraints), rank)
    graph = model.prepare(local, dtype).to(device)
    return attach(graph, info, group, cpu_group), local


def sync_parameters(parameters, group=None) -> None:
    """Rank 0's values of ``parameters`` on every rank (after an optimiser step: the ranks' averaged gradients are
    the same, but an optimiser's arithmetic need not be bit-identical across devices)."""
    for p in parameters:
        with torch.no_grad():
            dist.broadcast(p.data, src=0, group=group)


#: the tasks a partitioned run supports
TASKS = ("simulate", "calibrate")


def build(cfg, model, run, task, dtype, grad: bool = False, replicates: int | None = None):
    """:func:`lpm_graph.tasks.simulate.build` on one rank of a partitioned run: ``(model, graph of this rank's part,
    its HeteroData, run settings, task settings)``."""
    import dataclasses

    from lpm_graph import memory
    from lpm_graph.distributed.halo import check_partitionable
    from lpm_graph.tasks.simulate import instantiate_config

    name = getattr(task, "name", None)
    if name not in TASKS:
        raise ConfigError(f"task={name} does not run partitioned; a partitioned run (torchrun) supports task="
                          f"{' | '.join(TASKS)}")
    if getattr(task, "save_population", False):
        raise ConfigError("task.save_population=true in a partitioned run would save one rank's part; save the "
                          "population from a run in one process, or write a partition "
                          "(lpm_graph.distributed.write_partition)")
    if name == "calibrate" and task.method != "map":
        raise ConfigError(f"task.method={task.method} does not run partitioned; a partitioned calibration is "
                          "task.method=map")
    check_partitionable(model)
    d = run.distributed
    device, cpu = init(run.device, d.timeout, d.backend)
    data = None if d.partition else instantiate_config(cfg.population)
    graph, local = prepare_part(model, data, folder=d.partition, method=d.method, seed=run.seed, dtype=dtype,
                                device=device, cpu_group=cpu)
    del data
    model = model.to(device=device, dtype=dtype)
    reps = run.replicates if replicates is None else replicates
    memory.check_memory(memory.estimate_run(model, graph, run.steps, reps, grad=grad, dtype=dtype, device=device))
    _INFO["graph"] = graph
    # rank 0 shows the progress bars
    return model, graph, local, dataclasses.replace(run, device=device, progress=run.progress and is_writer()), task


_INFO: dict[str, object] = {}


def summary_entry(graph) -> dict:
    """``{"distributed": ...}`` for a summary of a partitioned run (processes, backend, rank 0's part), else ``{}``."""
    part = getattr(graph, "partition", None)
    if part is None:
        return {}
    from lpm_graph.distributed.halo import STATS

    info = part.info
    return {"distributed": {"processes": info.parts, "backend": dist.get_backend(), "method": info.method,
                            # rank 0's time inside collectives (waiting for the other ranks included) and the values
                            # it sent, over the whole task
                            "rank0_collective_seconds": round(STATS["seconds"], 3),
                            "rank0_collectives": STATS["collectives"], "rank0_values_sent": STATS["values_sent"],
                            "rank0_owned": {nt: h.num_owned for nt, h in info.halos.items()},
                            "rank0_ghosts": {nt: h.num_local - h.num_owned for nt, h in info.halos.items()}}}
