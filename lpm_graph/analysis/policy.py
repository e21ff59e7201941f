r"""Policy optimisation by gradient through the simulator, for any learnable policy parameter.

A policy is a set of parameters of environment (or behaviour) processes —
an epidemic's vaccine allocation logits (``vaccination.allocation``), a
closure's factor, a reorder point — and an objective, one of the model's
outcomes.  :func:`optimise` minimises the replicate mean of the objective
(or maximises it) over the policy parameters with Adam, differentiating the
whole unroll.  It is meant for ``model.mode=expected`` (the deterministic
mean field: exact gradients, no sampling noise, one replicate); in
stochastic mode it follows the surrogate gradients of the replicate mean.
The returned policy is the best iterate.

The optimised policy is then compared, like any counterfactual, against
reference policies in stochastic mode with common random numbers
(:mod:`lpm_graph.analysis.counterfactual`) — on other random numbers than
it was optimised on (``task=analyze`` evaluates with a seed the
optimisation did not use), so the comparison is out of sample.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from lpm_graph.errors import ConfigError

__all__ = ["PolicyResult", "optimise", "plot_policies"]


@dataclass
class PolicyResult:
    """The best policy found: each parameter's value, the objective before and after, and per iteration."""

    values: dict[str, Tensor]
    objective: float
    initial_objective: float
    trace: list[float] = field(default_factory=list)


def optimise(model, graph, *, parameters: Sequence[str], steps: int, iterations: int, lr: float = 0.2,
             objective: str, maximize: bool = False, seed: int = 0, replicates: int = 1,
             progress: bool = False, fixed: Mapping[str, Tensor] | None = None) -> PolicyResult:
    """Minimise (or maximise) the replicate mean of outcome ``objective`` over ``parameters``.

    Args:
        model (Model): a model holding the policy's processes; its values of
            ``parameters`` are the starting point.
        graph: its prepared graph.
        parameters (Sequence[str]): dotted names of the policy parameters.
        steps (int): horizon; the objective is read from the trajectory.
        iterations (int): Adam steps (``>= 1``).
        lr (float): Adam learning rate.
        objective (str): one of the model's outcomes.
        maximize (bool): maximise instead of minimise.
        seed (int), replicates (int): random numbers (stochastic mode only).
        fixed (Mapping[str, Tensor], optional): other parameters' values to optimise at (e.g. a posterior
            mean) instead of the model's own.
    """
    from tqdm.auto import tqdm

    unknown = [p for p in parameters if p not in model.params]
    if unknown or not parameters:
        raise ConfigError(f"policy parameters {unknown or '[]'} are not in model.params; name parameters of the "
                          f"policy's processes (known: {model.params.names})")
    if objective not in model.outcomes:
        raise ConfigError(f"policy objective {objective!r} is not an outcome of the model; outcomes: "
                          f"{list(model.outcomes)}")
    if iterations < 1:
        raise ConfigError(f"policy iterations must be >= 1, got {iterations}")
    dtype = model._dtype()
    leaves = {p: model.params[p].detach().to(dtype).clone().requires_grad_(True) for p in parameters}
    held = {n: v.detach().to(dtype) for n, v in (fixed or {}).items() if n not in leaves}
    opt = torch.optim.Adam(list(leaves.values()), lr=lr)
    sign = -1.0 if maximize else 1.0
    outcome = model.outcomes[objective]
    best, best_value, trace = {k: v.detach().clone() for k, v in leaves.items()}, float("inf"), []
    for _ in tqdm(range(iterations), desc="policy", unit="it", disable=not progress, leave=False):
        traj = model(graph, steps=steps, seed=seed, replicates=replicates, overrides={**held, **leaves})
        loss = sign * outcome(traj).mean()
        value = float(loss.detach())
        trace.append(sign * value)
        if value < best_value:
            best, best_value = {k: v.detach().clone() for k, v in leaves.items()}, value
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        traj = model(graph, steps=steps, seed=seed, replicates=replicates, overrides={**held, **leaves})
        value = sign * float(outcome(traj).mean())
    trace.append(sign * value)
    if value < best_value:
        best, best_value = {k: v.detach().clone() for k, v in leaves.items()}, value
    return PolicyResult(values=best, objective=sign * best_value, initial_objective=trace[0], trace=trace)


def plot_policies(table, path: Path, objective: str, unit: str = "", title: str = "",
                  bars: Mapping[str, Sequence[float]] | None = None, bar_labels: Sequence[str] = ()) -> None:
    """Right: the paired difference of the objective to the reference policy (mean, 95% interval); left,
    if ``bars`` are given: each policy's values of the policy parameter (e.g. shares per group)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    panels = 2 if bars else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    if bars:
        ax1 = axes[0][0]
        width = 0.8 / max(1, len(bars))
        for i, (name, s) in enumerate(bars.items()):
            ax1.bar([g + i * width for g in range(len(s))], list(s), width=width, label=name)
        ax1.set_xticks([g + 0.4 - width / 2 for g in range(len(bar_labels))])
        ax1.set_xticklabels(bar_labels, rotation=30, fontsize=8)
        ax1.set_ylabel("share of the budget")
        ax1.legend(fontsize=8)
    ax2 = axes[0][-1]
    sub = table[table.outcome == objective]
    names = list(sub.scenario)
    err = [(sub.diff_mean - sub.diff_ci_low).fillna(0).to_numpy(), (sub.diff_ci_high - sub.diff_mean).fillna(0).to_numpy()]
    ax2.bar(range(len(names)), sub.diff_mean.to_numpy(), yerr=err, capsize=4, color="tab:gray")
    ax2.axhline(0, color="black", lw=0.8)
    ax2.set_xticks(range(len(names)))
    ax2.set_xticklabels(names, rotation=20, fontsize=8)
    reference = sub.baseline.iloc[0]
    ax2.set_ylabel(f"{objective} minus {reference}" + (f" ({unit})" if unit else ""))
    ax2.set_title(f"paired difference to {reference}: mean and 95% interval", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
