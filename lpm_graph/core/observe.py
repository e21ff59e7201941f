r"""Observables and outcomes: what a run reports, declared rather than hard-coded.

**Observables** reduce a step to small tensors on the fly (nothing ``[N]``
is kept over time):

=========  ============================================  =====================
kind       of                                            per step
=========  ============================================  =====================
count      an indicator or count state (or one category  :math:`\sum_i x_i`
           of a categorical state)
sum        an event                                      :math:`\sum_i e_i`
mean       a continuous state                            :math:`\frac1N\sum_i x_i`
var        a continuous state                            :math:`\frac1N\sum_i (x_i - \bar x)^2`
=========  ============================================  =====================

each ``[R]`` (one value per replicate), and optionally grouped by any
:class:`~lpm_graph.core.graph.Grouping` of the node type (age group,
borough, sector): ``[G, R]``, one sparse product with the group indicator.
Processes declare default observables of what they own; a model config adds
more (``model.observables``).

**Outcomes** are scalars per replicate computed from a trajectory, e.g. the
share of nodes that ever left a state, :math:`1 - x_T/N`; they are what ``summary.json``
reports, what ``task=analyze`` differentiates and compares, and what
``metric:`` can name.  Each reduces one observable series over time:

=========  ==================================================================
reduce     value per replicate
=========  ==================================================================
final      :math:`x_T`
max        :math:`\max_t x_t`
argmax     :math:`\arg\max_t x_t` (steps); with ``smooth=True`` the softmax-
           weighted mean step :math:`\sum_t t\,\operatorname{softmax}_t
           (x_t / (\tau \max_s x_s))`, whose derivative exists
total      :math:`\sum_{t=0}^{T} x_t` (an event series: everything that
           happened, the initial step's events included)
mean       :math:`\frac{1}{T+1}\sum_t x_t`
=========  ==================================================================

then optionally divided by the node count of the series' node type
(``normalize``) and complemented (``complement``: :math:`1 - x` when
normalised, :math:`N - x` otherwise).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lpm_graph.errors import ConfigError
from lpm_graph.nn.sparse import spmm

__all__ = ["Observable", "Outcome", "Trajectory", "OBSERVABLE_KINDS", "REDUCTIONS", "smooth_argmax"]

OBSERVABLE_KINDS = ("count", "sum", "mean", "var")
REDUCTIONS = ("final", "max", "argmax", "total", "mean")


@dataclass(frozen=True)
class Observable:
    """A quantity reduced every step.

    Args:
        name (str): its name in the trajectory (``"opinion_mean"``, ``"units_shipped"``).
        source (str): the state or event key it reduces (``"person.opinion"``).
        kind (str): one of :data:`OBSERVABLE_KINDS`.
        by (tuple[str, ...]): groupings to break it down by, besides the total.
        category (str, optional): for a categorical state, the category counted.
        panel (str): the plot panel it is drawn in (observables with the same
            panel share one). (default: its kind)
        style (str): ``"line"`` or ``"bar"``. (default: ``"line"``)
        unit (str), doc (str).
    """

    name: str
    source: str
    kind: str = "count"
    by: tuple[str, ...] = ()
    category: str | None = None
    panel: str = ""
    style: str = "line"
    unit: str = ""
    doc: str = ""

    def __post_init__(self):
        if self.kind not in OBSERVABLE_KINDS:
            raise ConfigError(f"observable {self.name!r}: kind must be one of {list(OBSERVABLE_KINDS)}, "
                              f"got {self.kind!r}")
        if self.style not in ("line", "bar"):
            raise ConfigError(f"observable {self.name!r}: style must be 'line' or 'bar', got {self.style!r}")
        object.__setattr__(self, "by", tuple(self.by))

    @property
    def node_type(self) -> str:
        return self.source.split(".", 1)[0]

    @classmethod
    def from_config(cls, spec) -> "Observable":
        if isinstance(spec, Observable):
            return spec
        spec = dict(spec)
        unknown = set(spec) - set(cls.__dataclass_fields__)
        if unknown or "name" not in spec or "source" not in spec:
            raise ConfigError(f"model.observables entry {spec!r}: needs name and source; known keys: "
                              f"{list(cls.__dataclass_fields__)}" + (f"; unknown {sorted(unknown)}" if unknown else ""))
        return cls(**spec)

    def reduce(self, x: Tensor, categories: Sequence[str] = ()) -> Tensor:
        """``[R]`` from ``[N, R]`` values."""
        x = self._values(x, categories)
        if self.kind in ("count", "sum"):
            return x.sum(0)
        mean = x.mean(0)
        if self.kind == "mean":
            return mean
        return ((x - mean) ** 2).mean(0)

    def reduce_groups(self, x: Tensor, adjacency, sizes: Tensor, categories: Sequence[str] = ()) -> Tensor:
        """``[G, R]`` from ``[N, R]`` values; ``adjacency`` is the ``[G, N]`` group indicator, ``sizes`` ``[G]``."""
        x = self._values(x, categories)
        total = spmm(adjacency, x)
        if self.kind in ("count", "sum"):
            return total
        sizes = sizes.to(x.dtype)  # a float64 run on a float32 graph divides in float64
        inv = torch.where(sizes > 0, 1.0 / sizes.clamp_min(1), torch.zeros_like(sizes)).unsqueeze(1)
        mean = total * inv
        if self.kind == "mean":
            return mean
        return spmm(adjacency, x * x) * inv - mean * mean

    def _values(self, x: Tensor, categories: Sequence[str]) -> Tensor:
        if self.category is None:
            return x
        return (x == list(categories).index(self.category)).to(x.dtype)


def smooth_argmax(x: Tensor, temperature: float) -> Tensor:
    r""":math:`\sum_t t\,\operatorname{softmax}_t(x_t / (\tau \max_s x_s))` over dim 0 of ``[T + 1, R]``."""
    if not temperature > 0:
        raise ValueError(f"smooth_argmax: temperature must be > 0, got {temperature}")
    days = torch.arange(x.size(0), dtype=x.dtype, device=x.device)
    w = torch.softmax(x / (temperature * x.max(0).values.clamp_min(1e-12)), dim=0)
    return (days.unsqueeze(1) * w).sum(0)


@dataclass(frozen=True)
class Outcome:
    """A scalar per replicate from one observable series (module docstring).

    Args:
        name (str): its name (``"final_variance"``).
        series (str): the observable it reduces.
        reduce (str): one of :data:`REDUCTIONS`.
        normalize (bool): divide by the node count of the series' node type.
        complement (bool): ``1 - x`` (normalised) or ``N - x``.
        unit (str), doc (str).
    """

    name: str
    series: str
    reduce: str = "final"
    normalize: bool = False
    complement: bool = False
    unit: str = ""
    doc: str = ""

    def __post_init__(self):
        if self.reduce not in REDUCTIONS:
            raise ConfigError(f"outcome {self.name!r}: reduce must be one of {list(REDUCTIONS)}, got {self.reduce!r}")

    @classmethod
    def from_config(cls, name: str, spec) -> "Outcome":
        if isinstance(spec, Outcome):
            return spec
        spec = dict(spec)
        unknown = set(spec) - set(cls.__dataclass_fields__)
        if unknown or "series" not in spec:
            raise ConfigError(f"model.outcomes.{name}: needs series; known keys: {list(cls.__dataclass_fields__)}"
                              + (f"; unknown {sorted(unknown)}" if unknown else ""))
        return cls(name=name, **spec)

    @property
    def description(self) -> str:
        return self.doc or f"{self.reduce} of {self.series}"

    def smooth_description(self, temperature: float) -> str:
        if self.reduce != "argmax":
            return self.description
        return (f"smooth surrogate of argmax_t {self.series}_t: sum_t t*softmax_t({self.series}_t/(tau*max_s "
                f"{self.series}_s)) with tau={temperature:g} ({self.unit or 'steps'})")

    def __call__(self, traj: "Trajectory", smooth: bool = False, temperature: float = 0.05) -> Tensor:
        if self.series not in traj.series:
            raise ConfigError(f"outcome {self.name!r} reads series {self.series!r}, which the model does not "
                              f"observe; observed: {sorted(traj.series)}")
        x = traj.series[self.series]
        if self.reduce == "final":
            v = x[-1]
        elif self.reduce == "max":
            v = x.max(0).values
        elif self.reduce == "argmax":
            if smooth:
                v = smooth_argmax(x, temperature)
            else:
                v = torch.arange(x.size(0), dtype=x.dtype, device=x.device)[x.argmax(0)]
        elif self.reduce == "total":
            v = x.sum(0)
        else:
            v = x.mean(0)
        n = traj.num_nodes[traj.observables[self.series].node_type]
        if self.normalize:
            v = v / n
        if self.complement:
            v = (1.0 if self.normalize else float(n)) - v
        return v


@dataclass
class Trajectory:
    """Observables of a run, stacked over time (index 0 is the initial state).

    Attributes:
        series (dict): ``[T + 1, R]`` per observable.
        grouped (dict): grouping -> observable -> ``[T + 1, G, R]``.
        labels (dict): grouping -> its ``G`` labels.
        observables (dict): name -> :class:`Observable`.
        num_nodes (dict): node type -> count.
        final_state (dict): the state after the last step.
    """

    series: dict[str, Tensor]
    grouped: dict[str, dict[str, Tensor]]
    labels: dict[str, list[str]]
    observables: dict[str, Observable]
    num_nodes: dict[str, int]
    final_state: dict[str, Tensor] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return next(iter(self.series.values())).size(0) - 1

    @property
    def replicates(self) -> int:
        return next(iter(self.series.values())).size(1)

    def group(self, name: str, grouping: str, label: str) -> Tensor:
        """``[T + 1, R]``: observable ``name`` in one group."""
        if grouping not in self.grouped or name not in self.grouped[grouping]:
            have = {g: sorted(v) for g, v in self.grouped.items()}
            raise ConfigError(f"{name!r} is not observed by {grouping!r}; grouped observables: {have}")
        labels = self.labels[grouping]
        if str(label) not in labels:
            raise ConfigError(f"{label!r} is not a group of {grouping!r}; groups: {labels}")
        return self.grouped[grouping][name][:, labels.index(str(label))]

    def columns(self) -> dict[str, Tensor]:
        """Every series as ``[T + 1, R]`` by column name: ``name``, and ``<name>_<grouping>_<label>``."""
        out = dict(self.series)
        for grouping, named in self.grouped.items():
            for name, v in named.items():
                for g, label in enumerate(self.labels[grouping]):
                    out[f"{name}_{grouping}_{label}"] = v[:, g]
        return out

    def to_frame(self):
        """Long-format ``pandas.DataFrame``: one row per (step, replicate), one column per series."""
        import pandas as pd

        T1, R = self.steps + 1, self.replicates
        cols = {"step": torch.arange(T1).repeat_interleave(R).numpy(),
                "replicate": torch.arange(R).repeat(T1).numpy()}
        for name, s in self.columns().items():
            cols[name] = s.detach().cpu().reshape(-1).numpy()
        return pd.DataFrame(cols)
