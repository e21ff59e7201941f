r"""Policy optimisation by gradient through the simulator: vaccine allocation.

A :class:`~lpm_graph.dynamics.Vaccination` whose ``allocation`` names a
parameter of ``G`` logits gives age group :math:`g` the share
:math:`a_g = \operatorname{softmax}(\phi)_g` of a fixed daily budget.
:func:`optimise_allocation` minimises an outcome (deaths by default) over
:math:`\phi` with Adam, differentiating the whole unroll.  With a time-varying
logits parameter (``[K, G]``, ``time_varying={name: period}``) each phase of
``period`` days has its own allocation, so a policy can move down the age
groups as they are covered.  It is meant for
``model.mode=expected`` (the deterministic mean field: exact gradients, no
sampling noise, one replicate); in stochastic mode it follows the surrogate
gradients of the replicate mean.  The returned policy is the best iterate.

The optimised shares are then compared, like any counterfactual, against
reference policies with common random numbers in stochastic mode
(:mod:`lpm_graph.analysis.counterfactual`): uniform (each group its
population share) and oldest first (``Vaccination(priority=[G-1, ..., 0])``:
the budget goes to the oldest group with unvaccinated people, the rest spills
to the next).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from lpm_graph.analysis.outcomes import outcome

__all__ = ["PolicyResult", "population_share_logits", "optimise_allocation", "plot_policies"]


@dataclass
class PolicyResult:
    """The best allocation found: logits and shares ``[G]`` (or ``[K, G]`` for a time-varying allocation,
    each row summing to one), the objective before and after, and per iteration."""

    logits: Tensor
    shares: Tensor
    objective: float
    initial_objective: float
    trace: list[float] = field(default_factory=list)


def population_share_logits(graph, dtype=torch.float64) -> Tensor:
    """Logits whose softmax is each age group's share of the population (the uniform policy)."""
    counts = torch.bincount(graph.age_group, minlength=graph.num_age_groups).to(dtype)
    return torch.log((counts / counts.sum()).clamp_min(1e-9))


def optimise_allocation(model, graph, *, parameter: str, steps: int, iterations: int, lr: float = 0.2,
                        objective: str = "deaths", seed: int = 0, replicates: int = 1,
                        progress: bool = False) -> PolicyResult:
    """Minimise the replicate mean of ``objective`` over the allocation logits ``model.params[parameter]``.

    Args:
        model (PopulationModel): a model whose environment holds a
            ``Vaccination(allocation=parameter)``; its value of ``parameter``
            is the starting point.
        graph: its prepared population.
        parameter (str): name of the logits parameter.
        steps (int): horizon in days; the objective is read at its end.
        iterations (int): Adam steps (``>= 1``).
        lr (float): Adam learning rate on the logits.
        objective (str): an outcome of :mod:`lpm_graph.analysis.outcomes`.
        seed (int), replicates (int): random numbers (stochastic mode only).
    """
    from tqdm.auto import tqdm

    if parameter not in model.params:
        raise KeyError(f"optimise_allocation: {parameter!r} is not in model.params")
    if iterations < 1:
        raise ValueError(f"optimise_allocation: iterations must be >= 1, got {iterations}")
    ref = model.params.raw(model.params.names[0])
    logits = model.params[parameter].detach().to(ref.dtype).clone().requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=lr)
    best, best_value, trace = logits.detach().clone(), float("inf"), []
    for _ in tqdm(range(iterations), desc="policy", unit="it", disable=not progress, leave=False):
        traj = model(graph, steps=steps, seed=seed, replicates=replicates, overrides={parameter: logits})
        loss = outcome(traj, objective, graph.num_people).mean()
        value = float(loss.detach())
        trace.append(value)
        if value < best_value:
            best, best_value = logits.detach().clone(), value
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        traj = model(graph, steps=steps, seed=seed, replicates=replicates, overrides={parameter: logits})
        value = float(outcome(traj, objective, graph.num_people).mean())
    trace.append(value)
    if value < best_value:
        best, best_value = logits.detach().clone(), value
    return PolicyResult(logits=best, shares=torch.softmax(best, -1), objective=best_value,
                        initial_objective=trace[0], trace=trace)


def plot_policies(table, shares: dict, age_labels, path: Path, objective: str = "deaths", title: str = "") -> None:
    """Left: allocation per age group of each fixed-share policy (or phase); right: the objective per policy
    (mean over replicates; error bar: the 95% interval of the paired difference to the reference, drawn
    around the mean)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    with_shares = {k: v for k, v in shares.items() if v is not None}
    width = 0.8 / max(1, len(with_shares))
    for i, (name, s) in enumerate(with_shares.items()):
        ax1.bar([g + i * width for g in range(len(age_labels))], list(s), width=width, label=name)
    ax1.set_xticks([g + 0.4 - width / 2 for g in range(len(age_labels))])
    ax1.set_xticklabels(age_labels, rotation=30, fontsize=8)
    ax1.set_xlabel("age group")
    ax1.set_ylabel("share of daily doses")
    ax1.legend(fontsize=8)
    sub = table[table.outcome == objective]
    names = list(sub.scenario)
    err = [(sub.diff_mean - sub.diff_ci_low).fillna(0).to_numpy(),
           (sub.diff_ci_high - sub.diff_mean).fillna(0).to_numpy()]
    ax2.bar(range(len(names)), sub["mean"].to_numpy(), yerr=err, capsize=4, color="tab:gray")
    ax2.set_xticks(range(len(names)))
    ax2.set_xticklabels(names, rotation=20, fontsize=8)
    ax2.set_ylabel(f"{objective} (mean over replicates)")
    ax2.set_title(f"error bar: 95% interval of the paired difference to {sub.baseline.iloc[0]}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
