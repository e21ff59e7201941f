r"""Memory needed by a run, estimated before anything large is allocated.

:func:`estimate_memory` adds up what a run holds at its peak from the sizes
that decide it — people :math:`N`, membership/contact edges :math:`E`,
venues :math:`V`, steps :math:`T`, replicate columns :math:`R`, compartments
:math:`C`, bytes per value :math:`b` — and the mode (forward only, or
forward + backward with or without per-step checkpointing):

=========================  ==================================================
part                       bytes
=========================  ==================================================
runtime                    the interpreter with torch, PyG, Hydra, pandas
                           loaded (~0.4 GiB measured; CPU runs only)
population                 the ``HeteroData`` graph kept during the run:
                           :math:`12N + 32E + 16V` (ids, ages, edges and
                           their reverse as ``int64``)
layouts                    the prepared CSR layouts (``int32``, and their
                           transposes): :math:`2(8E + 4(N + V)) + 32N + 12V`
build                      transient, while the layouts are built (COO
                           coalescing): :math:`90E`; not concurrent with the
                           run
state + step               the compartments and one step's temporaries:
                           :math:`(3C + 16)\,N R b`
saved for backward         per step: :math:`C\,N R b` with checkpointing
                           (the state each step starts from), else
                           :math:`(C + 6)\,N R b`; the backward adds one
                           step's recomputation, :math:`26\,N R b`
=========================  ==================================================

The coefficients were measured on synthetic populations (peak RSS of a fresh
process with ``MALLOC_MMAP_THRESHOLD_=131072``, i.e. without glibc's heap
growth, which :func:`release_free_memory` keeps in check during a run), and
``tests/test_memory.py`` checks the estimate against the measured peak RSS of
small runs in fresh processes.

:func:`check_memory` compares an estimate with what the device has free —
``MemAvailable`` of ``/proc/meminfo`` (and the cgroup limit, if lower) on the
CPU, ``torch.cuda.mem_get_info`` on a GPU — and raises
:class:`InsufficientMemoryError` (a :class:`~lpm_graph.data.ConfigError`, so
the CLI prints one line) naming the knobs that shrink a run.
"""
from __future__ import annotations

import contextlib

import ctypes
import ctypes.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lpm_graph.data.validate import ConfigError

__all__ = ["MemoryEstimate", "InsufficientMemoryError", "estimate_memory", "estimate_run", "estimate_config",
           "available_memory", "check_memory", "release_free_memory", "RUNTIME_BYTES"]

GiB = 2**30
MiB = 2**20

#: RSS of a process with torch, torch_geometric, hydra and pandas imported (measured: 386-398 MiB).
RUNTIME_BYTES = 420 * MiB
#: transient bytes per edge while the CSR layouts are built (measured: ~88 B per membership edge).
BUILD_BYTES_PER_EDGE = 90
#: one step's temporaries, in [N, R] tensors beyond 3 copies of the state (old, new, events).
STEP_TEMPORARIES = 16
#: tensors of [N, R] autograd keeps per step without checkpointing, beyond the state.
SAVED_PER_STEP = 6
#: one step recomputed in the backward with its gradients, in [N, R] tensors.
BACKWARD_TEMPORARIES = 26


class InsufficientMemoryError(ConfigError):
    """A run is estimated not to fit in the memory of its device."""


@dataclass
class MemoryEstimate:
    """Peak bytes of a run, by part (see the module docstring); ``total`` is the peak."""

    device: str
    parts: dict[str, int] = field(default_factory=dict)
    peak_parts: tuple[str, ...] = ()
    description: str = ""

    @property
    def total(self) -> int:
        return sum(self.parts[p] for p in self.peak_parts)

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v / GiB:.2f}" for k, v in self.parts.items() if v)
        return f"{self.total / GiB:.2f} GiB on {self.device} ({parts} GiB)"


def estimate_memory(num_people: int, num_edges: int, steps: int, replicates: int = 1, *, num_venues: int = 0,
                    compartments: int = 4, dtype: torch.dtype = torch.float32, grad: bool = False,
                    checkpoint: bool = False, device: str = "cpu", with_population: bool = True,
                    with_runtime: bool = True) -> MemoryEstimate:
    """Estimate the peak memory of a run.

    Args:
        num_people (int): :math:`N`.
        num_edges (int): person-venue membership plus person-person contact edges :math:`E`.
        steps (int): :math:`T`.
        replicates (int): :math:`R`.
        num_venues (int): :math:`V`.
        compartments (int): state tensors per person, e.g. 4 for SEIR, 5 for
            SEIRD, one more per intervention state such as ``V``.
        dtype: floating type of the state.
        grad (bool): a forward + backward (calibration, sensitivity) run.
        checkpoint (bool): per-step checkpointing in a grad run.
        device (str): ``"cpu"`` or ``"cuda[:i]"``; on a GPU the runtime and
            the ``HeteroData`` stay in host memory and are not counted.
        with_population (bool): count the ``HeteroData`` graph and the layout
            build (False when the graph is already built and its memory already
            in use).
        with_runtime (bool): count the interpreter and libraries.
    """
    n, e, v, t, r = int(num_people), int(num_edges), int(num_venues), int(steps), int(replicates)
    b = torch.empty((), dtype=dtype).element_size()
    c = int(compartments)
    nr = n * r * b
    cuda = str(device).startswith("cuda")
    parts = {
        "runtime": RUNTIME_BYTES if with_runtime and not cuda else 0,
        "population": 12 * n + 32 * e + 16 * v if with_population and not cuda else 0,
        "layouts": 2 * (8 * e + 4 * (n + v)) + 32 * n + 12 * v + 8 * n * r,
        "build": BUILD_BYTES_PER_EDGE * e if with_population else 0,
        "state": (3 * c + STEP_TEMPORARIES) * nr + 2 * 8 * n * r,
        "saved_for_backward": 0,
        "backward": 0,
        "trajectory": 2 * (t + 1) * (c + 3 + 2 * 9) * r * b,
    }
    if grad:
        parts["saved_for_backward"] = t * (c if checkpoint else c + SAVED_PER_STEP) * nr
        parts["backward"] = BACKWARD_TEMPORARIES * nr
    run_peak = parts["state"] + parts["saved_for_backward"] + parts["backward"] + parts["trajectory"]
    # the layout build and the run are not concurrent: the peak is the larger of the two
    if parts["build"] > run_peak:
        peak = ("runtime", "population", "layouts", "build")
    else:
        peak = ("runtime", "population", "layouts", "state", "saved_for_backward", "backward", "trajectory")
    mode = ("forward + backward" + (" (checkpointed)" if checkpoint else "")) if grad else "forward"
    desc = f"{n:,} people, {e:,} edges, {t} steps, {r} replicate(s), {mode}"
    return MemoryEstimate(device=str(device), parts=parts, peak_parts=peak, description=desc)


def _num_edges(graph) -> int:
    e = graph.venue_adj.num_edges if graph.venue_adj is not None else 0
    e += sum(a.num_edges for a in graph.contacts.values())
    for _, layouts in getattr(graph, "contact_windows", {}).values():
        e += sum(a.num_edges for a in layouts.values())
    return e


def estimate_run(model, graph, steps: int, replicates: int = 1, *, grad: bool = False,
                 dtype: torch.dtype = torch.float32, device: str = "cpu",
                 population_built: bool = True) -> MemoryEstimate:
    """:func:`estimate_memory` for a model and a :class:`~lpm_graph.data.prepare.PreparedPopulation`.

    With ``population_built`` (the default) the graph and its layouts already
    exist, so only the run's own memory is left to allocate; the estimate
    still reports their size.
    """
    from lpm_graph.dynamics.interventions import Intervention

    # interventions with state of their own (vaccinated, ...) add one [N, R] tensor each
    compartments = len(model.compartments) + sum(
        1 for m in model.environment if type(m).initial_state is not Intervention.initial_state)
    est = estimate_memory(graph.num_people, _num_edges(graph), steps, replicates, num_venues=graph.num_venues,
                          compartments=compartments, dtype=dtype, grad=grad,
                          checkpoint=bool(getattr(model, "use_checkpoint", False)), device=device,
                          with_population=not population_built)
    if population_built:
        est.parts["layouts_built"] = est.parts.pop("layouts")
        est.parts["runtime"] = 0
        est.peak_parts = tuple(p for p in est.peak_parts if p not in ("runtime", "layouts", "population", "build"))
    return est


def expected_memberships(spec) -> float:
    """Expected venue memberships per person of a synthetic population spec (household and
    community always; school and workplace by age, enrolment and employment)."""
    ages = spec.age_distribution
    edges = torch.tensor(ages.bin_edges, dtype=torch.float64)
    w = torch.tensor(ages.weights, dtype=torch.float64)
    w = w / w.sum()

    def share(lo: float, hi: float) -> float:  # share of integer ages lo..hi inclusive
        a, b = edges[:-1], edges[1:]
        overlap = (torch.minimum(b, torch.tensor(hi + 1.0)) - torch.maximum(a, torch.tensor(float(lo)))).clamp_min(0)
        return float((w * overlap / (b - a)).sum())

    school = share(spec.school.min_age, spec.school.max_age) * spec.school.enrolment
    work = share(spec.workplace.min_age, spec.workplace.max_age) * spec.workplace.employment_rate
    return 2.0 + school + work


def estimate_config(cfg, grad: bool = False) -> MemoryEstimate | None:
    """Estimate a composed run config before the population is built.

    Known only for the synthetic generator (``population.num_people``); other
    populations return ``None`` and are checked once built (:func:`estimate_run`).
    """
    from omegaconf import OmegaConf

    pop = cfg.get("population")
    if pop is None or "num_people" not in pop or not str(pop.get("_target_", "")).endswith("generate_population"):
        return None
    from lpm_graph.data.synthetic import SyntheticPopulationSpec

    kwargs = {k: v for k, v in OmegaConf.to_container(pop, resolve=True).items() if not k.startswith("_")}
    spec = SyntheticPopulationSpec.from_config(**kwargs)
    n = spec.num_people
    e = int(round(n * expected_memberships(spec)))
    v = int(n / 2.5 + n / 2000 + n / 500 * 0.2 + n * 0.04)  # households, communities, schools, workplaces (approx.)
    model = cfg.get("model", {})
    compartments = 5 if (model.get("disease", {}) or {}).get("fatality") else 4
    compartments += sum(1 for m in (model.get("environment") or []) if "Vaccination" in str(m.get("_target_", "")))
    return estimate_memory(n, e, int(cfg.steps), int(cfg.replicates), num_venues=v, compartments=compartments,
                           dtype=getattr(torch, str(cfg.get("dtype", "float32"))), grad=grad,
                           checkpoint=bool(model.get("checkpoint", False)), device=str(cfg.get("device", "cpu")))


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
        estimate: from :func:`estimate_memory`, :func:`estimate_run` or :func:`estimate_config`.
        available (int, optional): bytes available; measured on the estimate's
            device if omitted (:func:`available_memory`).
        headroom (float): fraction of the available memory a run may plan to use.
    """
    if available is None:
        available = available_memory(estimate.device)
    if estimate.total > headroom * available:
        grad = estimate.parts.get("saved_for_backward", 0) > 0
        knobs = []
        if grad and estimate.parts["saved_for_backward"] > estimate.parts["state"] and "checkpointed" not in \
                estimate.description:
            knobs.append("model.checkpoint=true")
        knobs += ["fewer steps", "fewer replicates", "a smaller population.num_people"]
        knobs.append("another device (device=cuda / device=cpu)" if torch.cuda.is_available() else
                     "a machine with more memory")
        raise InsufficientMemoryError(
            f"the run ({estimate.description}) needs about {estimate.total / GiB:.1f} GiB but only "
            f"{available / GiB:.1f} GiB is available on {estimate.device}; reduce it with "
            + ", ".join(knobs))
    return estimate


_LIBC = None


def release_free_memory() -> bool:
    """Return the free pages of the C heap to the system (glibc ``malloc_trim(0)``); False elsewhere.

    glibc raises its mmap threshold after the first large ``free`` (up to 32
    MiB), so tensors of a few MiB then come from the heap, and the pattern of
    an unrolled run (a few state tensors kept per step, ~20 temporaries freed)
    makes it grow instead of reusing it.  Measured on 1M people, 1 thread,
    60 steps: a forward run's RSS grew by ~18 MiB per step with nothing held
    (708 -> 1885 MiB); a checkpointed forward + backward peaked at 3.7-3.9 GiB.
    Trimming every 10 steps (``PopulationModel`` does, on the CPU) kept them at
    960-1020 MiB and 2.2 GiB, and the steps got faster (83-89 ms vs 120-128 ms:
    a growing heap touches fresh pages every step).  Serving large blocks with
    ``mmap`` instead (``MALLOC_MMAP_THRESHOLD_``) also bounds the RSS but made
    each step ~1.9x slower (a page fault per 4 KiB of every temporary).  A call
    costs ~3 ms.
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
