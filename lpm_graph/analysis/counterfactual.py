r"""Scenarios with common random numbers: outcome differences and their uncertainty.

Every scenario (the baseline and each intervention set) is run with the same
seed and the same ``R`` replicate columns.  Random numbers are keyed by
(seed, replicate, step, stream, person), so replicate :math:`r` of a scenario
draws exactly the numbers of replicate :math:`r` of the baseline wherever the
intervention does not change who is at risk: the paired difference
:math:`d_r = y^{s}_r - y^{b}_r` is the intervention's effect in that
replicate, with much less noise than two independent runs would give.  The
comparison table reports per scenario and outcome the mean and sd over
replicates, and the mean, sd and Student-t 95% interval of the mean of the
paired differences (:func:`lpm_graph.analysis.statistics.paired_summary`).

Outcomes are the model's (:mod:`lpm_graph.analysis.outcomes`; an ``argmax``
as the plain argmax here: nothing is differentiated) plus the total of every
grouped event observable per group (``new_infections_age_<group>``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from lpm_graph.analysis.outcomes import group_totals, outcomes
from lpm_graph.analysis.statistics import mean_sd, paired_summary

__all__ = ["ScenarioRun", "summarize_run", "run_scenarios", "compare", "plot_comparison"]


@dataclass
class ScenarioRun:
    """What is kept of a scenario's run: outcomes per replicate (``[R]`` each) and mean curves (``[T + 1]``)."""

    outcomes: dict[str, Tensor]
    curves: dict[str, Tensor]


def summarize_run(traj, model, outcome_names: Sequence[str]) -> ScenarioRun:
    """Outcomes per replicate (with group totals of grouped events) and replicate-mean curves of a trajectory."""
    values = {k: v.detach().double().cpu() for k, v in outcomes(traj, model, outcome_names).items()}
    for name, v in group_totals(traj).items():
        values[name] = v.detach().double().cpu()
    curves = {k: v.detach().double().cpu().mean(1) for k, v in traj.series.items()}
    return ScenarioRun(outcomes=values, curves=curves)



def run_scenarios(models: Mapping[str, torch.nn.Module], graph, *, steps: int, seed: int, replicates: int,
                  outcome_names: Sequence[str], progress: bool = False,
                  on_trajectory: Callable | None = None,
                  overrides: Mapping[str, Tensor] | None = None) -> dict[str, ScenarioRun]:
    """Run every model (one per scenario) with the same seed and replicates, without gradients.

    ``on_trajectory(name, traj)``, if given, sees each full trajectory before
    only its outcomes and mean curves are kept; ``overrides``: parameter values
    every scenario runs at (a posterior draw), instead of the models' own.
    """
    runs = {}
    for name, model in models.items():
        with torch.no_grad():
            traj = model(graph, steps=steps, seed=seed, replicates=replicates, progress=progress,
                         overrides=overrides)
        if on_trajectory is not None:
            on_trajectory(name, traj)
        runs[name] = summarize_run(traj, model, outcome_names)
    return runs


def compare(runs: Mapping[str, ScenarioRun], baseline: str, level: float = 0.95):
    """One row per (scenario, outcome): ``mean, sd`` over replicates and the paired difference to ``baseline``.

    Columns: ``scenario, outcome, mean, sd, diff_mean, diff_sd, diff_ci_low,
    diff_ci_high, replicates, baseline`` (the baseline's own rows have
    differences of exactly 0).
    """
    import pandas as pd

    if baseline not in runs:
        raise KeyError(f"baseline scenario {baseline!r} is not among {list(runs)}")
    base = runs[baseline].outcomes
    rows = []
    for scenario, run in runs.items():
        for name, values in run.outcomes.items():
            mean, sd = mean_sd(values)
            rows.append(dict(scenario=scenario, outcome=name, mean=mean, sd=sd,
                             **paired_summary(values - base[name], level),
                             replicates=values.numel(), baseline=baseline))
    return pd.DataFrame(rows)


def plot_comparison(table, runs: Mapping[str, ScenarioRun], path: Path, outcome_names: Sequence[str],
                    title: str = "", curve: str | None = None, units: Mapping[str, str] | None = None) -> None:
    """Paired differences to the baseline (mean and 95% interval), one panel per outcome, and the mean curves."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    scenarios = list(runs)
    if curve is None:
        curve = next(iter(runs[scenarios[0]].curves))
    n = len(outcome_names) + 1
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(axes[0], outcome_names):
        sub = table[table.outcome == name].set_index("scenario").loc[scenarios]
        err = [sub.diff_mean - sub.diff_ci_low, sub.diff_ci_high - sub.diff_mean]
        err = [e.fillna(0).to_numpy() for e in err]
        ax.bar(range(len(scenarios)), sub.diff_mean.to_numpy(), yerr=err, capsize=3,
               color=[colors[i % len(colors)] for i in range(len(scenarios))])
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(scenarios)))
        ax.set_xticklabels(scenarios, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{name}: difference to {sub.baseline.iloc[0]}", fontsize=9)
        unit = (units or {}).get(name)
        ax.set_ylabel(f"difference in {name}" + (f" ({unit})" if unit else "") + "\nmean, 95% interval")
    ax = axes[0][-1]
    for i, s in enumerate(scenarios):
        if curve in runs[s].curves:
            ax.plot(runs[s].curves[curve].numpy(), label=s, color=colors[i % len(colors)])
    ax.set_xlabel("step")
    ax.set_ylabel(curve)
    ax.set_title(f"mean {curve}", fontsize=9)
    ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
