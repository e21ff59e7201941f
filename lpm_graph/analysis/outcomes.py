r"""Scalar outcomes of a run, per replicate, differentiable where they can be.

Each outcome maps a :class:`~lpm_graph.model.Trajectory` to one value per
replicate column (``[R]``); analyses report and differentiate their mean
over replicates.  With :math:`S_t, I_t, D_t` the compartment counts after
step :math:`t` (index 0 is the initial state) and :math:`N` people:

``attack_rate``
    :math:`1 - S_T / N`, the fraction ever infected (seeds included).
``peak_size``
    :math:`\max_t I_t`, people infectious at the peak (per replicate, then
    averaged: the mean of the peaks, not the peak of the mean curve).
``peak_day``
    :math:`\arg\max_t I_t` (days).  An argmax has no useful derivative, so
    with ``smooth=True`` (what :mod:`lpm_graph.analysis.sensitivity`
    differentiates) it is the softmax-weighted mean day

    .. math::

        \tilde t_{\mathrm{peak}} = \sum_t t\, w_t, \qquad
        w_t = \operatorname{softmax}_t\!\Big(\frac{I_t}{\tau \max_s I_s}\Big),

    with temperature :math:`\tau` a fraction of the peak (default 0.05: days
    within a few percent of the peak carry the weight).  As
    :math:`\tau \to 0` it tends to the argmax; for a curve symmetric about its
    peak it equals it.
``deaths``
    :math:`D_T` (needs a model with compartment ``D``, e.g. ``model=seird``).

:func:`infections_by_age` gives cumulative infections per age group (seeds
included, so the groups add up to :math:`N - S_T`).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["OUTCOMES", "DESCRIPTIONS", "outcome", "outcomes", "infections_by_age", "check_outcomes",
           "smooth_peak_description", "age_labels"]

OUTCOMES = ("attack_rate", "peak_size", "peak_day", "deaths")

DESCRIPTIONS = {
    "attack_rate": "1 - S_T/N (fraction ever infected)",
    "peak_size": "max_t I_t (people), mean over replicates",
    "peak_day": "argmax_t I_t (days)",
    "deaths": "D_T (people)",
}


def smooth_peak_description(temperature: float) -> str:
    """How the differentiated ``peak_day`` is defined, for tables."""
    return (f"smooth surrogate of argmax_t I_t: sum_t t*softmax_t(I_t/(tau*max_s I_s)) with tau={temperature:g} "
            "(days)")



def check_outcomes(names, compartments) -> None:
    """Raise ``ConfigError`` for an unknown outcome or one the model cannot produce."""
    from lpm_graph.errors import ConfigError

    unknown = [n for n in names if n not in OUTCOMES]
    if unknown:
        raise ConfigError(f"task.outcomes names {unknown}; known outcomes: {list(OUTCOMES)}")
    if "deaths" in names and "D" not in compartments:
        raise ConfigError("task.outcomes includes 'deaths' but the model has no compartment D; "
                          "use model=seird or drop 'deaths' from task.outcomes")


def outcome(traj, name: str, num_people: int, smooth: bool = False, temperature: float = 0.05) -> Tensor:
    """One outcome per replicate, ``[R]`` (see the module docstring for the definitions)."""
    s = traj.series
    if name == "attack_rate":
        return 1.0 - s["S"][-1] / num_people
    if name == "peak_size":
        return s["I"].max(0).values
    if name == "peak_day":
        days = torch.arange(s["I"].size(0), dtype=s["I"].dtype, device=s["I"].device)
        if not smooth:
            return days[s["I"].argmax(0)]
        if not temperature > 0:
            raise ValueError(f"outcome('peak_day'): temperature must be > 0, got {temperature}")
        I = s["I"]
        w = torch.softmax(I / (temperature * I.max(0).values.clamp_min(1e-12)), dim=0)
        return (days.unsqueeze(1) * w).sum(0)
    if name == "deaths":
        if "D" not in s:
            raise KeyError("outcome 'deaths' needs compartment D (a model with fatality)")
        return s["D"][-1]
    raise KeyError(f"unknown outcome {name!r}; known: {list(OUTCOMES)}")


def outcomes(traj, names, num_people: int, smooth: bool = False, temperature: float = 0.05) -> dict[str, Tensor]:
    """``{name: [R] tensor}`` for each requested outcome."""
    return {n: outcome(traj, n, num_people, smooth, temperature) for n in names}


def age_labels(age_bins) -> list[str]:
    """``["0-10", "10-20", ..., "80+"]`` from lower edges (as :meth:`Trajectory.age_labels`)."""
    b = [int(x) if float(x).is_integer() else x for x in age_bins]
    return [f"{lo}-{hi}" for lo, hi in zip(b[:-1], b[1:])] + [f"{b[-1]}+"]


def infections_by_age(traj) -> dict[str, Tensor]:
    """Cumulative infections per age group, ``{label: [R]}`` (labels like ``"10-20"``)."""
    total = traj.by_age["new_infections"].sum(0)  # [G, R]
    return {label: total[g] for g, label in enumerate(traj.age_labels())}
