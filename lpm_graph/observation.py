r"""Observed data, the observation model, and losses for calibration.

**Observations** are a table (CSV or Parquet) with a time column (``step``, the
simulated day; or a ``date`` column with a start date) and one column per
observed series (daily cases, deaths, admissions ...).  Empty cells are
missing values: they are masked out of the loss, never filled.

**Observation model.**  Observed series :math:`k` is a reported, delayed copy
of a series :math:`x_k` the model observes (any declared observable —
``new_infections``, ``new_deaths``, a compartment, an opinion variance — or
one group of a grouped one):

.. math::

    \hat y_k(t) = \rho_k\; \bar x_k(t - d_k)

with reporting fraction :math:`\rho_k` (a number, or the name of a model
parameter in the ``observation`` namespace, e.g.
``observation.reporting_fraction``, so it can be calibrated), an integer
delay :math:`d_k` in steps, and :math:`\bar x` the mean over replicate
columns.

**Losses** (``loss``): ``mse`` — the squared error of each series divided by
its mean squared observation (so series of different scale weigh alike),
summed over series; ``poisson`` — the Poisson deviance per entry,
:math:`\hat y - y - y \log(\hat y / y)`; ``negbin`` — the negative binomial
negative log-likelihood with dispersion :math:`k` (variance
:math:`\mu + \mu^2/k`), up to terms that do not depend on :math:`\hat y`.

**Likelihood** (:func:`log_likelihood`, for ``task.method=vi|laplace|nuts|sbi`` and
priors): the sum over series and observed entries of the Poisson or negative
binomial log mass of :math:`y` with mean :math:`\hat y`, every term kept
(``lgamma`` makes it defined for the non-integer counts of a noise-free
series).  ``poisson`` and ``negbin`` losses are this, negated and divided by
the observed entries of each series, plus terms in :math:`y` alone.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from lpm_graph.data.cache import file_digest
from lpm_graph.errors import ConfigError

__all__ = ["Observations", "load_observations", "ObservationModel", "observation_loss", "LOSSES",
           "log_likelihood", "sample_observations", "resolve_data_path", "series_for_file"]

LOSSES = ("mse", "poisson", "negbin")


def resolve_data_path(path: str | Path) -> Path:
    """A data file: as given if it exists (absolute, or relative to the working directory), else
    relative to the source checkout, else inside the installed package (``lpm_graph/_data``)."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    here = Path(__file__).resolve().parent
    for base in (here.parent, here / "_data"):
        candidate = base / p
        if candidate.exists():
            return candidate
        if p.parts and p.parts[0] == "data" and (base / Path(*p.parts[1:])).exists():
            return base / Path(*p.parts[1:])
    return p


@dataclass
class Observations:
    """Observed series aligned to simulation steps.

    Attributes:
        steps (Tensor): ``[K]`` int64, the simulated step of each row (>= 1).
        values (dict[str, Tensor]): ``[K]`` float64 per series, NaN where missing.
        path (Path): the file they came from.
        digest (str): SHA-256 of the file (keys checkpoints).
    """

    steps: Tensor
    values: dict[str, Tensor]
    path: Path
    digest: str

    @property
    def last_step(self) -> int:
        return int(self.steps.max())


def _read_table(path: Path):
    import pandas as pd

    if not path.exists():
        raise ConfigError(f"observations.path: file {str(path)!r} does not exist; give a CSV or Parquet file "
                          "with a 'step' (or date) column and one column per observed series")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as e:  # pandas/pyarrow raise many types for unreadable files
        raise ConfigError(f"observations.path: could not read {str(path)!r} as "
                          f"{'Parquet' if path.suffix.lower() in ('.parquet', '.pq') else 'CSV'}: {e}") from None


def _columns(path: Path) -> list[str]:
    """The column names of an observation file, without reading its rows."""
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception as e:  # pyarrow raises several types for unreadable files
            raise ConfigError(f"observations.path: could not read {str(path)!r} as Parquet: {e}") from None
    import pandas as pd

    try:
        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except Exception as e:  # pandas raises several types for unreadable files
        raise ConfigError(f"observations.path: could not read {str(path)!r} as CSV: {e}") from None


def series_for_file(path: str | Path, series: Mapping[str, Mapping], time_column: str,
                    main_observable: str) -> tuple[dict[str, dict], str | None]:
    """The observed series to fit in ``path``: ``series`` as configured, or, for a file of one unnamed column.

    A file whose columns are the time column and one column that
    ``observations.series`` does not name (``step,cases``) is compared with
    the model's main observable (:class:`~lpm_graph.core.Model`
    ``main_observable``, e.g. ``new_infections``), with the reporting fraction
    and delay the configured series share (else 1 and 0).  Returns the series
    and a note saying so (``None`` when the configured series are used).
    """
    series = {k: dict(v or {}) for k, v in dict(series).items()}
    path = resolve_data_path(path)
    if not path.exists():
        return series, None  # load_observations reports it
    data_columns = [c for c in _columns(path) if c != time_column]
    if len(data_columns) != 1 or data_columns[0] in series:
        return series, None
    column = data_columns[0]
    shared = {}
    for key, fallback in (("reporting", 1.0), ("delay", 0)):
        values = {repr(spec.get(key, fallback)) for spec in series.values()}
        shared[key] = next(iter(series.values())).get(key, fallback) if len(values) == 1 else fallback
    spec = {"source": main_observable, **shared}
    note = (f"observations: column {column!r} of {str(path)!r} is not named in observations.series; it is "
            f"compared with {main_observable!r}, the model's main observable (reporting {shared['reporting']}, "
            f"delay {shared['delay']}); to choose, set '~observations.series' "
            f"'+observations.series={{{column}: {{source: <observable>, reporting: <fraction>, delay: <steps>}}}}'")
    return {column: spec}, note


def load_observations(path: str | Path, series: Mapping[str, object], time_column: str = "step",
                      start_date: str | None = None) -> Observations:
    """Read an observation file.

    Args:
        path: CSV or Parquet file.
        series: the observed columns to use (names; the values are the
            observation-model settings, not read here).
        time_column: ``step`` (integers >= 1) or a date column (then
            ``start_date`` is step 0).
        start_date: ISO date of step 0 for a date column.
    """
    import numpy as np
    import pandas as pd

    path = resolve_data_path(path)
    df = _read_table(path)
    where = f"observations file {str(path)!r}"
    if df.empty:
        raise ConfigError(f"{where} has no rows")
    if time_column not in df.columns:
        raise ConfigError(f"{where} has no column {time_column!r} (observations.time_column); "
                          f"columns: {list(df.columns)}")
    if start_date is not None:
        try:
            dates = pd.to_datetime(df[time_column])
            steps = (dates - pd.Timestamp(start_date)).dt.days.to_numpy()
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{where}: column {time_column!r} must hold dates ({e})") from None
    else:
        col = df[time_column]
        if not pd.api.types.is_integer_dtype(col):
            raise ConfigError(f"{where}: column {time_column!r} must hold integer steps, got dtype {col.dtype}; "
                              "for dates set observations.start_date")
        steps = col.to_numpy()
    if (steps < 1).any():
        row = int(np.argmax(steps < 1))
        raise ConfigError(f"{where}: row {row + 2} has step {int(steps[row])}; observed steps must be >= 1 "
                          "(step 0 is the initial state)")
    if len(np.unique(steps)) != len(steps):
        raise ConfigError(f"{where}: column {time_column!r} has duplicate steps")
    values = {}
    for name in series:
        if name not in df.columns:
            raise ConfigError(f"{where} has no column {name!r} named in observations.series; "
                              f"columns: {list(df.columns)}")
        col = pd.to_numeric(df[name], errors="coerce")
        bad = col.isna() & df[name].notna()
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise ConfigError(f"{where}: column {name!r} row {row + 2} holds {df[name].iloc[row]!r}, not a number")
        if (col < 0).any():
            raise ConfigError(f"{where}: column {name!r} has negative values; counts must be >= 0")
        values[name] = torch.tensor(col.to_numpy(dtype=np.float64))
    if not values:
        raise ConfigError("observations.series is empty; name at least one observed column")
    return Observations(torch.tensor(np.asarray(steps, dtype=np.int64)), values, path, file_digest(path))


class ObservationModel:
    """Maps a simulated :class:`~lpm_graph.core.observe.Trajectory` to predicted observations.

    Args:
        series (Mapping[str, Mapping]): per observed column, ``source`` (an
            observable of the model), optionally ``by`` and ``group`` (a
            grouping and one of its groups: ``by: age, group: 0-10``),
            ``reporting`` (number in [0, 1] or parameter name; default 1) and
            ``delay`` (steps >= 0; default 0).
    """

    KEYS = ("source", "by", "group", "reporting", "delay")

    def __init__(self, series: Mapping[str, Mapping]):
        self.series = {}
        for name, spec in dict(series).items():
            spec = dict(spec or {})
            unknown = set(spec) - set(self.KEYS)
            if unknown:
                raise ConfigError(f"observations.series.{name}: unknown keys {sorted(unknown)}; "
                                  f"use {', '.join(self.KEYS)}")
            if "source" not in spec:
                raise ConfigError(f"observations.series.{name}.source is missing: name the simulated series "
                                  "(an observable of the model, e.g. new_infections)")
            if ("by" in spec) != ("group" in spec):
                raise ConfigError(f"observations.series.{name}: give both by (a grouping, e.g. age) and group "
                                  "(one of its groups, e.g. 0-10), or neither")
            reporting = spec.get("reporting", 1.0)
            if not isinstance(reporting, str) and not 0.0 <= float(reporting) <= 1.0:
                raise ConfigError(f"observations.series.{name}.reporting must be in [0, 1] or a parameter name, "
                                  f"got {reporting}")
            delay = spec.get("delay", 0)
            if not isinstance(delay, int) or isinstance(delay, bool) or delay < 0:
                raise ConfigError(f"observations.series.{name}.delay must be an integer >= 0, got {delay!r}")
            group = None if spec.get("by") is None else (str(spec["by"]), str(spec["group"]))
            self.series[name] = (spec["source"], group, reporting, delay)

    def param_names(self) -> list[str]:
        return [r for _, _, r, _ in self.series.values() if isinstance(r, str)]

    def check(self, model) -> None:
        """Every source is an observable of ``model`` (grouped where a group is named), every reporting
        parameter one of its parameters."""
        for name, (source, group, reporting, _) in self.series.items():
            if source not in model.observables:
                raise ConfigError(f"observations.series.{name}.source = {source!r} is not observed by the model; "
                                  f"observables: {sorted(model.observables)}")
            if group is not None and group[0] not in model.observables[source].by:
                raise ConfigError(f"observations.series.{name}: {source!r} is not observed by {group[0]!r}; it is "
                                  f"grouped by {list(model.observables[source].by) or 'nothing'}")
            if isinstance(reporting, str) and reporting not in model.params:
                raise ConfigError(f"observations.series.{name}.reporting names parameter {reporting!r}, which is "
                                  f"not in model.params; set model.params.{reporting} (the observation namespace "
                                  "holds the observation model's parameters)")

    def _simulated(self, name: str, source: str, group, traj) -> Tensor:
        if group is None:
            return traj.series[source].mean(1)
        return traj.group(source, group[0], group[1]).mean(-1)

    def predict(self, traj, obs: Observations, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Predicted observations ``[K]`` per series (mean over replicates)."""
        out = {}
        for name, (source, group, reporting, delay) in self.series.items():
            x = self._simulated(name, source, group, traj)
            if obs.last_step > traj.steps:
                raise ConfigError(f"the observations reach step {obs.last_step} but the simulation has "
                                  f"{traj.steps} steps; set steps >= {obs.last_step}")
            idx = obs.steps.to(x.device) - delay
            pred = torch.where(idx >= 0, x[idx.clamp_min(0)], torch.zeros((), dtype=x.dtype, device=x.device))
            rho = params[reporting] if isinstance(reporting, str) else torch.tensor(float(reporting))
            out[name] = pred * rho.to(pred.dtype)
        return out


def observation_loss(pred: Mapping[str, Tensor], obs: Observations, kind: str = "mse",
                     dispersion: float = 10.0) -> Tensor:
    """The loss between predicted and observed series, missing values masked (see module doc)."""
    if kind not in LOSSES:
        raise ConfigError(f"task.loss must be one of {list(LOSSES)}, got {kind!r}")
    total = 0.0
    for name, yhat in pred.items():
        y = obs.values[name].to(device=yhat.device, dtype=yhat.dtype)
        mask = ~torch.isnan(y)
        y, yhat = y[mask], yhat[mask]
        if kind == "mse":
            total = total + ((yhat - y) ** 2).mean() / (y.pow(2).mean().clamp_min(1e-12))
        elif kind == "poisson":
            mu = yhat.clamp_min(1e-8)
            # y log(y / mu), 0 where y = 0; xlogy keeps the gradient finite there (a where over log(0) does not:
            # in float32, 1e-300 is 0 and the masked branch's backward is 0 * inf)
            ylogy = torch.xlogy(y, y) - torch.xlogy(y, mu)
            total = total + (mu - y + ylogy).mean()
        else:
            mu, k = yhat.clamp_min(1e-8), float(dispersion)
            nll = -(y * torch.log(mu / (mu + k)) + k * torch.log(k / (mu + k)))
            total = total + nll.mean()
    return total


def _masked(pred: Mapping[str, Tensor], obs: Observations):
    for name, yhat in pred.items():
        y = obs.values[name].to(device=yhat.device, dtype=yhat.dtype)
        mask = ~torch.isnan(y)
        yield name, y[mask], yhat[mask], mask


def log_likelihood(pred: Mapping[str, Tensor], obs: Observations, kind: str = "poisson",
                   dispersion: float = 10.0) -> Tensor:
    """Log-likelihood of the observations given the predicted means (see module doc); missing values masked."""
    if kind not in ("poisson", "negbin"):
        raise ConfigError(f"a likelihood needs task.loss = poisson or negbin, got {kind!r}")
    total = 0.0
    for _, y, yhat, _ in _masked(pred, obs):
        mu = yhat.clamp_min(1e-8)
        if kind == "poisson":
            lp = y * torch.log(mu) - mu - torch.lgamma(y + 1)
        else:
            k = float(dispersion)
            lp = (torch.lgamma(y + k) - math.lgamma(k) - torch.lgamma(y + 1) + k * torch.log(k / (k + mu))
                  + y * torch.log(mu / (k + mu)))
        total = total + lp.sum()
    return total


def sample_observations(pred: Mapping[str, Tensor], kind: str, dispersion: float,
                        generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Observations drawn around the predicted means: Poisson, or negative binomial (a gamma-Poisson mixture
    with shape ``dispersion``); ``mse``, which is no noise model, returns the means."""
    out = {}
    for name, yhat in pred.items():
        mu = yhat.detach().double().cpu().clamp_min(0.0)
        if kind == "negbin":
            k = float(dispersion)
            mu = torch._standard_gamma(torch.full_like(mu, k), generator=generator) * mu / k
        out[name] = torch.poisson(mu, generator=generator) if kind in ("poisson", "negbin") else mu
    return out
