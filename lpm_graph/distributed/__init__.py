"""Partitioned runs: one population split across processes, the same run as in one (docs/distributed.md).

* :mod:`~lpm_graph.distributed.partition`: METIS (per node type balance, contact-weighted cut) or contiguous uid
  ranges; parts with their ghosts and halo plans, written once and read per rank;
* :mod:`~lpm_graph.distributed.halo`: the exchanges of ghost rows inside every sparse product (``all_to_all_single``,
  differentiable), observables reduced across ranks, gradients averaged;
* :mod:`~lpm_graph.distributed.runner`: the process group under ``torchrun``, this rank's part, rank 0 writes.
"""
from lpm_graph.distributed.partition import (Partition, PartitionReport, load_part, partition_graph, split,
                                             write_partition)

__all__ = ["Partition", "PartitionReport", "partition_graph", "split", "write_partition", "load_part"]
