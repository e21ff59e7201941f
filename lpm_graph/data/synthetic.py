"""Vectorised, seed-deterministic synthetic populations as heterogeneous graphs.

Graph schema (a contract the rest of ``lpm_graph`` relies on):

* ``data['person']``: ``num_nodes = N``, ``uid`` int64 [N] (= ``arange(N)``, stable ids),
  ``age`` float32 [N] (integer-valued years).
* One node type per venue type in :data:`VENUE_TYPES` (always present, possibly with 0
  nodes): ``num_nodes``, ``uid`` int64 [n_v] (= ``arange(n_v)``), ``size`` int64 [n_v]
  (number of members).
* Edges ``('person', MEMBER_OF, venue_type)`` with ``edge_index`` int64 [2, E] (row 0 the
  person, row 1 the venue) sorted by person index, and the reverse
  ``(venue_type, REV_MEMBER_OF, 'person')`` holding the flipped ``edge_index``. No
  ``edge_weight`` (unit weights).

Every person belongs to exactly one household and one community, to at most one school
and at most one workplace.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields

import torch
from omegaconf import OmegaConf
from torch_geometric.data import HeteroData

from lpm_graph.data import progress
from lpm_graph.errors import ConfigError

__all__ = [
    "ADULT_AGE",
    "MEMBER_OF",
    "REV_MEMBER_OF",
    "VENUE_TYPES",
    "AgeDistribution",
    "CommunitySpec",
    "SchoolSpec",
    "SyntheticPopulationSpec",
    "WorkplaceSpec",
    "generate_population",
]

VENUE_TYPES = ("household", "school", "workplace", "community")
MEMBER_OF = "member_of"
REV_MEMBER_OF = "rev_member_of"

#: Household heads are chosen among people at least this old.
ADULT_AGE = 18

# US 2020 census age structure (Census 2020 DP1 / Demographic Profile), 5-year bins
# 0-4, 5-9, ..., 95-99, in percent of the population. Approximate: rounded to about
# 0.1 percentage points and the open 85+ group split over 85-89/90-94/95-99.
DEFAULT_AGE_BIN_EDGES = tuple(float(a) for a in range(0, 101, 5))
DEFAULT_AGE_WEIGHTS = (
    5.7, 6.1, 6.5, 6.6, 6.5, 6.8, 6.8, 6.6, 6.3, 6.0,
    6.3, 6.6, 6.3, 5.4, 4.3, 2.9, 1.8, 1.1, 0.6, 0.2,
)
# US household sizes 1..7+ (ACS 2020-like, share of households): about 28% one person,
# 35% two, 15% three, 13% four, 5.5% five, 2.2% six, 1.3% seven or more (here: seven).
DEFAULT_HOUSEHOLD_SIZE_DISTRIBUTION = (0.28, 0.35, 0.15, 0.13, 0.055, 0.022, 0.013)

def _fail(path: str, requirement: str, value: object) -> ConfigError:
    return ConfigError(f"population.{path} must be {requirement}, got {value!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _weights(path: str, value: object) -> tuple[float, ...]:
    requirement = "non-negative weights with a positive sum (a non-empty list of finite numbers >= 0)"
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise _fail(path, requirement, value)
    items = list(value)
    if not items or not all(_is_real(w) and float(w) >= 0 for w in items):
        raise _fail(path, requirement, value)
    if sum(float(w) for w in items) <= 0:
        raise _fail(path, requirement, value)
    return tuple(float(w) for w in items)


def _age_range(path: str, min_age: object, max_age: object) -> None:
    for name, value in (("min_age", min_age), ("max_age", max_age)):
        if not _is_real(value) or float(value) < 0:
            raise _fail(f"{path}.{name}", "a non-negative number of years", value)
    if float(min_age) > float(max_age):
        raise ConfigError(
            f"population.{path}.min_age must be <= population.{path}.max_age, "
            f"got min_age={min_age!r} > max_age={max_age!r}"
        )


def _probability(path: str, value: object) -> None:
    if not _is_real(value) or not 0.0 <= float(value) <= 1.0:
        raise _fail(path, "a probability in [0, 1]", value)


def _positive(path: str, value: object) -> None:
    if not _is_real(value) or float(value) <= 0:
        raise _fail(path, "a positive number", value)


@dataclass(frozen=True)
class AgeDistribution:
    """Binned age distribution: ages are uniform within ``[bin_edges[i], bin_edges[i+1])``."""

    bin_edges: tuple[float, ...] = DEFAULT_AGE_BIN_EDGES
    weights: tuple[float, ...] = DEFAULT_AGE_WEIGHTS

    def __post_init__(self) -> None:
        path = "age_distribution"
        edges = self.bin_edges
        if isinstance(edges, (str, bytes)) or not hasattr(edges, "__iter__"):
            raise _fail(f"{path}.bin_edges", "a list of at least 2 increasing ages >= 0", edges)
        edges = list(edges)
        if len(edges) < 2 or not all(_is_real(e) for e in edges) or float(edges[0]) < 0:
            raise _fail(f"{path}.bin_edges", "a list of at least 2 increasing ages >= 0", self.bin_edges)
        if any(float(b) <= float(a) for a, b in zip(edges[:-1], edges[1:])):
            raise _fail(f"{path}.bin_edges", "strictly increasing", self.bin_edges)
        weights = _weights(f"{path}.weights", self.weights)
        if len(weights) != len(edges) - 1:
            raise ConfigError(
                f"population.{path}.weights must have one weight per bin "
                f"(len(bin_edges) - 1 = {len(edges) - 1}), got {len(weights)} weights"
            )
        object.__setattr__(self, "bin_edges", tuple(float(e) for e in edges))
        object.__setattr__(self, "weights", weights)


@dataclass(frozen=True)
class SchoolSpec:
    """Children aged ``min_age..max_age`` (inclusive) attend school with probability ``enrolment``."""

    min_age: float = 5
    max_age: float = 17
    enrolment: float = 0.95
    mean_size: float = 500

    def __post_init__(self) -> None:
        _age_range("school", self.min_age, self.max_age)
        _probability("school.enrolment", self.enrolment)
        _positive("school.mean_size", self.mean_size)


@dataclass(frozen=True)
class WorkplaceSpec:
    """People aged ``min_age..max_age`` (inclusive) are employed with probability ``employment_rate``.

    Workplace sizes follow a discrete Pareto law truncated to ``[min_size, max_size]``:
    ``P(S >= s)`` is proportional to ``s ** -size_exponent`` minus a constant (the
    truncation). The default exponent 1.06 is Axtell's (2001) fit to US firm sizes.
    """

    min_age: float = 18
    max_age: float = 64
    employment_rate: float = 0.7
    size_exponent: float = 1.06
    min_size: int = 1
    max_size: int = 5000

    def __post_init__(self) -> None:
        _age_range("workplace", self.min_age, self.max_age)
        _probability("workplace.employment_rate", self.employment_rate)
        _positive("workplace.size_exponent", self.size_exponent)
        if not _is_int(self.min_size) or self.min_size < 1:
            raise _fail("workplace.min_size", "a positive integer", self.min_size)
        if not _is_int(self.max_size) or self.max_size < self.min_size:
            raise _fail(
                "workplace.max_size",
                f"an integer >= population.workplace.min_size ({self.min_size!r})",
                self.max_size,
            )


@dataclass(frozen=True)
class CommunitySpec:
    """Consecutive households are grouped into communities of about ``mean_size`` people."""

    mean_size: float = 2000

    def __post_init__(self) -> None:
        _positive("community.mean_size", self.mean_size)


def _nested(cls, path: str, value: object):
    """Build a nested spec from None (defaults), an instance, or a (partial) mapping."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if not isinstance(value, dict):
        raise _fail(path, f"a mapping with keys {[f.name for f in fields(cls)]}", value)
    accepted = [f.name for f in fields(cls)]
    unknown = sorted(str(k) for k in value if k not in accepted)
    if unknown:
        raise ConfigError(
            f"population.{path} has unknown key(s) {unknown}; accepted keys: {accepted}"
        )
    return cls(**value)


@dataclass(frozen=True)
class SyntheticPopulationSpec:
    """Validated parameters of :func:`generate_population` (errors name the config path)."""

    num_people: int
    seed: int = 0
    age_distribution: AgeDistribution = field(default_factory=AgeDistribution)
    household_size_distribution: tuple[float, ...] = DEFAULT_HOUSEHOLD_SIZE_DISTRIBUTION
    school: SchoolSpec = field(default_factory=SchoolSpec)
    workplace: WorkplaceSpec = field(default_factory=WorkplaceSpec)
    community: CommunitySpec = field(default_factory=CommunitySpec)

    def __post_init__(self) -> None:
        if not _is_int(self.num_people) or self.num_people < 1:
            raise _fail("num_people", "a positive integer", self.num_people)
        if not _is_int(self.seed) or not 0 <= self.seed < 2**63:
            raise _fail("seed", "an integer in [0, 2**63)", self.seed)
        object.__setattr__(self, "num_people", int(self.num_people))
        object.__setattr__(self, "seed", int(self.seed))
        for name, cls in (
            ("age_distribution", AgeDistribution),
            ("school", SchoolSpec),
            ("workplace", WorkplaceSpec),
            ("community", CommunitySpec),
        ):
            if not isinstance(getattr(self, name), cls):
                raise _fail(name, f"a {cls.__name__}", getattr(self, name))
        object.__setattr__(
            self,
            "household_size_distribution",
            _weights("household_size_distribution", self.household_size_distribution),
        )

    @classmethod
    def from_config(
        cls,
        num_people: int,
        seed: int = 0,
        age_distribution: dict | None = None,
        household_size_distribution: list[float] | None = None,
        school: dict | None = None,
        workplace: dict | None = None,
        community: dict | None = None,
    ) -> SyntheticPopulationSpec:
        """Build a spec from plain dicts/lists or OmegaConf containers; None means the default."""
        if household_size_distribution is None:
            household_size_distribution = DEFAULT_HOUSEHOLD_SIZE_DISTRIBUTION
        elif OmegaConf.is_config(household_size_distribution):
            household_size_distribution = OmegaConf.to_container(household_size_distribution, resolve=True)
        return cls(
            num_people=num_people,
            seed=seed,
            age_distribution=_nested(AgeDistribution, "age_distribution", age_distribution),
            household_size_distribution=household_size_distribution,
            school=_nested(SchoolSpec, "school", school),
            workplace=_nested(WorkplaceSpec, "workplace", workplace),
            community=_nested(CommunitySpec, "community", community),
        )


# ---------------------------------------------------------------------------------------
# Construction. Every step is a whole-tensor operation; the only Python loops run over
# a handful of school age bands or over chunks of venue-size draws.
# ---------------------------------------------------------------------------------------


def _sample_ages(spec: AgeDistribution, n: int, gen: torch.Generator) -> torch.Tensor:
    edges = torch.tensor(spec.bin_edges, dtype=torch.float64)
    weights = torch.tensor(spec.weights, dtype=torch.float64)
    bins = torch.multinomial(weights, n, replacement=True, generator=gen)
    low, width = edges[bins], (edges[1:] - edges[:-1])[bins]
    # float64 so that low + u * width stays below the upper edge for every u < 1.
    ages = torch.floor(low + torch.rand(n, generator=gen, dtype=torch.float64) * width)
    return ages.to(torch.float32)


def _draw_until_covered(draw, total: int, mean_size: float) -> torch.Tensor:
    """Draw venue sizes in chunks until they sum to >= total; truncate the last one.

    Returns int64 sizes, all >= 1, summing exactly to ``total`` (empty when total == 0).
    """
    if total == 0:
        return torch.zeros(0, dtype=torch.long)
    chunks: list[torch.Tensor] = []
    covered = 0
    while covered < total:
        count = max(16, math.ceil(1.1 * (total - covered) / mean_size) + 16)
        chunk = draw(count)
        chunks.append(chunk)
        covered += int(chunk.sum())
    sizes = torch.cat(chunks)
    cum = torch.cumsum(sizes, 0)
    last = int(torch.searchsorted(cum, torch.tensor([total]), right=False))
    sizes = sizes[: last + 1].clone()
    sizes[last] -= int(cum[last]) - total
    return sizes


def _households(
    spec: SyntheticPopulationSpec, ages: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Assign people to households; returns (household of each person, household sizes)."""
    n = spec.num_people
    probs = torch.tensor(spec.household_size_distribution, dtype=torch.float64)
    mean = float((probs / probs.sum() * torch.arange(1, len(probs) + 1)).sum())
    sizes = _draw_until_covered(
        lambda k: torch.multinomial(probs, k, replacement=True, generator=gen) + 1, n, mean
    )
    num_households = sizes.numel()

    # Heads: a random permutation of adults. Households with more members get an adult
    # head first, so that if adults are scarce the shortfall falls on one-person homes.
    is_adult = ages >= ADULT_AGE
    adults = is_adult.nonzero().squeeze(1)
    others = (~is_adult).nonzero().squeeze(1)
    adults = adults[torch.randperm(adults.numel(), generator=gen)]
    others = others[torch.randperm(others.numel(), generator=gen)]
    pool = torch.cat([adults, others])
    heads, rest = pool[:num_households], pool[num_households:]
    rest = rest[torch.randperm(rest.numel(), generator=gen)]
    head_order = torch.argsort(sizes, descending=True, stable=True)

    starts = torch.cumsum(sizes, 0) - sizes
    person_at_slot = torch.empty(n, dtype=torch.long)
    is_head_slot = torch.zeros(n, dtype=torch.bool)
    is_head_slot[starts] = True
    person_at_slot[starts[head_order]] = heads
    person_at_slot[~is_head_slot] = rest
    household_at_slot = torch.repeat_interleave(torch.arange(num_households), sizes)
    household = torch.empty(n, dtype=torch.long)
    household[person_at_slot] = household_at_slot
    return household, sizes


def _communities(
    spec: CommunitySpec, household_sizes: torch.Tensor, n: int
) -> torch.Tensor:
    """Community of each household: consecutive households in blocks of ~mean_size people."""
    num_blocks = max(1, round(n / float(spec.mean_size)))
    starts = torch.cumsum(household_sizes, 0) - household_sizes
    block = torch.div(starts * num_blocks, n, rounding_mode="floor")
    # Households larger than a block can leave block ids unused: renumber densely.
    return torch.unique_consecutive(block, return_inverse=True)[1]


def _school_bands(spec: SchoolSpec) -> list[tuple[float, float]]:
    """Inclusive integer-age bands: US elementary (<11), middle (11-13), high (>=14)."""
    cuts = [float(spec.min_age)] + [c for c in (11.0, 14.0) if spec.min_age < c <= spec.max_age]
    uppers = [c - 1 for c in cuts[1:]] + [float(spec.max_age)]
    return list(zip(cuts, uppers))


def _schools(
    spec: SchoolSpec, ages: torch.Tensor, household: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (person index, school index) pairs sorted by person, and school sizes."""
    enrolled = torch.rand(ages.numel(), generator=gen) < spec.enrolment
    persons, schools = [], []
    offset = 0
    for low, high in _school_bands(spec):
        pupils = (enrolled & (ages >= low) & (ages <= high)).nonzero().squeeze(1)
        if pupils.numel() == 0:
            continue
        # Catchment areas: pupils ordered by household (households are laid out
        # community by community), so a school draws on neighbouring households.
        pupils = pupils[torch.argsort(household[pupils], stable=True)]
        count = pupils.numel()
        num_schools = max(1, round(count / float(spec.mean_size)))
        local = torch.div(torch.arange(count) * num_schools, count, rounding_mode="floor")
        persons.append(pupils)
        schools.append(local + offset)
        offset += num_schools
    return _sorted_membership(persons, schools, offset)


def _pareto_sizes(spec: WorkplaceSpec, count: int, gen: torch.Generator) -> torch.Tensor:
    """Discrete Pareto sizes on [min_size, max_size]: floor of a truncated continuous Pareto.

    With X Pareto(alpha) on [m, M + 1), P(floor X >= s) = ((m/s)^a - c) / (1 - c) with
    c = (m / (M + 1))^a: a power-law tail of exponent alpha truncated at max_size.
    """
    a, m, big = float(spec.size_exponent), float(spec.min_size), float(spec.max_size) + 1.0
    c = (m / big) ** a
    u = torch.rand(count, generator=gen, dtype=torch.float64)
    x = m * (1.0 - u * (1.0 - c)) ** (-1.0 / a)
    return torch.floor(x).clamp_(spec.min_size, spec.max_size).to(torch.long)


def _pareto_mean(spec: WorkplaceSpec) -> float:
    """Mean of the continuous truncated Pareto on [min_size, max_size + 1) (chunk sizing only)."""
    a, m, big = float(spec.size_exponent), float(spec.min_size), float(spec.max_size) + 1.0
    c = (m / big) ** a
    if abs(a - 1.0) < 1e-9:
        integral = m * math.log(big / m)
    else:
        integral = a * m**a * (big ** (1.0 - a) - m ** (1.0 - a)) / (1.0 - a)
    return max(1.0, integral / (1.0 - c) - 0.5)


def _workplaces(
    spec: WorkplaceSpec, ages: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (person index, workplace index) pairs sorted by person, and workplace sizes."""
    working_age = (ages >= float(spec.min_age)) & (ages <= float(spec.max_age))
    employed = working_age & (torch.rand(ages.numel(), generator=gen) < spec.employment_rate)
    workers = employed.nonzero().squeeze(1)
    workers = workers[torch.randperm(workers.numel(), generator=gen)]
    sizes = _draw_until_covered(
        lambda k: _pareto_sizes(spec, k, gen), workers.numel(), _pareto_mean(spec)
    )
    # Truncating the last draw can leave a remainder below min_size: fold it into the
    # smallest other workplace if that stays <= max_size, else leave those few
    # (< min_size) people without a workplace.
    if sizes.numel() > 0 and int(sizes[-1]) < spec.min_size:
        remainder = int(sizes[-1])
        sizes = sizes[:-1].clone()
        if sizes.numel() > 0 and int(sizes.min()) + remainder <= spec.max_size:
            sizes[torch.argmin(sizes)] += remainder
        else:
            workers = workers[: workers.numel() - remainder]
    places = torch.repeat_interleave(torch.arange(sizes.numel()), sizes)
    return _sorted_membership([workers], [places], sizes.numel())


def _sorted_membership(
    persons: list[torch.Tensor], venues: list[torch.Tensor], num_venues: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if persons:
        person = torch.cat(persons)
        venue = torch.cat(venues)
    else:
        person = venue = torch.zeros(0, dtype=torch.long)
    order = torch.argsort(person)
    person, venue = person[order], venue[order]
    sizes = torch.bincount(venue, minlength=num_venues)
    return person, venue, sizes


def generate_population(
    num_people: int,
    seed: int = 0,
    age_distribution: dict | None = None,
    household_size_distribution: list[float] | None = None,
    school: dict | None = None,
    workplace: dict | None = None,
    community: dict | None = None,
) -> HeteroData:
    """Generate a synthetic population graph (schema in the module docstring).

    Arguments are validated through :class:`SyntheticPopulationSpec` (raising
    :class:`~lpm_graph.data.validate.ConfigError` naming the config path); ``None`` takes
    the US-like default. Mappings may be partial (missing keys take defaults) and may be
    OmegaConf containers. One ``torch.Generator`` seeded with ``seed`` drives all
    randomness, so equal arguments give bit-identical graphs.

    Construction:

    * Ages: a bin drawn from ``age_distribution``, then uniform within it, floored to
      whole years.
    * Households: sizes (1, 2, ... with ``household_size_distribution``) drawn until they
      cover everyone, the last one truncated. Each household's head is an adult
      (age >= 18) taken from a random permutation of adults while adults last (larger
      households first); the other slots are filled with everyone else, shuffled. Ages
      are never resampled, so the age marginal is exactly the sampled one.
    * Communities: consecutive households grouped into blocks of about
      ``community.mean_size`` people; everyone is in exactly one community.
    * Schools: people aged ``school.min_age..max_age`` enrol with probability
      ``school.enrolment``. Pupils are split into US-style age bands -- elementary
      (under 11), middle (11-13) and high school (14 and over), clipped to the school
      age range -- so schools mix neighbouring ages but not small children with
      teenagers. Within a band, pupils are ordered by household (households are laid
      out community by community, giving local catchments) and cut into
      ``round(n / mean_size)`` (at least 1) schools of near-equal size.
    * Workplaces: people aged ``workplace.min_age..max_age`` are employed with
      probability ``employment_rate``; workplace sizes are drawn from the truncated
      discrete Pareto law (:class:`WorkplaceSpec`) until they cover the workers, the
      shuffled workers are cut into consecutive blocks of those sizes.
    """
    spec = SyntheticPopulationSpec.from_config(
        num_people=num_people,
        seed=seed,
        age_distribution=age_distribution,
        household_size_distribution=household_size_distribution,
        school=school,
        workplace=workplace,
        community=community,
    )
    return build_population(spec)


def build_population(spec: SyntheticPopulationSpec) -> HeteroData:
    """Generate the population graph for an already validated spec."""
    with progress.stages(f"synthetic population of {spec.num_people:,}", 6) as stage:
        return _build(spec, stage)


def _build(spec: SyntheticPopulationSpec, stage) -> HeteroData:
    gen = torch.Generator().manual_seed(spec.seed)
    n = spec.num_people
    everyone = torch.arange(n)

    stage("people")
    ages = _sample_ages(spec.age_distribution, n, gen)
    stage("households")
    household, household_sizes = _households(spec, ages, gen)
    stage("communities")
    community_of_household = _communities(spec.community, household_sizes, n)
    community = community_of_household[household]
    num_communities = int(community_of_household.max()) + 1
    stage("schools")
    school_person, school_venue, school_sizes = _schools(spec.school, ages, household, gen)
    stage("workplaces")
    work_person, work_venue, work_sizes = _workplaces(spec.workplace, ages, gen)
    stage("graph")

    memberships = {
        "household": (everyone, household, household_sizes),
        "school": (school_person, school_venue, school_sizes),
        "workplace": (work_person, work_venue, work_sizes),
        "community": (everyone, community, torch.bincount(community, minlength=num_communities)),
    }

    data = HeteroData()
    data["person"].num_nodes = n
    data["person"].uid = everyone
    data["person"].age = ages
    for venue_type in VENUE_TYPES:
        person, venue, sizes = memberships[venue_type]
        num_venues = sizes.numel()
        data[venue_type].num_nodes = num_venues
        data[venue_type].uid = torch.arange(num_venues)
        data[venue_type].size = sizes.to(torch.long)
        edge_index = torch.stack([person, venue])
        data["person", MEMBER_OF, venue_type].edge_index = edge_index
        data[venue_type, REV_MEMBER_OF, "person"].edge_index = edge_index.flip(0)
    return data
