r"""Local sensitivity of outcomes to every parameter, by autograd through the unroll.

For outcomes :math:`O_k(\theta)` (mean over replicates, see
:mod:`lpm_graph.analysis.outcomes`) and parameters :math:`\theta_j` (every
element of every chosen ``model.params`` entry: a per-group vector gives
one row per group), one forward run keeps the graph and one backward
pass per outcome gives the whole row :math:`\partial O_k / \partial \theta`;
the table also reports the elasticity

.. math::

    \varepsilon_{kj} = \frac{\partial O_k}{\partial \theta_j}\,\frac{\theta_j}{O_k},

the relative change of the outcome per relative change of the parameter
(unitless; comparable across parameters with different units).

Derivatives are taken with respect to the constrained values (the numbers in
``model.params``), whatever the model's bounds or learnable set: the values
enter the run as ``overrides`` that require grad.  In ``model.mode=expected``
they are exact derivatives of the mean-field outcome; in stochastic mode they
are the model's surrogate gradients (biased, more so over long horizons: see
:mod:`lpm_graph.core.sampling`).  An ``argmax`` outcome (a peak day) is
differentiated through its smooth surrogate (softmax-weighted mean step), as the table says.

:func:`finite_differences` gives the same table from central differences
with common random numbers (same seed: the counter-based generator hands the
perturbed run every random number of the unperturbed one); it costs two
forward runs per parameter element instead of one forward and one backward
per outcome (``scripts/bench_sensitivity.py`` measures the ratio).
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from lpm_graph.analysis.outcomes import definitions, outcomes
from lpm_graph.core.graph import bin_labels
from lpm_graph.core.params import GROUP
from lpm_graph.errors import ConfigError

__all__ = ["parameter_elements", "sensitivity", "finite_differences", "plot_sensitivity"]


def _resolve(model, parameters: Sequence[str] | None) -> list[str]:
    """The parameters named, or all that have a derivative (not whole-number counts)."""
    specs = model.param_specs
    if parameters is None:
        names = [n for n in model.params.names if n not in specs or specs[n][1].domain != "count"]
    else:
        names = list(parameters)
        counts = [n for n in names if n in specs and specs[n][1].domain == "count"]
        if counts:
            raise ConfigError(f"task.parameters names {counts}, whole-number counts without a derivative")
    unknown = [n for n in names if n not in model.params]
    if unknown:
        raise ConfigError(f"task.parameters names {unknown}, which are not in model.params "
                          f"(known: {model.params.names})")
    if not names:
        raise ConfigError("task.parameters is empty; name at least one entry of model.params (null: all)")
    return names


def _group_labels(model, graph, grouping: str) -> list[str] | None:
    if graph is not None and grouping in graph.groupings:
        return graph.group_labels(grouping)
    g = model.groupings.get(grouping)
    if g is not None and g.bins is not None:
        return list(g.labels) if g.labels else bin_labels(g.bins)
    return None


def parameter_elements(model, names: Sequence[str], graph=None) -> list[tuple[str, tuple, str]]:
    """``(name, index, label)`` for every element of the named parameters.

    Labels name the group of a per-group vector (``"age 10-20"``) and the days
    of a time-varying entry (``"days 7-13"``).
    """
    out = []
    specs = model.param_specs
    for name in names:
        value = model.params[name]
        period = model.params.time_varying.get(name)
        spec = specs[name][1] if name in specs else None
        dims = list(value.shape)
        group_dims = {}
        if spec is not None and spec.grouping:
            lead = 1 if period is not None else 0
            for d, kind in enumerate(spec.shape[-(len(dims) - lead):] if len(dims) > lead else ()):
                if kind == GROUP:
                    group_dims[lead + d] = spec.grouping
        for index in itertools.product(*(range(n) for n in dims)):
            parts = []
            for d, i in enumerate(index):
                if d == 0 and period is not None:
                    last = i == dims[0] - 1
                    parts.append(f"days {i * period}+" if last else f"days {i * period}-{(i + 1) * period - 1}")
                elif d in group_dims and (labels := _group_labels(model, graph, group_dims[d])) is not None \
                        and len(labels) == dims[d]:
                    parts.append(f"{group_dims[d]} {labels[i]}")
                else:
                    parts.append(str(i))
            out.append((name, tuple(index), ", ".join(parts)))
    return out


def _leaves(model, names, dtype, at=None) -> dict[str, Tensor]:
    values = {**model.params.as_dict(), **(at or {})}
    return {n: values[n].detach().to(dtype).clone().requires_grad_(True) for n in names}


def sensitivity(model, graph, *, steps: int, outcome_names: Sequence[str] | None = None,
                parameters: Sequence[str] | None = None, seed: int = 0, replicates: int = 1,
                temperature: float = 0.05, progress: bool = False, at: Mapping[str, Tensor] | None = None):
    """Derivatives and elasticities of each outcome in every parameter element.

    Args:
        model (Model): the model, in the mode to differentiate.
        graph: its prepared graph (:meth:`Model.prepare`).
        steps (int): steps to simulate.
        outcome_names (Sequence[str], optional): outcomes of the model; ``None``: all.
        parameters (Sequence[str], optional): ``model.params`` entries; ``None`` for all.
        seed (int), replicates (int): random numbers and replicate columns.
        temperature (float): :math:`\\tau` of a smooth ``argmax`` outcome.
        at (Mapping[str, Tensor], optional): parameter values to run and differentiate at (a posterior
            draw) instead of the model's own.

    Returns:
        ``pandas.DataFrame`` with one row per (outcome, parameter element):
        ``outcome, parameter, element, value, outcome_value, derivative,
        elasticity, mode, replicates, definition``.
    """
    import pandas as pd

    outcome_names = list(model.outcomes) if outcome_names is None else list(outcome_names)
    names = _resolve(model, parameters)
    dtype = model._dtype()
    leaves = _leaves(model, names, dtype, at)
    fixed = {n: v.detach().to(dtype) for n, v in (at or {}).items() if n not in leaves}
    traj = model(graph, steps=steps, seed=seed, replicates=replicates, overrides={**fixed, **leaves},
                 progress=progress)
    values = {k: v.mean() for k, v in outcomes(traj, model, outcome_names, smooth=True,
                                                temperature=temperature).items()}
    elements = parameter_elements(model, names, graph)
    defs = definitions(model, outcome_names, True, temperature)
    rows = []
    for k, name in enumerate(outcome_names):
        grads = torch.autograd.grad(values[name], [leaves[n] for n in names], retain_graph=k < len(outcome_names) - 1,
                                    allow_unused=True)
        grads = {n: torch.zeros_like(leaves[n]) if g is None else g for n, g in zip(names, grads)}
        o = float(values[name].detach())
        for pname, index, label in elements:
            theta = float(leaves[pname].detach()[index]) if index else float(leaves[pname].detach())
            d = float(grads[pname][index]) if index else float(grads[pname])
            elasticity = d * theta / o if o != 0 else float("nan")
            rows.append(dict(outcome=name, parameter=pname, element=label or None, value=theta, outcome_value=o,
                             derivative=d, elasticity=elasticity, mode=model.sampler.mode, replicates=replicates,
                             definition=defs[name]))
    return pd.DataFrame(rows)


def finite_differences(model, graph, *, steps: int, outcome_names: Sequence[str] | None = None,
                       parameters: Sequence[str] | None = None, seed: int = 0, replicates: int = 1,
                       temperature: float = 0.05, rel_step: float = 1e-6):
    r"""Central finite differences of the same outcomes, with common random numbers.

    Element :math:`\theta_j` is moved by :math:`\pm h_j`,
    :math:`h_j = \text{rel\_step}\cdot|\theta_j|` (``rel_step`` itself where
    :math:`\theta_j = 0`), and :math:`(O(\theta + h_j) - O(\theta - h_j)) / 2h_j`
    is computed from two runs with the same seed.  Costs ``2 k`` forward runs
    for ``k`` parameter elements.

    Returns:
        ``pandas.DataFrame``: ``outcome, parameter, element, value, step, fd,
        fd_se`` in the row order of :func:`sensitivity`; ``fd_se`` is the
        standard error of ``fd`` over the replicates' own central differences
        (``nan`` for one replicate).
    """
    import pandas as pd

    outcome_names = list(model.outcomes) if outcome_names is None else list(outcome_names)
    names = _resolve(model, parameters)
    dtype = model._dtype()
    base = {n: v.detach().to(dtype).clone() for n, v in model.params.as_dict().items() if n in names}

    def run(overrides):
        with torch.no_grad():
            traj = model(graph, steps=steps, seed=seed, replicates=replicates, overrides=overrides)
        vals = outcomes(traj, model, outcome_names, smooth=True, temperature=temperature)
        return {k: v.detach().double().cpu() for k, v in vals.items()}

    elements = parameter_elements(model, names, graph)
    fd = {}
    for pname, index, label in elements:
        theta = float(base[pname][index]) if index else float(base[pname])
        h = rel_step * abs(theta) if theta != 0 else rel_step
        shifted = []
        for sign in (1.0, -1.0):
            v = base[pname].clone()
            if index:
                v[index] += sign * h
            else:
                v += sign * h
            shifted.append(run({**base, pname: v}))
        for name in outcome_names:
            per_replicate = (shifted[0][name] - shifted[1][name]) / (2 * h)
            se = float(per_replicate.std() / replicates ** 0.5) if replicates > 1 else float("nan")
            fd[(name, pname, label)] = dict(value=theta, step=h, fd=float(per_replicate.mean()), fd_se=se)
    rows = [dict(outcome=name, parameter=p, element=label or None, **fd[(name, p, label)])
            for name in outcome_names for p, _, label in elements]
    return pd.DataFrame(rows)


def plot_sensitivity(table, path: Path, title: str = "") -> None:
    """Horizontal bars of the elasticities, one panel per outcome."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(table["outcome"]))
    first = table[table.outcome == names[0]]
    labels = [p if not isinstance(e, str) or not e else f"{p} [{e}]" for p, e in zip(first.parameter, first.element)]
    height = max(3.0, 0.22 * len(labels) + 1.2)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names) + 2.5, height), sharey=True, squeeze=False)
    y = list(range(len(labels)))
    for ax, name in zip(axes[0], names):
        e = table[table.outcome == name].elasticity.to_numpy()
        ax.barh(y, e, color=["tab:red" if v > 0 else "tab:blue" for v in e])
        ax.axvline(0, color="black", lw=0.8)
        smooth = "smooth surrogate" in str(table[table.outcome == name].definition.iloc[0])
        ax.set_title(name + (" (smooth)" if smooth else ""), fontsize=10)
        ax.set_xlabel("elasticity dO/dθ·θ/O")
    axes[0][0].set_yticks(y)
    axes[0][0].set_yticklabels(labels, fontsize=7)
    axes[0][0].invert_yaxis()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
