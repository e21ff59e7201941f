r"""Memory needed by a run, estimated from what the model declares, before anything large is allocated.

The estimate adds up, from the model's declarations (:mod:`lpm_graph.core`)
and the graph's sizes, what a run allocates beyond what the process already
holds — nothing is a constant fitted on one machine.  With :math:`b` bytes
per value, :math:`R` replicates, :math:`T` steps, :math:`N_\tau` nodes of
type :math:`\tau`:

=======================  =====================================================
part                     bytes
=======================  =====================================================
population               the ``HeteroData``: its tensors (when built), or
                         from the population's config before it is built
                         (:func:`lpm_graph.data.estimate.population_size`:
                         every source, from its spec or its files' sizes)
population_build         transient while the population is built (tables
                         read, copies, sorts; per source); not concurrent
                         with the layouts or the run
layouts                  the CSR layouts and transposes the processes read
                         (:meth:`Graph.nbytes`), or :math:`2(4E + 4n + bE)`
                         per edge type from edge counts, plus every node
                         type's ``uid`` and each grouping's index and
                         ``[G, N]`` indicator, and the copies of layouts
                         a process keeps (:meth:`Process.layout_copies`:
                         :math:`2(4E + 4n + bE) + 8E` each)
build                    transient while a layout is built (COO indices,
                         coalescing, sorting): :math:`(48 + 2b)E` for the
                         largest; not concurrent with the run
state                    the declared state, twice (the step's input and
                         output): :math:`2 \sum_s N_{\tau(s)} R\, |s|\, b`
step                     one step's fields, events and the largest
                         process's declared workspace
                         (:meth:`Process.workspace`), :math:`[N, R]` each
                         (:math:`[E, R]` for a per-edge entry, keyed by its
                         edge type), plus the random-number keys (8 bytes per node and
                         replicate of every node type that draws)
saved_for_backward       gradient runs: per step the state (checkpointed:
                         each step's input is all autograd keeps), else the
                         state, fields, events and what the processes declare
                         autograd keeps (:meth:`Process.saved`) of every step
backward                 gradient runs: one step's fields, events and
                         workspace twice (recomputed values and their
                         gradients)
trajectory               the observables, :math:`2(T + 1)\,(\text{series} +
                         \text{groups})\, R\, b`
=======================  =====================================================

:func:`check_memory` compares an estimate with what the device has free —
``MemAvailable`` of ``/proc/meminfo`` (and the cgroup limit, if lower) on the
CPU, ``torch.cuda.mem_get_info`` on a GPU — and raises
:class:`~lpm_graph.errors.InsufficientMemoryError` (a ``ConfigError``, so
the CLI prints one line) naming the knobs that shrink a run.
``BENCHMARKS.md`` ("Memory estimate") compares estimates with measured peaks.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lpm_graph.errors import InsufficientMemoryError

__all__ = ["MemoryEstimate", "InsufficientMemoryError", "estimate_run", "estimate_model", "estimate_config",
           "estimate_population", "available_memory", "check_memory", "release_free_memory", "current_rss", "peak_rss"]

GiB = 2**30
MiB = 2**20


@dataclass
class MemoryEstimate:
    """Bytes a run adds at its peak, by part (module docstring); ``total`` is the peak."""

    device: str
    parts: dict[str, int] = field(default_factory=dict)
    peak_parts: tuple[str, ...] = ()
    description: str = ""
    knob: str = "a smaller population.num_people"
    host: MemoryEstimate | None = None  # a GPU run: building the population in host memory

    @property
    def total(self) -> int:
        return sum(self.parts[p] for p in self.peak_parts)

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v / GiB:.2f}" for k, v in self.parts.items() if v)
        return f"{self.total / GiB:.2f} GiB on {self.device} ({parts} GiB)"


def current_rss() -> int:
    """Resident bytes of this process now (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def peak_rss() -> int:
    """Peak resident bytes of this process (``VmHWM`` of ``/proc/self/status``).

    Not ``ru_maxrss``: Linux carries that across ``exec`` from the forked copy
    of the parent, so a process started by a large one reports the parent's
    size as its own peak.  Falls back to ``ru_maxrss`` off Linux.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def _numel(shape) -> int:
    return int(math.prod(shape)) if shape else 1


def estimate_model(model, num_nodes: dict[str, int], num_edges: dict, steps: int, replicates: int = 1, *,
                   group_sizes: dict[str, int] | None = None, dtype: torch.dtype = torch.float32,
                   grad: bool = False, device: str = "cpu", population_bytes: int = 0,
                   layout_bytes: int | None = None, build: bool = True,
                   population_build_bytes: int = 0) -> MemoryEstimate:
    """Estimate a run of ``model`` from node counts per type and edge counts per edge type.

    Args:
        model (Model): the model (its declarations are read).
        num_nodes (dict): node type -> count.
        num_edges (dict): edge type -> count (edges the processes read).
        steps (int), replicates (int): :math:`T`, :math:`R`.
        group_sizes (dict): grouping -> number of groups (for grouped observables).
        dtype: floating type of the state.
        grad (bool): a forward + backward run (calibration, sensitivity).
        device (str): on a GPU the ``HeteroData`` stays in host memory and is not counted.
        population_bytes (int): bytes of the ``HeteroData`` still to be allocated.
        layout_bytes (int, optional): bytes of the layouts (if known); else from ``num_edges``.
        build (bool): count the transient of building the layouts.
        population_build_bytes (int): transient of building the population (beyond its
            ``population_bytes``); on a GPU it is host memory, not counted here.
    """
    b = torch.empty((), dtype=dtype).element_size()
    r = int(replicates)
    nr = {nt: n * r * b for nt, n in num_nodes.items()}

    def per_node(nt, count: float = 1.0) -> int:
        """Bytes of ``count`` ``[N, R]`` tensors of node type ``nt``, or ``[E, R]`` of an edge type (a tuple)."""
        if isinstance(nt, tuple):
            return int(count * num_edges.get(tuple(nt), 0) * r * b)
        return int(count * nr.get(nt, 0))

    state = sum(per_node(s.node_type, _numel(s.shape)) for s in model.state_specs.values())
    fields = sum(per_node(f.scope) for f in model.field_specs.values() if f.per_node)
    events = sum(per_node(k.split(".", 1)[0]) for k in model.event_keys)
    workspace = max([0, *(sum(per_node(nt, c) for nt, c in p.workspace().items()) for p in model.order)])
    saved = sum(per_node(nt, c) for p in model.order for nt, c in p.saved().items())
    keys = sum(8 * num_nodes.get(nt, 0) * r for nt in {nt for p in model.order for nt, _ in p.streams()})
    step = fields + events + workspace + keys
    if layout_bytes is None:
        layout_bytes = 8 * sum(num_nodes.values())  # every node type's uid (int64)
        for et, e in num_edges.items():
            n = num_nodes.get(et[0], 0) + num_nodes.get(et[2], 0)
            layout_bytes += 2 * (4 * e + 4 * n + b * e)
    written = set(model.field_specs)
    for p in model.order:  # layouts a process copies from the graph's and keeps (Process.layout_copies)
        for key, copies in p.layout_copies(written).items():
            for et in (key if isinstance(key, frozenset) else (key,)):
                e, n = num_edges.get(tuple(et), 0), num_nodes.get(et[0], 0) + num_nodes.get(et[2], 0)
                layout_bytes += int(copies * (2 * (4 * e + 4 * n + b * e) + 8 * e))
    req = model.requirements()
    for grouping in req.groupings.values():  # the group index and its [G, N] indicator (CSR + transpose)
        n = num_nodes.get(grouping.node_type, 0)
        layout_bytes += 8 * n + 2 * (4 * n + b * n + 4 * n)
    largest = max([0, *num_edges.values()])
    for stack in req.stacks:  # a stack is built as one layout
        largest = max(largest, sum(num_edges.get(et, 0) for et in stack))
    groups = sum((group_sizes or {}).get(g, 0) for o in model.observables.values() for g in o.by)
    cuda = str(device).startswith("cuda")
    parts = {
        "population": 0 if cuda else int(population_bytes),
        "population_build": 0 if cuda else int(population_build_bytes),
        "layouts": int(layout_bytes),
        "build": (48 + 2 * b) * largest if build else 0,
        "state": 2 * state,
        "step": step,
        "saved_for_backward": 0,
        "backward": 0,
        "trajectory": 2 * (steps + 1) * (len(model.observables) + groups) * r * b,
    }
    if grad:
        per_step = state if model.use_checkpoint else state + fields + events + saved
        parts["saved_for_backward"] = steps * per_step
        parts["backward"] = 2 * (fields + events + workspace)
    run = ("state", "step", "saved_for_backward", "backward", "trajectory")
    phases = [("population", "population_build"), ("population", "layouts", "build"),
              ("population", "layouts", *run)]
    peak = max(phases, key=lambda phase: sum(parts[p] for p in phase))
    mode = ("forward + backward" + (" (checkpointed)" if model.use_checkpoint else "")) if grad else "forward"
    nodes = ", ".join(f"{n:,} {nt}" for nt, n in num_nodes.items())
    desc = f"{nodes}; {sum(num_edges.values()):,} edges; {steps} steps, {r} replicate(s), {mode}"
    return MemoryEstimate(device=str(device), parts=parts, peak_parts=peak, description=desc)


def estimate_run(model, graph, steps: int, replicates: int = 1, *, grad: bool = False,
                 dtype: torch.dtype = torch.float32, device: str = "cpu") -> MemoryEstimate:
    """:func:`estimate_model` for a prepared graph: the graph and its layouts exist already, so only
    the run's own memory is left to allocate."""
    num_edges = graph.edge_counts()  # for per-edge workspace; the layouts exist (layout_bytes=0, no build)
    est = estimate_model(model, dict(graph.num_nodes), num_edges, steps, replicates, group_sizes=graph.group_sizes(),
                         dtype=dtype, grad=grad, device=device, layout_bytes=0, build=False)
    est.description = est.description.replace(f"; {sum(num_edges.values()):,} edges", f"; {graph.num_edges():,} edges")
    return est


def estimate_config(cfg, model, grad: bool = False, replicates: int | None = None) -> MemoryEstimate | None:
    """Estimate a composed run config before its population is built (``None`` if the population's
    source cannot say its size without being built)."""
    from lpm_graph.data.estimate import population_size

    from lpm_graph.data.estimate import ANY_RELATION

    size = population_size(cfg.get("population"))
    if size is None:
        return None
    req = model.requirements()
    read = set(req.edge_types) | {et for stack in req.stacks for et in stack}
    num_edges = {et: size.edges.get(et, 0) for et in read}
    for key, count in size.edges.items():  # relations (or end types) known once read: shared among those read
        if ANY_RELATION in key:
            unknown = [et for et in read if et not in size.edges
                       and all(k in (ANY_RELATION, part) for k, part in zip(key, et))]
            for et in unknown:
                num_edges[et] = count // len(unknown)
    num_nodes = {nt: size.nodes.get(nt, 0) for nt in req.attributes}
    device = str(cfg.get("device", "cpu"))
    est = estimate_model(model, num_nodes, num_edges, int(cfg.steps),
                         int(cfg.replicates) if replicates is None else int(replicates),
                         group_sizes=model.group_sizes(), dtype=getattr(torch, str(cfg.get("dtype", "float32"))),
                         grad=grad, device=device, population_bytes=size.bytes,
                         population_build_bytes=size.build_bytes)
    est.knob = size.knob
    if size.source:
        est.description = f"{est.description}; population: {size.source}"
    if device.startswith("cuda"):
        est.host = _population_estimate(size)
    return est


def _population_estimate(size) -> MemoryEstimate:
    nodes = ", ".join(f"{n:,} {nt}" for nt, n in size.nodes.items())
    desc = f"building the population: {nodes}; {sum(size.edges.values()):,} edges"
    if size.source:
        desc += f"; {size.source}"
    return MemoryEstimate(device="cpu", parts={"population": size.bytes, "population_build": size.build_bytes},
                          peak_parts=("population", "population_build"), description=desc, knob=size.knob)


def estimate_population(population) -> MemoryEstimate | None:
    """Host memory of building a population config (its graph and the build's transients), before it is
    built; ``None`` if its source cannot say its size unbuilt (:func:`lpm_graph.data.estimate.population_size`)."""
    from lpm_graph.data.estimate import population_size

    size = population_size(population)
    return None if size is None else _population_estimate(size)


def _cgroup_available() -> int | None:
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= 2**60:
            return None
        return max(0, int(limit) - usage)
    return None


def available_memory(device: str | torch.device = "cpu") -> int:
    """Bytes a new allocation can use now: free GPU memory, or ``MemAvailable`` (capped by a cgroup limit)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    avail = None
    with contextlib.suppress(OSError):  # no /proc/meminfo: fall back below
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    if avail is None:  # not Linux: total physical memory
        try:
            avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return 2**62
    cg = _cgroup_available()
    return min(avail, cg) if cg is not None else avail


def check_memory(estimate: MemoryEstimate, available: int | None = None, headroom: float = 0.9) -> MemoryEstimate:
    """Raise :class:`InsufficientMemoryError` if ``estimate`` exceeds ``headroom`` x the available memory.

    Args:
        estimate: from :func:`estimate_model`, :func:`estimate_run` or :func:`estimate_config`.
        available (int, optional): bytes available; measured on the estimate's
            device if omitted (:func:`available_memory`).
        headroom (float): fraction of the available memory a run may plan to use.

    A GPU run's estimate carries the host memory of building its population
    (``estimate.host``), checked first against the host.  The message gives the
    estimate, the memory available and what shrinks it: for a run, fewer steps
    and replicates; for every estimate, the population's own knob
    (``estimate.knob``: a smaller ``population.num_people``, or a smaller input file).
    """
    if estimate.host is not None:
        check_memory(estimate.host, headroom=headroom)
    if available is None:
        available = available_memory(estimate.device)
    if estimate.total > headroom * available:
        grad = estimate.parts.get("saved_for_backward", 0) > 0
        knobs = []
        if grad and estimate.parts["saved_for_backward"] > estimate.parts["state"] and "checkpointed" not in \
                estimate.description:
            knobs.append("model.checkpoint=true")
        if "state" in estimate.parts:  # a run, not only the population's build
            knobs += ["fewer steps", "fewer replicates"]
        knobs.append(estimate.knob)
        knobs.append("another device (device=cuda / device=cpu)" if torch.cuda.is_available() else
                     "a machine with more memory")
        what = "the run" if "state" in estimate.parts else "the population"
        raise InsufficientMemoryError(
            f"{what} ({estimate.description}) needs about {estimate.total / GiB:.1f} GiB but only "
            f"{available / GiB:.1f} GiB is available on {estimate.device}; reduce it with "
            + ", ".join(knobs))
    return estimate


_LIBC = None


def release_free_memory() -> bool:
    """Return the free pages of the C heap to the system (glibc ``malloc_trim(0)``); False elsewhere.

    glibc raises its mmap threshold after the first large ``free`` (up to 32
    MiB), so tensors of a few MiB then come from the heap, and the pattern of
    an unrolled run (a few state tensors kept per step, many temporaries
    freed) makes it grow instead of reusing it; a growing heap also touches
    fresh pages every step.  :class:`lpm_graph.core.Model` trims every
    :data:`~lpm_graph.core.loop.TRIM_EVERY` steps on the CPU, which bounds
    the RSS of an unroll and speeds its steps up; serving large blocks with
    ``mmap`` (``MALLOC_MMAP_THRESHOLD_``) bounds it too, but costs a page
    fault per 4 KiB of every temporary.  ``BENCHMARKS.md`` compares peaks across allocator settings.
    """
    global _LIBC
    if not sys.platform.startswith("linux"):
        return False
    try:
        if _LIBC is None:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(_LIBC.malloc_trim(0))
    except (OSError, AttributeError):
        return False
