r"""Outcomes of a run, per replicate, as the model declares them.

A model's outcomes (:class:`~lpm_graph.core.observe.Outcome`, e.g. an
epidemic's attack rate, peak size, peak day and deaths; an opinion model's
final variance) map a :class:`~lpm_graph.core.observe.Trajectory` to one
value per replicate column (``[R]``); analyses report and differentiate
their mean over replicates.  An ``argmax`` outcome (a peak day) has no
useful derivative, so with ``smooth=True`` (what
:mod:`lpm_graph.analysis.sensitivity` differentiates) it is the
softmax-weighted mean step

.. math::

    \tilde t_{\mathrm{peak}} = \sum_t t\, w_t, \qquad
    w_t = \operatorname{softmax}_t\!\Big(\frac{x_t}{\tau \max_s x_s}\Big),

with temperature :math:`\tau` a fraction of the peak (default 0.05: steps
within a few percent of the peak carry the weight).  As :math:`\tau \to 0`
it tends to the argmax; for a curve symmetric about its peak it equals it.

:func:`group_totals` gives each grouped event observable's total per group
(e.g. infections per age group over the run, the initial step included).
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from lpm_graph.errors import ConfigError

__all__ = ["check_outcomes", "outcomes", "group_totals", "definitions"]


def check_outcomes(names: Sequence[str], model, what: str = "task.outcomes") -> None:
    """Raise ``ConfigError`` for an outcome the model does not declare."""
    unknown = [n for n in names if n not in model.outcomes]
    if unknown:
        raise ConfigError(f"{what} names {unknown}, which the model does not declare; its outcomes: "
                          f"{list(model.outcomes)} (add more under model.outcomes)")


def outcomes(traj, model, names: Sequence[str], smooth: bool = False, temperature: float = 0.05) -> dict[str, Tensor]:
    """``{name: [R] tensor}`` for each requested outcome of ``model``."""
    return {n: model.outcomes[n](traj, smooth=smooth, temperature=temperature) for n in names}


def definitions(model, names: Sequence[str], smooth: bool, temperature: float) -> dict[str, str]:
    """How each outcome is defined, for tables (the smooth surrogate where it is differentiated)."""
    return {n: model.outcomes[n].smooth_description(temperature) if smooth else model.outcomes[n].description
            for n in names}


def group_totals(traj) -> dict[str, Tensor]:
    """``{<observable>_<grouping>_<label>: [R]}``: totals over the run of every grouped event observable."""
    out = {}
    for grouping, named in traj.grouped.items():
        for name, v in named.items():
            if traj.observables[name].kind != "sum":
                continue
            total = v.sum(0)  # [G, R]
            for g, label in enumerate(traj.labels[grouping]):
                out[f"{name}_{grouping}_{label}"] = total[g]
    return out
