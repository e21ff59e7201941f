r"""How many threads torch uses: a default that holds up on a shared machine.

torch's intra-op parallelism uses OpenMP threads that spin while they wait
for each other.  With as many threads as cores, one other busy process on
the machine makes every parallel region wait for the thread that lost its
core: ``BENCHMARKS.md`` ("Threads") has the default 1M-person run on 2
threads and on the default, quiet and with one core busy.  The default therefore leaves one
core to others — ``max(1, cores - 1)``, with ``cores`` the CPUs this
process may run on — which on 2 cores is one thread, and keeps a busy
neighbour from stalling the run.  ``threads=<n>`` sets it; so does
``OMP_NUM_THREADS`` in the environment, which the default respects.
"""
from __future__ import annotations

import os

import torch

__all__ = ["default_threads", "configure"]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads() -> int:
    """``OMP_NUM_THREADS`` if set, else one fewer than the cores this process may use (at least 1)."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, _cores() - 1)


def configure(threads: int | None = None) -> int:
    """Set torch's intra-op thread count for this process (``threads``, or :func:`default_threads`);
    returns it."""
    n = int(threads) if threads else default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
