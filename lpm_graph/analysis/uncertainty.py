r"""Analyses under parameter uncertainty: posterior draws of :math:`\theta` run with common random numbers.

A posterior file (``posterior.parquet`` of ``task=calibrate``: one float column per parameter element, named
``name`` or ``name[i]...``, one row per draw) gives draws :math:`\theta_1, \dots, \theta_D`
(:func:`load_posterior`, :func:`pick`).  Every scenario is run at every draw with the **same seed and the same**
:math:`R` **replicate columns**: replicate :math:`r` of scenario :math:`s` at draw :math:`d` shares its random
numbers with replicate :math:`r` of the baseline at that draw (the pairing of the plain analysis), and with the
same replicate at every other draw, so that what differs between draws is :math:`\theta` alone.

**Intervals.**  At draw :math:`d` the paired differences :math:`x_{dr} = y^{s}_{dr} - y^{b}_{dr}` give the
mean :math:`m_d` and its standard error :math:`e_d = s_d/\sqrt R`; as in the plain analysis, what is known of
the expected effect :math:`\Delta(\theta_d)` is Student's t with :math:`R - 1` degrees of freedom around
:math:`m_d` with scale :math:`e_d`.  Over the posterior, the effect's distribution is the mixture

.. math::

    F(x) = \frac1D \sum_d F_{t_{R-1}}\!\left(\frac{x - m_d}{e_d}\right),

and the reported 95% interval is its 2.5% and 97.5% quantiles (:func:`mixture_interval`): the spread of
:math:`m_d` over draws is the parameter uncertainty, each :math:`e_d` the stochastic noise.  With a posterior of
one repeated point every component is the plain analysis's t, and so is the interval; a wider posterior
spreads the components and widens it.  With one replicate (:math:`e_d` unknown) the components are points and
the interval is the empirical quantiles of :math:`m_d`.

Nothing here reads a config: :mod:`lpm_graph.tasks.analyze` calls these functions.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from lpm_graph.analysis.counterfactual import ScenarioRun
from lpm_graph.analysis.statistics import mean_sd, t_cdf_two_sided, t_quantile
from lpm_graph.errors import DataFileError

__all__ = ["PosteriorDraws", "load_posterior", "pick", "mixture_interval", "compare_over_draws",
           "summarize_sensitivities"]

_COLUMN = re.compile(r"^([A-Za-z_][\w.]*?)((?:\[\d+\])*)$")


@dataclass
class PosteriorDraws:
    """Posterior draws per parameter: ``values[name]`` is ``[D, *shape]`` (float64), ``path`` their file."""

    path: Path
    values: dict[str, Tensor]
    ignored: list[str]

    @property
    def draws(self) -> int:
        return len(next(iter(self.values.values())))

    def at(self, d: int) -> dict[str, Tensor]:
        """The parameters of draw ``d``."""
        return {n: v[d] for n, v in self.values.items()}

    def mean(self) -> dict[str, Tensor]:
        """The posterior mean of every parameter."""
        return {n: v.mean(0) for n, v in self.values.items()}


def load_posterior(path, params: Mapping[str, Tensor], ignore: Sequence[str] = ()) -> PosteriorDraws:
    """Read a posterior file and check it against the model's parameters ``params`` (``name -> value``).

    Every column must name an element of a parameter the model has (``ignore``: columns left out on purpose,
    e.g. the observation model's ``observation.reporting_fraction``, which no simulator reads), every element of
    a named parameter must be present, and every value finite; otherwise :class:`DataFileError` naming the file
    and the column.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"task.posterior: {str(path)!r} is not a file; give the posterior.parquet of a "
                            "task=calibrate run with a posterior method (task.method=vi | laplace | nuts | sbi)")
    try:
        frame = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise DataFileError(f"task.posterior: {str(path)!r} is not a readable Parquet file ({type(e).__name__}: "
                            f"{e}); give the posterior.parquet of a task=calibrate run") from None
    if len(frame) == 0 or len(frame.columns) == 0:
        raise DataFileError(f"task.posterior: {str(path)!r} holds no draws (rows: {len(frame)}, columns: "
                            f"{len(frame.columns)}); one row per draw, one column per parameter element")
    unknown_ignored = sorted(set(ignore) - set(map(str, frame.columns)))
    if unknown_ignored:
        raise DataFileError(f"task.posterior_ignore names {unknown_ignored}, which are not columns of "
                            f"{str(path)!r} (columns: {list(map(str, frame.columns))})")
    elements: dict[str, dict[tuple, str]] = {}
    for column in map(str, frame.columns):
        if column in ignore:
            continue
        match = _COLUMN.match(column)
        if match is None:
            raise DataFileError(f"task.posterior: column {column!r} of {str(path)!r} is not a parameter element "
                                "(name, or name[i] per index)")
        name, index = match.group(1), tuple(int(i) for i in re.findall(r"\[(\d+)\]", match.group(2)))
        if name not in params:
            raise DataFileError(f"task.posterior: column {column!r} of {str(path)!r} names parameter {name!r}, "
                                f"which the model does not have (model.params: {sorted(params)}); calibrate the "
                                "model you analyse, or leave the column out with "
                                f"task.posterior_ignore=[{column}] if no simulator reads it")
        values = frame[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            raise DataFileError(f"task.posterior: column {column!r} of {str(path)!r} is not numeric "
                                f"(dtype {values.dtype})")
        bad = ~torch.isfinite(torch.tensor(values.to_numpy(dtype=float)))
        if bool(bad.any()):
            row = int(bad.nonzero()[0, 0])
            raise DataFileError(f"task.posterior: column {column!r} of {str(path)!r} has a non-finite value in row "
                                f"{row} ({values.iloc[row]})")
        elements.setdefault(name, {})[index] = column
    if not elements:
        raise DataFileError(f"task.posterior: every column of {str(path)!r} is in task.posterior_ignore; nothing "
                            "to analyse over")
    out = {}
    for name, columns in elements.items():
        shape = tuple(params[name].shape)
        expected = {tuple(i) for i in _indices(shape)}
        if set(columns) != expected:
            want = sorted(_column(name, i) for i in expected - set(columns))
            extra = sorted(columns[i] for i in set(columns) - expected)
            raise DataFileError(f"task.posterior: the columns of {name!r} in {str(path)!r} do not match its shape "
                                f"{list(shape)}" + (f"; missing {want}" if want else "")
                                + (f"; column {extra} outside it" if extra else ""))
        stacked = torch.stack([torch.tensor(frame[columns[i]].to_numpy(dtype=float), dtype=torch.float64)
                               for i in _indices(shape)], -1)
        out[name] = stacked.reshape(len(frame), *shape)
    return PosteriorDraws(path=path, values=out, ignored=list(ignore))


def _indices(shape):
    if not shape:
        return [()]
    return [tuple(int(x) for x in idx) for idx in torch.cartesian_prod(*[torch.arange(s) for s in shape])
            .reshape(-1, len(shape)).tolist()]


def _column(name, index):
    return name + "".join(f"[{i}]" for i in index)


def pick(posterior: PosteriorDraws, n: int | None) -> list[int]:
    """``n`` rows spread evenly over the file (first and last included); ``None`` or ``n >= draws``: every row."""
    D = posterior.draws
    if n is None or n >= D:
        return list(range(D))
    return torch.linspace(0, D - 1, n).round().long().tolist()


def _t_cdf(u: float, df: int) -> float:
    p = t_cdf_two_sided(abs(u), df)
    return 0.5 + 0.5 * p if u >= 0 else 0.5 - 0.5 * p


def mixture_interval(means: Sequence[float], errors: Sequence[float], df: int,
                     level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` interval of the equal mixture of t(``df``) laws at ``means`` with scales ``errors``.

    A scale of 0 is a point mass; ``df < 1`` or a NaN scale (one replicate): every component a point mass, and
    the interval the empirical quantiles of ``means`` (NaN for a single draw, as the plain analysis).
    """
    m = [float(x) for x in means]
    e = [float(x) for x in errors]
    if df < 1 or any(math.isnan(x) for x in e):
        if len(m) < 2:
            return math.nan, math.nan
        q = torch.quantile(torch.tensor(m, dtype=torch.float64),
                           torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
        return float(q[0]), float(q[1])
    half = t_quantile(0.5 + level / 2, df)

    def cdf(x: float) -> float:
        total = 0.0
        for mu, s in zip(m, e):
            total += (1.0 if x >= mu else 0.0) if s == 0 else _t_cdf((x - mu) / s, df)
        return total / len(m)

    def quantile(p: float) -> float:
        lo = min(mu - half * s for mu, s in zip(m, e))  # every component's CDF <= (1 - level) / 2 here
        hi = max(mu + half * s for mu, s in zip(m, e))  # and >= (1 + level) / 2 here
        if hi - lo <= 1e-15 * max(1.0, abs(hi)):
            return lo if p < 0.5 else hi
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if cdf(mid) < p:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-13 * max(1.0, abs(hi)):
                break
        return 0.5 * (lo + hi)

    return quantile((1 - level) / 2), quantile((1 + level) / 2)


def compare_over_draws(runs: Sequence[Mapping[str, ScenarioRun]], baseline: str, level: float = 0.95):
    """:func:`~lpm_graph.analysis.counterfactual.compare` over posterior draws: ``runs[d][scenario]``.

    One row per (scenario, outcome), the columns of ``compare`` (``mean, sd`` and ``diff_sd`` over every draw
    and replicate, ``diff_mean`` the mean over draws, ``diff_ci_low/high`` the mixture interval) plus ``draws``
    and ``diff_sd_draws``, the sd over draws of the per-draw mean difference (the parameter uncertainty alone;
    NaN for one draw).
    """
    import pandas as pd

    if any(baseline not in r for r in runs):
        raise KeyError(f"baseline scenario {baseline!r} is not among {list(runs[0])}")
    rows = []
    for scenario in runs[0]:
        for name in runs[0][scenario].outcomes:
            values = torch.stack([r[scenario].outcomes[name].double().flatten() for r in runs])  # [D, R]
            diffs = values - torch.stack([r[baseline].outcomes[name].double().flatten() for r in runs])
            D, R = diffs.shape
            means = diffs.mean(1)
            errors = diffs.std(1) / math.sqrt(R) if R > 1 else torch.full((D,), math.nan, dtype=torch.float64)
            low, high = mixture_interval(means.tolist(), errors.tolist(), R - 1, level)
            mean, sd = mean_sd(values.flatten())
            rows.append(dict(scenario=scenario, outcome=name, mean=mean, sd=sd, diff_mean=float(means.mean()),
                             diff_sd=float(diffs.flatten().std()) if diffs.numel() > 1 else math.nan,
                             diff_ci_low=low, diff_ci_high=high, replicates=R, baseline=baseline, draws=D,
                             diff_sd_draws=float(means.std()) if D > 1 else math.nan))
    return pd.DataFrame(rows)


def summarize_sensitivities(tables: Sequence, level: float = 0.95):
    """Sensitivity tables (one per posterior draw, the rows of :func:`~lpm_graph.analysis.sensitivity.sensitivity`
    in one order) -> one table: ``value, outcome_value, derivative, elasticity`` the means over draws, plus
    ``derivative_low/high`` and ``elasticity_low/high`` (the central ``level`` quantiles over draws) and ``draws``."""
    import numpy

    out = tables[0].copy()
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    for column in ("value", "outcome_value", "derivative", "elasticity"):
        stacked = torch.tensor(numpy.stack([t[column].to_numpy(dtype=float) for t in tables]), dtype=torch.float64)
        out[column] = stacked.mean(0).numpy()
        if column in ("derivative", "elasticity"):
            bounds = torch.quantile(stacked, q, dim=0) if len(tables) > 1 else stacked.expand(2, -1)
            out[f"{column}_low"], out[f"{column}_high"] = bounds[0].numpy(), bounds[1].numpy()
    out["draws"] = len(tables)
    return out
