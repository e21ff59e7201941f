"""Tests for the synthetic population generator (lpm_graph.data.synthetic)."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lpm_graph.data import (
    VENUE_TYPES,
    ConfigError,
    SyntheticPopulationSpec,
    generate_population,
    validate_population,
)
from lpm_graph.data.synthetic import (
    ADULT_AGE,
    MEMBER_OF,
    REV_MEMBER_OF,
    AgeDistribution,
    CommunitySpec,
    SchoolSpec,
    WorkplaceSpec,
)

N_STAT = 50_000
CONF = Path(__file__).resolve().parents[2] / "conf" / "population" / "synthetic.yaml"


@pytest.fixture(scope="module")
def big():
    return generate_population(N_STAT, seed=7)


@pytest.fixture(scope="module")
def spec():
    return SyntheticPopulationSpec(num_people=N_STAT)


def membership(data, venue_type):
    return data["person", MEMBER_OF, venue_type].edge_index


def within_binomial(count: int, trials: int, p: float, sigmas: float = 5.0) -> bool:
    """|count - trials * p| within `sigmas` binomial standard deviations (+1 for discreteness)."""
    sd = math.sqrt(trials * p * (1.0 - p))
    return abs(count - trials * p) <= sigmas * sd + 1.0


def all_tensors(data):
    for node_type in data.node_types:
        for key, value in data[node_type].items():
            yield (node_type, key), value
    for edge_type in data.edge_types:
        for key, value in data[edge_type].items():
            yield (edge_type, key), value


# --- determinism ---------------------------------------------------------------------


def test_same_seed_gives_bit_identical_graph():
    a = generate_population(3000, seed=11)
    b = generate_population(3000, seed=11)
    assert a.node_types == b.node_types and a.edge_types == b.edge_types
    items_a, items_b = dict(all_tensors(a)), dict(all_tensors(b))
    assert items_a.keys() == items_b.keys()
    for key, value in items_a.items():
        other = items_b[key]
        if isinstance(value, torch.Tensor):
            assert value.dtype == other.dtype and torch.equal(value, other), key
        else:
            assert value == other, key


def test_different_seeds_give_different_graphs():
    a = generate_population(3000, seed=1)
    b = generate_population(3000, seed=2)
    assert not torch.equal(a["person"].age, b["person"].age)
    assert not torch.equal(membership(a, "household"), membership(b, "household"))
    assert not torch.equal(membership(a, "workplace"), membership(b, "workplace"))


# --- schema ----------------------------------------------------------------------------


def test_schema(big):
    data = big
    assert VENUE_TYPES == ("household", "school", "workplace", "community")
    assert set(data.node_types) == {"person", *VENUE_TYPES}
    expected_edges = {("person", MEMBER_OF, vt) for vt in VENUE_TYPES}
    expected_edges |= {(vt, REV_MEMBER_OF, "person") for vt in VENUE_TYPES}
    assert set(data.edge_types) == expected_edges

    person = data["person"]
    assert person.num_nodes == N_STAT
    assert person.uid.dtype == torch.int64 and torch.equal(person.uid, torch.arange(N_STAT))
    assert person.age.dtype == torch.float32 and person.age.shape == (N_STAT,)

    for vt in VENUE_TYPES:
        store = data[vt]
        n = store.num_nodes
        assert n > 0
        assert store.uid.dtype == torch.int64 and torch.equal(store.uid, torch.arange(n))
        assert store.size.dtype == torch.int64 and store.size.shape == (n,)
        fwd = membership(data, vt)
        rev = data[vt, REV_MEMBER_OF, "person"].edge_index
        assert fwd.dtype == torch.int64 and fwd.dim() == 2 and fwd.shape[0] == 2
        assert torch.equal(rev, fwd.flip(0))
        assert bool((fwd[0, 1:] >= fwd[0, :-1]).all()), f"{vt} edges not sorted by person"
        # size is the member count of each venue and no venue is empty
        assert torch.equal(store.size, torch.bincount(fwd[1], minlength=n))
        assert int(store.size.min()) >= 1
        assert "edge_weight" not in data["person", MEMBER_OF, vt]
    validate_population(data)


def test_everyone_in_exactly_one_household_and_community(big):
    for vt in ("household", "community"):
        ei = membership(big, vt)
        assert torch.equal(ei[0], torch.arange(N_STAT)), vt


def test_at_most_one_school_and_workplace(big):
    for vt in ("school", "workplace"):
        persons = membership(big, vt)[0]
        assert torch.unique(persons).numel() == persons.numel(), vt


def test_ages_integer_valued_and_in_range(big, spec):
    age = big["person"].age
    assert torch.equal(age, torch.floor(age))
    edges = spec.age_distribution.bin_edges
    assert float(age.min()) >= edges[0] and float(age.max()) < edges[-1]


def test_age_distribution_matches_spec(big, spec):
    age = big["person"].age.double()
    edges = torch.tensor(spec.age_distribution.bin_edges, dtype=torch.float64)
    weights = torch.tensor(spec.age_distribution.weights, dtype=torch.float64)
    probs = weights / weights.sum()
    counts = torch.bincount(torch.bucketize(age, edges, right=True) - 1, minlength=len(probs))
    for k, p in enumerate(probs.tolist()):
        assert within_binomial(int(counts[k]), N_STAT, p), (k, int(counts[k]), N_STAT * p)
    # uniform within a bin: each single year of 20-24 holds ~1/5 of that bin
    in_bin = age[(age >= 20) & (age < 25)]
    for year in range(20, 25):
        assert within_binomial(int((in_bin == year).sum()), in_bin.numel(), 0.2), year


def test_household_size_distribution_matches_spec(big, spec):
    sizes = big["household"].size
    probs = torch.tensor(spec.household_size_distribution, dtype=torch.float64)
    probs = probs / probs.sum()
    num = sizes.numel()
    assert int(sizes.sum()) == N_STAT
    assert int(sizes.max()) <= len(probs)
    counts = torch.bincount(sizes - 1, minlength=len(probs))
    for k, p in enumerate(probs.tolist()):
        assert within_binomial(int(counts[k]), num, p), (k + 1, int(counts[k]), num * p)


def test_every_multi_person_household_has_an_adult(big):
    ei = membership(big, "household")
    age = big["person"].age
    oldest = torch.full((big["household"].num_nodes,), -1.0).scatter_reduce(
        0, ei[1], age[ei[0]], reduce="amax"
    )
    # adults are plentiful at the default age structure, so every household has one
    assert bool((oldest >= ADULT_AGE).all())
    multi = big["household"].size >= 2
    assert bool((oldest[multi] >= ADULT_AGE).all())


def test_scarce_adults_go_to_larger_households():
    # ~25% adults: fewer adults than households; multi-person homes must be served first
    data = generate_population(
        4000, seed=3, age_distribution={"bin_edges": [0, 18, 60], "weights": [3, 1]}
    )
    ei = membership(data, "household")
    age = data["person"].age
    oldest = torch.full((data["household"].num_nodes,), -1.0).scatter_reduce(
        0, ei[1], age[ei[0]], reduce="amax"
    )
    size = data["household"].size
    has_adult = oldest >= ADULT_AGE
    num_adults = int((age >= ADULT_AGE).sum())
    assert num_adults < size.numel()
    # every adult heads a distinct household, and no household without an adult is
    # larger than one with an adult head chosen ahead of it
    assert int(has_adult.sum()) == num_adults
    assert int(size[~has_adult].max()) <= int(size[has_adult].min())


def test_only_school_age_in_schools_and_enrolment_rate(big, spec):
    school = spec.school
    age = big["person"].age
    pupils = membership(big, "school")[0]
    assert float(age[pupils].min()) >= school.min_age
    assert float(age[pupils].max()) <= school.max_age
    eligible = int(((age >= school.min_age) & (age <= school.max_age)).sum())
    assert within_binomial(pupils.numel(), eligible, school.enrolment)


def test_schools_do_not_mix_small_children_with_teenagers(big, spec):
    ei = membership(big, "school")
    age = big["person"].age[ei[0]]
    n = big["school"].num_nodes
    youngest = torch.full((n,), 1e9).scatter_reduce(0, ei[1], age, reduce="amin")
    oldest = torch.full((n,), -1.0).scatter_reduce(0, ei[1], age, reduce="amax")
    span = spec.school.max_age - spec.school.min_age
    assert float((oldest - youngest).max()) < span


def test_school_sizes_near_mean(big, spec):
    sizes = big["school"].size.double()
    mean = spec.school.mean_size
    assert float(sizes.min()) >= mean / 2 and float(sizes.max()) <= mean * 2


def test_only_working_age_in_workplaces_and_employment_rate(big, spec):
    work = spec.workplace
    age = big["person"].age
    workers = membership(big, "workplace")[0]
    assert float(age[workers].min()) >= work.min_age
    assert float(age[workers].max()) <= work.max_age
    eligible = int(((age >= work.min_age) & (age <= work.max_age)).sum())
    assert within_binomial(workers.numel(), eligible, work.employment_rate)


def test_workplace_sizes_heavy_tailed_and_bounded(big, spec):
    work = spec.workplace
    sizes = big["workplace"].size
    assert int(sizes.min()) >= work.min_size and int(sizes.max()) <= work.max_size
    median = float(sizes.double().median())
    assert float(sizes.max()) >= 50 * median
    # tail of the truncated discrete Pareto: P(S >= s) = ((m/s)^a - c) / (1 - c)
    a, m = work.size_exponent, work.min_size
    c = (m / (work.max_size + 1)) ** a
    for s in (2, 10, 100):
        p = ((m / s) ** a - c) / (1 - c)
        assert within_binomial(int((sizes >= s).sum()), sizes.numel(), p), s


def test_workplace_min_size_respected():
    data = generate_population(
        20_000, seed=5, workplace={"min_size": 5, "max_size": 200, "size_exponent": 1.5}
    )
    sizes = data["workplace"].size
    assert int(sizes.min()) >= 5 and int(sizes.max()) <= 200
    assert torch.equal(sizes, torch.bincount(membership(data, "workplace")[1]))


def test_communities_are_blocks_of_consecutive_households(big, spec):
    hh = membership(big, "household")[1]
    com = membership(big, "community")[1]
    num_households = big["household"].num_nodes
    community_of_household = torch.zeros(num_households, dtype=torch.long)
    community_of_household[hh] = com
    # household members share a community, and communities are runs of households
    assert torch.equal(community_of_household[hh], com)
    assert bool((community_of_household[1:] >= community_of_household[:-1]).all())
    sizes = big["community"].size.double()
    target = N_STAT / big["community"].num_nodes
    assert abs(target - spec.community.mean_size) <= spec.community.mean_size / 2
    max_household = float(big["household"].size.max())
    assert float((sizes - target).abs().max()) <= 2 * max_household


# --- small and degenerate populations -----------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 17])
def test_tiny_populations(n):
    data = generate_population(n, seed=0)
    validate_population(data)
    assert data["person"].num_nodes == n
    assert int(data["household"].size.sum()) == n
    assert data["community"].num_nodes == 1
    for vt in VENUE_TYPES:
        assert vt in data.node_types
        assert data["person", MEMBER_OF, vt].edge_index.dtype == torch.int64


def test_population_without_children_has_empty_school_type():
    data = generate_population(200, seed=1, age_distribution={"bin_edges": [30, 60], "weights": [1]})
    validate_population(data)
    assert data["school"].num_nodes == 0
    assert data["school"].uid.shape == (0,) and data["school"].uid.dtype == torch.int64
    assert data["school"].size.shape == (0,) and data["school"].size.dtype == torch.int64
    for et in (("person", MEMBER_OF, "school"), ("school", REV_MEMBER_OF, "person")):
        ei = data[et].edge_index
        assert ei.shape == (2, 0) and ei.dtype == torch.int64


def test_zero_employment_and_only_children():
    data = generate_population(
        300,
        seed=2,
        age_distribution={"bin_edges": [0, 10], "weights": [1]},
        workplace={"employment_rate": 0.0},
    )
    validate_population(data)
    assert data["workplace"].num_nodes == 0
    assert membership(data, "workplace").shape == (2, 0)
    assert int(data["household"].size.sum()) == 300


def test_omegaconf_arguments_equal_plain_arguments():
    kwargs = dict(
        age_distribution={"bin_edges": [0, 20, 70], "weights": [1, 2]},
        household_size_distribution=[0.5, 0.5],
        school={"enrolment": 0.5},
        workplace={"employment_rate": 0.4},
        community={"mean_size": 100},
    )
    plain = generate_population(1000, seed=4, **kwargs)
    omega = generate_population(
        1000, seed=4, **{k: OmegaConf.create(v) for k, v in kwargs.items()}
    )
    for (key, a), (_, b) in zip(all_tensors(plain), all_tensors(omega)):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), key
    assert int(plain["household"].size.max()) <= 2


def test_partial_mapping_keeps_other_defaults():
    spec = SyntheticPopulationSpec.from_config(10, school={"enrolment": 0.2})
    assert spec.school == SchoolSpec(enrolment=0.2)
    assert spec.workplace == WorkplaceSpec()


def test_spec_is_frozen():
    spec = SyntheticPopulationSpec(num_people=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.num_people = 11  # type: ignore[misc]


# --- spec validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_people": -5}, "population.num_people must be a positive integer, got -5"),
        ({"num_people": 0}, "population.num_people must be a positive integer, got 0"),
        ({"num_people": 2.5}, "population.num_people must be a positive integer"),
        ({"num_people": True}, "population.num_people must be a positive integer"),
        ({"seed": -1}, "population.seed"),
        ({"seed": "a"}, "population.seed"),
        ({"school": {"enrolment": 1.3}}, "population.school.enrolment must be a probability in [0, 1], got 1.3"),
        ({"school": {"enrolment": float("nan")}}, "population.school.enrolment must be a probability"),
        ({"workplace": {"employment_rate": -0.1}}, "population.workplace.employment_rate must be a probability in [0, 1]"),
        ({"household_size_distribution": [0, 0]}, "population.household_size_distribution must be non-negative weights with a positive sum"),
        ({"household_size_distribution": [0.5, -0.1]}, "population.household_size_distribution must be non-negative weights"),
        ({"household_size_distribution": []}, "population.household_size_distribution must be non-negative weights"),
        ({"household_size_distribution": [float("inf")]}, "population.household_size_distribution must be non-negative weights"),
        ({"household_size_distribution": "abc"}, "population.household_size_distribution must be non-negative weights"),
        ({"age_distribution": {"bin_edges": [0, 10, 20], "weights": [1]}}, "population.age_distribution.weights must have one weight per bin"),
        ({"age_distribution": {"bin_edges": [0, 10], "weights": [-1]}}, "population.age_distribution.weights must be non-negative weights"),
        ({"age_distribution": {"bin_edges": [0, 20, 10], "weights": [1, 1]}}, "population.age_distribution.bin_edges must be strictly increasing"),
        ({"age_distribution": {"bin_edges": [-5, 10], "weights": [1]}}, "population.age_distribution.bin_edges must be"),
        ({"school": {"min_age": 12, "max_age": 6}}, "population.school.min_age must be <= population.school.max_age"),
        ({"workplace": {"min_age": 70, "max_age": 60}}, "population.workplace.min_age must be <= population.workplace.max_age"),
        ({"workplace": {"min_age": -1}}, "population.workplace.min_age must be a non-negative number"),
        ({"workplace": {"min_size": 0}}, "population.workplace.min_size must be a positive integer, got 0"),
        ({"workplace": {"min_size": 10, "max_size": 5}}, "population.workplace.max_size must be an integer >="),
        ({"workplace": {"size_exponent": 0}}, "population.workplace.size_exponent must be a positive number"),
        ({"school": {"mean_size": 0}}, "population.school.mean_size must be a positive number"),
        ({"community": {"mean_size": -3}}, "population.community.mean_size must be a positive number, got -3"),
        ({"community": {"mean_sise": 10}}, "population.community has unknown key(s) ['mean_sise']"),
        ({"school": [1, 2]}, "population.school must be a mapping"),
    ],
)
def test_spec_errors_name_the_field(kwargs, message):
    args = {"num_people": 100, **kwargs}
    with pytest.raises(ConfigError, match=re.escape(message)):
        generate_population(**args)


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(ValueError):
        SyntheticPopulationSpec(num_people=-1)


def test_nested_spec_classes_validate_directly():
    with pytest.raises(ConfigError, match=re.escape("population.school.enrolment")):
        SchoolSpec(enrolment=2)
    with pytest.raises(ConfigError, match=re.escape("population.community.mean_size")):
        CommunitySpec(mean_size=0)
    with pytest.raises(ConfigError, match=re.escape("population.age_distribution.weights")):
        AgeDistribution(bin_edges=(0, 1), weights=(0,))


# --- Hydra config ----------------------------------------------------------------------


def test_yaml_defaults_match_code_defaults():
    cfg = OmegaConf.merge({"seed": 0}, {"population": OmegaConf.load(CONF)})
    pop = OmegaConf.to_container(cfg.population, resolve=True)
    assert pop["_target_"] == "lpm_graph.data.synthetic.generate_population"
    from_yaml = SyntheticPopulationSpec.from_config(
        **{k: v for k, v in pop.items() if k != "_target_"}
    )
    from_code = SyntheticPopulationSpec(num_people=pop["num_people"])
    assert from_yaml == from_code


def test_yaml_instantiates_with_hydra():
    cfg = OmegaConf.merge({"seed": 9}, {"population": OmegaConf.load(CONF)})
    cfg.population.num_people = 500
    data = instantiate(cfg.population)
    validate_population(data)
    expected = generate_population(500, seed=9)
    assert torch.equal(data["person"].age, expected["person"].age)
    assert torch.equal(membership(data, "workplace"), membership(expected, "workplace"))


# --- scale -------------------------------------------------------------------------------


def test_million_people_builds_a_valid_graph():
    # build time is a benchmark figure (scripts/), not asserted here
    data = generate_population(1_000_000, seed=0)
    validate_population(data)
    assert data["person"].num_nodes == 1_000_000
    assert data["person", "member_of", "household"].edge_index.size(1) == 1_000_000
