r"""The number of opinion clusters: groups of opinions separated by gaps wider than :math:`\delta`.

With the opinions of one replicate sorted, :math:`x_{(1)} \le \dots \le x_{(N)}`,

.. math::

    K(t) = 1 + \#\{k < N : x_{(k+1)}(t) - x_{(k)}(t) > \delta\},

the number of maximal runs of opinions whose consecutive gaps are at most
:math:`\delta` (``gap``).  Under bounded confidence opinions converge to
clusters at least :math:`\varepsilon` apart (Hegselmann–Krause, Deffuant),
so once converged :math:`K` counts them for any :math:`\delta < \varepsilon`;
before that, opinions spread over an interval form one run.
:class:`OpinionClusters` emits the event ``person.<state>_cluster_top`` — 1
for the person holding the largest opinion of each run — whose sum per step is
the observable ``<state>_clusters`` (panel "clusters").  It reads the state
after the update (place it last; at step 0, before any step, it reads 0) and costs one sort per step and replicate
(:math:`O(N \log N)`); it has no gradient.  People in runs of fewer than
``min_size`` people are not counted (``min_size=1`` counts every run).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from lpm_graph.core.observe import Observable, Outcome
from lpm_graph.core.process import Output, Process, StepContext
from lpm_graph.core.state import EventSpec
from lpm_graph.errors import ConfigError

__all__ = ["OpinionClusters", "cluster_tops"]


def cluster_tops(x: Tensor, gap: float, min_size: int = 1) -> Tensor:
    """``[N, R]`` 0/1 of the dtype of ``x``: 1 at the largest opinion of every run (module docstring) of at
    least ``min_size`` people, per column."""
    n = x.size(0)
    out = torch.zeros_like(x)
    if n == 0:
        return out
    values, order = torch.sort(x.detach(), dim=0)
    top = torch.ones_like(values, dtype=torch.bool)
    top[:-1] = (values[1:] - values[:-1]) > gap
    if min_size > 1:  # run sizes: distance between consecutive tops in the sorted order
        rank = torch.arange(n, device=x.device).view(-1, 1).expand_as(top)
        ends = torch.where(top, rank, torch.full_like(rank, -1))
        prev = torch.cummax(torch.cat([torch.full_like(ends[:1], -1), ends[:-1]]), dim=0).values
        top &= (rank - prev) >= min_size
    out.scatter_(0, order, top.to(x.dtype))
    return out


class OpinionClusters(Process):
    r"""Emit the top of every opinion cluster, so that their sum per step is the cluster count (module docstring).

    Args:
        gap (float): :math:`\delta > 0`, the widest gap inside a cluster, in opinion units. (default: ``0.01``)
        min_size (int): the fewest people a counted cluster holds. (default: ``1``)
        node_type (str), state (str): the opinion state ``<node_type>.<state>``. (default: ``person``, ``opinion``)
        name (str): the process name. (default: ``"clusters"``)
    """

    role = "update"
    default_name = "clusters"

    def __init__(self, gap: float = 0.01, min_size: int = 1, node_type: str = "person", state: str = "opinion",
                 name: str | None = None):
        super().__init__(name)
        if isinstance(gap, bool) or not isinstance(gap, (int, float)) or not (math.isfinite(gap) and gap > 0):
            raise ConfigError(f"OpinionClusters ({self.name}).gap must be a number > 0, got {gap!r}")
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
            raise ConfigError(f"OpinionClusters ({self.name}).min_size must be a whole number >= 1, got {min_size!r}")
        self.gap, self.min_size, self.node_type, self.state = float(gap), min_size, node_type, state
        self.key = f"{node_type}.{state}"
        self.event = f"{node_type}.{state}_cluster_top"

    def event_specs(self):
        return [EventSpec(self.node_type, f"{self.state}_cluster_top", unit="clusters",
                          doc=f"1 at the largest opinion of every cluster (gap > {self.gap:g})")]

    def reads(self):
        return [self.key]

    def workspace(self) -> dict[str, float]:
        return {self.node_type: 6.0}  # sorted values, order (int64: 2), gaps and tops, the scattered event

    def observables(self):
        return [Observable(f"{self.state}_clusters", self.event, "sum", panel="clusters", unit="clusters",
                           doc=f"number of opinion clusters (runs of opinions with gaps <= {self.gap:g})")]

    def outcomes(self):
        prefix = "" if self.state == "opinion" else f"{self.state}_"
        return [Outcome(f"{prefix}final_clusters", f"{self.state}_clusters", "final", unit="clusters",
                        doc="number of opinion clusters at the end")]

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        return Output(events={self.event: cluster_tops(state[self.key], self.gap, self.min_size)})

    def extra_repr(self) -> str:
        return f"name={self.name!r}, state={self.key!r}, gap={self.gap:g}, min_size={self.min_size}"
