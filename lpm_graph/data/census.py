r"""Census marginals to a synthetic population (tables and graph).

A marginals file (YAML; ``data/nyc/marginals.yaml`` is New York City, sources in
``data/nyc/README.md``) gives

* ``total_population``;
* ``age``: ``bin_edges`` and the ``percent`` of people per bin;
* ``household_size``: ``sizes`` (1, 2, ...) and the ``percent`` of households;
* ``school``: ``enrolment_by_age`` (``min_age``, ``max_age``, ``percent`` enrolled)
  and ``mean_size``;
* ``employment``: ``min_age``, ``max_age``, ``percent`` employed;
* ``workplace_size``: establishment-size ``classes`` (``[low, high]``, ``high`` null
  for an open class), the ``percent`` of establishments per class, ``max_size``;
* ``community``: ``mean_size`` (people per neighbourhood venue).

:func:`population_from_marginals` maps them onto
:class:`~lpm_graph.data.synthetic.SyntheticPopulationSpec` and builds the graph with
the vectorised generator (:func:`~lpm_graph.data.synthetic.generate_population`):
ages from the age bins, household sizes from their shares, employment as the rate
over its age range, workplace sizes from the generator's truncated discrete Pareto
law whose exponent is fitted to the size classes by binned maximum likelihood
(:func:`fit_workplace_exponent`), communities of ``mean_size``. School enrolment by
age: the generator enrols everyone of school age at the highest rate ``r_max``; each
pupil of age ``a`` is then kept with probability ``r(a) / r_max`` (counter-seeded,
deterministic), and the generator's school size is scaled by ``r_max / r̄`` so that
schools end near ``mean_size``. :func:`census_tables` returns the person and venue
tables of the same population.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from torch_geometric.data import HeteroData

from lpm_graph.data.cache import cached_build
from lpm_graph.data.readers import DataFileError, resolve_input
from lpm_graph.data.synthetic import MEMBER_OF, REV_MEMBER_OF, generate_population
from lpm_graph.data.validate import validate_population
from lpm_graph.errors import ConfigError

__all__ = [
    "CensusMarginals",
    "load_marginals",
    "fit_workplace_exponent",
    "pareto_class_probabilities",
    "population_from_marginals",
    "census_tables",
]

BUILDER_VERSION = 1
_SCHOOL_STREAM = 0x5C4001  # offset that separates the school-thinning generator's seed from the run seed


@dataclass(frozen=True)
class CensusMarginals:
    """Validated marginal tables (fields as in the module docstring; percents normalised to shares)."""

    name: str
    total_population: int
    age_bin_edges: tuple[float, ...]
    age_shares: tuple[float, ...]
    household_shares: tuple[float, ...]  # index k: households of size k + 1
    enrolment: tuple[tuple[float, float, float], ...]  # (min_age, max_age, rate)
    school_mean_size: float
    employment_min_age: float
    employment_max_age: float
    employment_rate: float
    workplace_classes: tuple[tuple[int, int | None], ...]
    workplace_shares: tuple[float, ...]
    workplace_max_size: int
    community_mean_size: float

    def enrolment_rate(self, ages: np.ndarray) -> np.ndarray:
        """Enrolment rate at each (whole-year) age; 0 outside every band."""
        rate = np.zeros(len(ages))
        for low, high, r in self.enrolment:
            rate[(ages >= low) & (ages <= high)] = r
        return rate


def _fail(path: Path, field: str, requirement: str, value: object) -> DataFileError:
    return DataFileError(f"marginals file {str(path)!r}, field {field!r}: expected {requirement}, got {value!r}")


def _number(path, field, value, low=None, integer=False, high=None) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (not integer or float(value).is_integer())
    ok = ok and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        bounds = "" if low is None else f" >= {low}" + ("" if high is None else f" and <= {high}")
        raise _fail(path, field, f"{'an integer' if integer else 'a number'}{bounds}", value)
    return float(value)


def _shares(path, field, values, count=None) -> tuple[float, ...]:
    if not isinstance(values, list) or not values:
        raise _fail(path, field, "a non-empty list of percentages", values)
    out = [_number(path, f"{field}[{k}]", v, low=0) for k, v in enumerate(values)]
    if count is not None and len(out) != count:
        raise _fail(path, field, f"{count} values (one per bin/class)", f"{len(out)} values")
    total = sum(out)
    if total <= 0:
        raise _fail(path, field, "percentages with a positive sum", values)
    return tuple(v / total for v in out)


def _section(path, data, name) -> dict:
    value = data.get(name)
    if not isinstance(value, dict):
        raise _fail(path, name, "a mapping (see lpm_graph.data.census)", value)
    return value


def load_marginals(path: str | os.PathLike) -> CensusMarginals:
    """Read and check a marginals YAML file (fields in the module docstring).

    Raises:
        DataFileError: naming the file and the field that is missing or invalid.
    """
    p = resolve_input(path, "census marginals file")
    try:
        raw = OmegaConf.to_container(OmegaConf.load(p), resolve=True)
    except Exception as exc:  # YAML syntax errors surface as several yaml/omegaconf types
        raise DataFileError(f"marginals file {str(p)!r}: not readable YAML ({type(exc).__name__}: {exc})") from None
    if not isinstance(raw, dict):
        raise DataFileError(f"marginals file {str(p)!r}: expected a mapping of marginal tables, got {raw!r}")
    total = int(_number(p, "total_population", raw.get("total_population"), low=1, integer=True))
    age = _section(p, raw, "age")
    edges = age.get("bin_edges")
    if not isinstance(edges, list) or len(edges) < 2:
        raise _fail(p, "age.bin_edges", "a list of at least 2 increasing ages", edges)
    edges = [_number(p, f"age.bin_edges[{k}]", e, low=0) for k, e in enumerate(edges)]
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise _fail(p, "age.bin_edges", "strictly increasing ages", edges)
    age_shares = _shares(p, "age.percent", age.get("percent"), len(edges) - 1)
    households = _section(p, raw, "household_size")
    sizes = households.get("sizes")
    if sizes != list(range(1, len(sizes or []) + 1)) or not sizes:
        raise _fail(p, "household_size.sizes", "the consecutive sizes 1, 2, ..., k", sizes)
    household_shares = _shares(p, "household_size.percent", households.get("percent"), len(sizes))
    school = _section(p, raw, "school")
    bands = school.get("enrolment_by_age")
    if not isinstance(bands, list) or not bands:
        raise _fail(p, "school.enrolment_by_age", "a list of {min_age, max_age, percent}", bands)
    enrolment = []
    for k, band in enumerate(bands):
        where = f"school.enrolment_by_age[{k}]"
        if not isinstance(band, dict):
            raise _fail(p, where, "a mapping {min_age, max_age, percent}", band)
        low = _number(p, f"{where}.min_age", band.get("min_age"), low=0)
        high = _number(p, f"{where}.max_age", band.get("max_age"), low=low)
        rate = _number(p, f"{where}.percent", band.get("percent"), low=0, high=100) / 100
        enrolment.append((low, high, rate))
    enrolment.sort()
    if any(b[0] <= a[1] for a, b in zip(enrolment, enrolment[1:])):
        raise _fail(p, "school.enrolment_by_age", "age bands that do not overlap", bands)
    if max(r for _, _, r in enrolment) <= 0:
        raise _fail(p, "school.enrolment_by_age", "at least one band with a positive percent", bands)
    employment = _section(p, raw, "employment")
    e_low = _number(p, "employment.min_age", employment.get("min_age"), low=0)
    e_high = _number(p, "employment.max_age", employment.get("max_age"), low=e_low)
    work = _section(p, raw, "workplace_size")
    classes = work.get("classes")
    if not isinstance(classes, list) or not classes:
        raise _fail(p, "workplace_size.classes", "a list of [low, high] size classes", classes)
    max_size = int(_number(p, "workplace_size.max_size", work.get("max_size"), low=1, integer=True))
    parsed = []
    for k, c in enumerate(classes):
        where = f"workplace_size.classes[{k}]"
        if not isinstance(c, list) or len(c) != 2:
            raise _fail(p, where, "[low, high] with high null for an open class", c)
        low = int(_number(p, f"{where}[0]", c[0], low=1, integer=True))
        high = None if c[1] is None else int(_number(p, f"{where}[1]", c[1], low=low, integer=True))
        parsed.append((low, high))
    for (a_low, a_high), (b_low, _) in zip(parsed, parsed[1:]):
        if a_high is None or b_low != a_high + 1:
            raise _fail(p, "workplace_size.classes", "consecutive classes [1, a], [a+1, b], ..., [z, null]", classes)
    if parsed[0][0] != 1 or (parsed[-1][1] is not None and parsed[-1][1] > max_size) or parsed[-1][0] > max_size:
        raise _fail(p, "workplace_size.classes", f"classes from size 1 within max_size={max_size}", classes)
    return CensusMarginals(
        name=str(raw.get("name", p.stem)),
        total_population=total,
        age_bin_edges=tuple(edges),
        age_shares=age_shares,
        household_shares=household_shares,
        enrolment=tuple(enrolment),
        school_mean_size=_number(p, "school.mean_size", school.get("mean_size"), low=1),
        employment_min_age=e_low,
        employment_max_age=e_high,
        employment_rate=_number(p, "employment.percent", employment.get("percent"), low=0, high=100) / 100,
        workplace_classes=tuple(parsed),
        workplace_shares=_shares(p, "workplace_size.percent", work.get("percent"), len(parsed)),
        workplace_max_size=max_size,
        community_mean_size=_number(p, "community.mean_size", _section(p, raw, "community").get("mean_size"), low=1),
    )


def pareto_class_probabilities(exponent: float, classes, min_size: int, max_size: int) -> np.ndarray:
    r"""Probability of each size class under the generator's truncated discrete Pareto law.

    With :math:`P(S \ge s) = ((m/s)^a - c)/(1 - c)`, :math:`c = (m/(M+1))^a` (see
    :class:`~lpm_graph.data.synthetic.WorkplaceSpec`), a class ``[lo, hi]`` has
    probability :math:`P(S \ge lo) - P(S \ge hi + 1)`; an open class runs to ``max_size``.
    """
    a, m, big = float(exponent), float(min_size), float(max_size) + 1.0
    c = (m / big) ** a

    def survival(s: float) -> float:
        s = min(max(s, m), big)
        return ((m / s) ** a - c) / (1.0 - c)

    return np.array([survival(lo) - survival((max_size if hi is None else hi) + 1) for lo, hi in classes])


def fit_workplace_exponent(classes, shares, min_size: int = 1, max_size: int = 5000) -> float:
    """Pareto exponent maximising the binned likelihood ``sum_k share_k log p_k(a)`` (golden-section search).

    The log-likelihood of a multinomial over fixed classes of a one-parameter Pareto
    family is unimodal in ``a`` here; the search runs on ``a`` in [0.01, 10].
    """
    shares = np.asarray(shares, dtype=float)

    def loss(a: float) -> float:
        p = np.clip(pareto_class_probabilities(a, classes, min_size, max_size), 1e-300, None)
        return -float(np.sum(shares * np.log(p)))

    lo, hi = math.log(0.01), math.log(10.0)
    golden = (math.sqrt(5) - 1) / 2
    x1, x2 = hi - golden * (hi - lo), lo + golden * (hi - lo)
    f1, f2 = loss(math.exp(x1)), loss(math.exp(x2))
    for _ in range(100):
        if f1 < f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - golden * (hi - lo)
            f1 = loss(math.exp(x1))
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + golden * (hi - lo)
            f2 = loss(math.exp(x2))
        if hi - lo < 1e-10:
            break
    return math.exp((lo + hi) / 2)


def school_keep_fraction(m: CensusMarginals) -> float:
    """Expected share of the generator's pupils that :func:`_thin_schools` keeps: the mean of
    ``r(age) / r_max`` over school ages, with ages uniform within age bins."""
    edges = np.asarray(m.age_bin_edges)
    shares = np.asarray(m.age_shares)
    school_low = min(b[0] for b in m.enrolment)
    school_high = max(b[1] for b in m.enrolment)
    r_max = max(b[2] for b in m.enrolment)
    ages = np.arange(math.floor(school_low), math.floor(school_high) + 1, dtype=float)
    bin_of = np.clip(np.searchsorted(edges, ages, side="right") - 1, 0, len(shares) - 1)
    weight = shares[bin_of] / (edges[bin_of + 1] - edges[bin_of])
    return float(np.sum(weight * m.enrolment_rate(ages)) / np.sum(weight)) / r_max


def _generator_arguments(m: CensusMarginals, num_people: int, seed: int) -> dict:
    school_low = min(b[0] for b in m.enrolment)
    school_high = max(b[1] for b in m.enrolment)
    r_max = max(b[2] for b in m.enrolment)
    keep = school_keep_fraction(m)
    exponent = fit_workplace_exponent(m.workplace_classes, m.workplace_shares, 1, m.workplace_max_size)
    return dict(
        num_people=num_people,
        seed=seed,
        age_distribution={"bin_edges": list(m.age_bin_edges), "weights": list(m.age_shares)},
        household_size_distribution=list(m.household_shares),
        school={"min_age": school_low, "max_age": school_high, "enrolment": r_max,
                "mean_size": m.school_mean_size / max(keep, 1e-9)},
        workplace={"min_age": m.employment_min_age, "max_age": m.employment_max_age,
                   "employment_rate": m.employment_rate, "size_exponent": exponent,
                   "min_size": 1, "max_size": m.workplace_max_size},
        community={"mean_size": m.community_mean_size},
    )


def _thin_schools(data: HeteroData, m: CensusMarginals, seed: int) -> None:
    """Keep each pupil with probability r(age) / r_max; drop schools left empty (renumbered)."""
    et = ("person", MEMBER_OF, "school")
    person, school = data[et].edge_index
    ages = data["person"].age[person].double().numpy()
    r_max = max(b[2] for b in m.enrolment)
    keep_p = torch.from_numpy(m.enrolment_rate(np.floor(ages)) / r_max)
    gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + _SCHOOL_STREAM) % (2**63))
    kept = torch.rand(person.numel(), generator=gen, dtype=torch.float64) < keep_p
    person, school = person[kept], school[kept]
    sizes = torch.bincount(school, minlength=int(data["school"].num_nodes))
    used = sizes > 0
    new_id = torch.cumsum(used.to(torch.int64), 0) - 1
    school = new_id[school]
    num = int(used.sum())
    data["school"].num_nodes = num
    data["school"].uid = torch.arange(num)
    data["school"].size = sizes[used].to(torch.int64)
    edge_index = torch.stack([person, school])
    data[et].edge_index = edge_index
    data["school", REV_MEMBER_OF, "person"].edge_index = edge_index.flip(0)


def _check_people(num_people: object, m: CensusMarginals) -> int:
    if num_people is None:
        return m.total_population
    if isinstance(num_people, bool) or not isinstance(num_people, int) or num_people < 1:
        raise ConfigError(f"population.num_people must be a positive integer or null (the marginals' total, "
                          f"{m.total_population}), got {num_people!r}")
    return int(num_people)


def population_from_marginals(marginals: str | os.PathLike = "data/nyc/marginals.yaml",
                              num_people: int | None = None, seed: int = 0,
                              cache_dir: str | os.PathLike | None = None) -> HeteroData:
    """A synthetic population matching census marginals (see the module docstring).

    Args:
        marginals: the marginals YAML file.
        num_people: population size; None takes the marginals' ``total_population``
            (8,336,817 for New York City). Smaller values give a scaled-down
            population with the same distributions.
        seed: seeds every random draw (equal arguments give identical graphs).
        cache_dir: cache root; None builds without caching.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConfigError(f"population.seed must be an integer in [0, 2**63), got {seed!r}")
    inputs = {"marginals": str(resolve_input(marginals, "census marginals file"))}
    m = load_marginals(inputs["marginals"])
    n = _check_people(num_people, m)

    def build() -> HeteroData:
        data = generate_population(**_generator_arguments(m, n, seed))
        _thin_schools(data, m, seed)
        validate_population(data)
        return data

    # num_people as given: a null one (the marginals' total) is covered by the marginals' digest, and an
    # edit of the total is then an input change ("rebuilt", the old entry dropped), not a new option
    return cached_build("census", inputs, {"num_people": num_people, "seed": seed}, build, cache_dir,
                        BUILDER_VERSION)


def census_tables(marginals: str | os.PathLike = "data/nyc/marginals.yaml", num_people: int | None = None,
                  seed: int = 0):
    """Person and venue tables (``(persons, {type: venues})``, as :func:`~lpm_graph.data.tables.to_tables`)."""
    from lpm_graph.data.tables import to_tables

    return to_tables(population_from_marginals(marginals, num_people, seed))

