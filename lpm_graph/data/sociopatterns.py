"""SocioPatterns temporal contact data to a time-varying population graph.

**Format** (as published by the SocioPatterns collaboration, e.g. the primary and high
school data sets): one contact per line, whitespace-separated,

    t i j            or            t i j Ci Cj

``t`` is the time in seconds (an integer >= 0) at the end of a 20-second window
(``resolution``) during which persons ``i`` and ``j`` (integer or string ids) were in
contact (one kind: a non-integer id among integers is an error naming its line);
``Ci``/``Cj`` are their classes (e.g. ``3B``, ``Teachers``). Every line has
the same number of fields; blank lines are skipped.

**Aggregation.** Window ``w = floor(t / window) - floor(t_min / window)`` (with the
default ``window = 86400`` s: calendar days of the recording's clock, counted from
the first day with data). The contact of ``{i, j}`` in window ``w`` gets weight
``resolution x (number of lines) / duration_unit`` -- its duration, in hours by
default. The result is the undirected edge type ``('person', relation, 'person')``
with per-edge ``time = w`` and ``time_period`` (default: last window + 1), which
:class:`~lpm_graph.core.graph.Graph` turns into one layout per window
and cycles: step ``t`` of a simulation uses window ``t mod period``.

**People** are all ids that occur; classes become the categorical person attribute
``class`` (one class per person, else an error naming two conflicting lines). The
data carry no ages: ``class_ages`` maps classes to ages, ``default_age`` covers the
rest.

Repeated lines (same ``t`` and pair, in either order) are merged and lines with
``i == j`` dropped, each with a :class:`~lpm_graph.data.readers.PopulationDataWarning`.
"""
from __future__ import annotations

import io
import os
import warnings
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch_geometric.data import HeteroData

from lpm_graph.data.assemble import PERSON, IdIndex, _merge, add_contacts, add_nodes, check_relation, unique_ids
from lpm_graph.data.cache import cached_build
from lpm_graph.data.readers import (
    DataFileError,
    PopulationDataWarning,
    Source,
    id_column,
    integer_column,
    resolve_input,
    same_id_kind,
)
from lpm_graph.data.tables import _default_age
from lpm_graph.data.validate import validate_population
from lpm_graph.errors import ConfigError

__all__ = ["read_sociopatterns", "from_sociopatterns", "DURATION_UNITS"]

BUILDER_VERSION = 1
#: Seconds per unit of the aggregated contact weight.
DURATION_UNITS = {"seconds": 1.0, "minutes": 60.0, "hours": 3600.0, "days": 86400.0}
_NAMES3 = ["t", "i", "j"]
_NAMES5 = ["t", "i", "j", "ci", "cj"]


def read_sociopatterns(path: str | os.PathLike) -> Source:
    """Parse a SocioPatterns contact file into a table with columns ``t, i, j[, ci, cj]``.

    Rows keep their physical line numbers for error messages.

    Raises:
        DataFileError: empty file, a line with the wrong number of fields (with its
            number), non-integer or negative times, missing ids or classes.
    """
    import pandas as pd

    p = resolve_input(path, "SocioPatterns file")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataFileError(f"SocioPatterns file {str(p)!r}, line {line}: not valid UTF-8 text") from None
    first, first_line = None, 0
    for first_line, line in enumerate(io.StringIO(text), start=1):  # stops at the first non-blank line
        if line.strip():
            first = line.rstrip("\r\n")
            break
    if first is None:
        raise DataFileError(f"SocioPatterns file {str(p)!r}: the file is empty; expected lines 't i j' "
                            "or 't i j Ci Cj'")
    fields = len(first.split())
    if fields not in (3, 5):
        raise DataFileError(f"SocioPatterns file {str(p)!r}, line {first_line}: cannot parse {first[:80]!r}: "
                            f"expected 3 fields 't i j' or 5 fields 't i j Ci Cj', got {fields}")
    names = _NAMES3 if fields == 3 else _NAMES5
    dtype = {"ci": str, "cj": str} if fields == 5 else None
    try:
        frame = pd.read_csv(io.StringIO(text), sep=r"\s+", header=None, names=names, dtype=dtype,
                            skip_blank_lines=False, engine="c", low_memory=False, keep_default_na=False,
                            na_values=[""])
    except (pd.errors.ParserError, ValueError) as exc:
        message = str(exc).replace("Error tokenizing data. C error: ", "")
        raise DataFileError(f"SocioPatterns file {str(p)!r}: cannot parse ({message}); expected {fields} "
                            f"whitespace-separated fields on every line, as on line {first_line}") from None
    line_numbers = np.arange(1, len(frame) + 1)
    # pandas pads short lines with NaN and gives blank lines all-NaN rows; so does a line of empty quoted
    # fields ('"" "" ""'), which is not blank: blank is what the text says, where its lines are pandas' rows
    empty = frame.isna()
    blank = empty.all(axis=1).to_numpy().copy()
    lines = text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
    if len(lines) == len(frame):
        blank &= np.array([not line.strip() for line in lines], dtype=bool)
    short = empty.any(axis=1).to_numpy() & ~blank
    if short.any():
        k = int(np.flatnonzero(short)[0])
        raise DataFileError(f"SocioPatterns file {str(p)!r}, line {k + 1}: expected {fields} fields "
                            f"({' '.join(n.upper() if n.startswith('c') else n for n in names)}), got fewer or "
                            "empty ones")
    frame = frame[~blank]
    line_numbers = line_numbers[~blank]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return Source(p, table, "lines", "SocioPatterns file", line_numbers)


def _classes(source: Source, idx_i: np.ndarray, idx_j: np.ndarray, n: int):
    """Class code of each person (and the sorted class names); errors on conflicting classes."""
    ci = source.column("ci").cast(pa.string())
    cj = source.column("cj").cast(pa.string())
    names = pc.unique(pa.concat_arrays([ci, cj]))
    names = names.take(pc.array_sort_indices(names))
    codes = np.concatenate([pc.index_in(ci, value_set=names).to_numpy(zero_copy_only=False),
                            pc.index_in(cj, value_set=names).to_numpy(zero_copy_only=False)]).astype(np.int64)
    person = np.concatenate([idx_i, idx_j])
    codes_t, person_t = torch.from_numpy(codes), torch.from_numpy(person)
    low = torch.full((n,), codes.max() + 1, dtype=torch.int64).scatter_reduce(0, person_t, codes_t, "amin")
    high = torch.full((n,), -1, dtype=torch.int64).scatter_reduce(0, person_t, codes_t, "amax")
    conflict = (low != high).numpy()
    if conflict.any():
        who = int(np.flatnonzero(conflict)[0])
        rows = np.flatnonzero(person == who)
        rows_codes = codes[rows]
        a = int(rows[0])
        b = int(rows[np.flatnonzero(rows_codes != rows_codes[0])[0]])
        m = len(idx_i)
        label = names.to_pylist()
        raise source.error(f"person is in class {label[rows_codes[0]]!r} on {source.row(a % m)} but in "
                           f"class {label[codes[b]]!r} here; every person needs one class",
                           column="cj" if b >= m else "ci", row=b % m)
    return low.numpy(), names.to_pylist()


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
        raise ConfigError(f"population.{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def sociopatterns_graph(source: Source, *, window: int = 86400, resolution: float = 20.0,
                        duration_unit: str = "hours", default_age: float | None = None,
                        class_ages: Mapping[str, float] | None = None, period: int | None = None,
                        relation: str = "contact") -> HeteroData:
    """The graph of a parsed SocioPatterns table (see the module docstring)."""
    t = integer_column(source, "t", min_value=0, what="time in seconds")
    i = id_column(source, "i")
    j = id_column(source, "j")
    same_id_kind(source, [("i", i), ("j", j)])
    people = unique_ids(i, j)
    index = IdIndex(people)
    idx_i, idx_j = index.lookup(i), index.lookup(j)
    n = len(people)
    has_classes = "ci" in source.columns
    ages = np.full(n, np.nan)
    attributes = {}
    if has_classes:
        codes, names = _classes(source, idx_i, idx_j, n)
        attributes["class"] = (codes, names)
        for name, age in dict(class_ages or {}).items():
            if str(name) in names:
                ages[codes == names.index(str(name))] = float(age)
    missing = np.isnan(ages)
    if missing.any():
        if default_age is None:
            who = int(np.flatnonzero(missing)[0])
            detail = (f"class {attributes['class'][1][attributes['class'][0][who]]!r} is not in class_ages; "
                      if has_classes else "")
            raise ConfigError(f"SocioPatterns file {source.name!r}: {detail}the data carry no ages: set "
                              "population.default_age (years) and/or population.class_ages "
                              "({class: age})")
        ages[missing] = default_age

    # repeated lines: same time and pair (in either order) -> one record
    a, b = np.minimum(idx_i, idx_j), np.maximum(idx_i, idx_j)
    t0 = int(t.min())
    (rel_t, a, b), counts, repeated = _merge([t - t0, a, b], np.ones(len(t)))
    if repeated:
        warnings.warn(PopulationDataWarning(
            f"SocioPatterns file {source.name!r}: merged {repeated} repeated line(s) (same time and pair) "
            "into one contact window each"), stacklevel=3)
    windows = (rel_t + t0) // window - t0 // window
    weight = np.full(len(a), resolution / DURATION_UNITS[duration_unit])
    if period is not None and len(windows) and int(windows.max()) >= period:
        raise ConfigError(f"population.period={period} is shorter than the recording "
                          f"({int(windows.max()) + 1} windows of {window} s)")

    data = HeteroData()
    add_nodes(data, PERSON, people, attributes)
    data[PERSON].age = torch.from_numpy(ages.astype(np.float32))
    add_contacts(data, a, b, weight=weight, time=windows, layer_names=(relation,), directed=False,
                 period=period, label=f"SocioPatterns file {source.name!r}", warn_duplicates=False)
    validate_population(data)
    return data


def from_sociopatterns(path: str | os.PathLike, *, window: int = 86400, resolution: float = 20.0,
                       duration_unit: str = "hours", default_age: float | None = None,
                       class_ages: Mapping[str, float] | None = None, period: int | None = None,
                       relation: str = "contact", cache_dir: str | os.PathLike | None = None) -> HeteroData:
    """Build a time-varying contact graph from a SocioPatterns file (see the module docstring).

    Args:
        path: the contact file (``t i j`` or ``t i j Ci Cj`` lines).
        window: aggregation window in seconds (default one day: one window per
            simulated day).
        resolution: seconds of contact one line stands for. (default: 20)
        duration_unit: unit of the edge weight: seconds, minutes, hours or days.
        default_age: age of people whose class has no entry in ``class_ages``.
        class_ages: ``{class: age in years}``.
        period: windows per cycle (default: last window + 1).
        relation: the edge relation name.
        cache_dir: cache root; None builds without caching.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise ConfigError(f"population.window must be a positive integer number of seconds, got {window!r}")
    resolution = _positive("resolution", resolution)
    if duration_unit not in DURATION_UNITS:
        raise ConfigError(f"population.duration_unit must be one of {list(DURATION_UNITS)}, got {duration_unit!r}")
    if class_ages is not None:
        if not isinstance(class_ages, Mapping):
            raise ConfigError(f"population.class_ages must map class names to ages, got {class_ages!r}")
        for name, age in class_ages.items():
            if isinstance(age, bool) or not isinstance(age, (int, float)) or not np.isfinite(age) or age < 0:
                raise ConfigError(f"population.class_ages.{name} must be an age in years >= 0, got {age!r}")
        class_ages = {str(k): float(v) for k, v in class_ages.items()}
    if period is not None and (isinstance(period, bool) or not isinstance(period, int) or period < 1):
        raise ConfigError(f"population.period must be a positive integer or null, got {period!r}")
    options = {"window": window, "resolution": resolution, "duration_unit": duration_unit,
               "default_age": _default_age(default_age), "class_ages": class_ages, "period": period,
               "relation": check_relation(relation, "population.relation")}
    inputs = {"contacts": str(resolve_input(path, "SocioPatterns file"))}

    def build() -> HeteroData:
        return sociopatterns_graph(read_sociopatterns(inputs["contacts"]), window=window, resolution=resolution,
                                   duration_unit=duration_unit, default_age=options["default_age"],
                                   class_ages=class_ages, period=period, relation=relation)

    return cached_build("sociopatterns", inputs, options, build, cache_dir, BUILDER_VERSION)
