"""NYC census marginals -> synthetic population whose distributions match within sampling error."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lpm_graph.data.census import (
    census_tables,
    fit_workplace_exponent,
    load_marginals,
    pareto_class_probabilities,
    population_from_marginals,
)
from lpm_graph.data.readers import DataFileError
from lpm_graph.errors import ConfigError
from tests.conftest import compose_config

NYC = Path(__file__).resolve().parents[2] / "data" / "nyc" / "marginals.yaml"
Z = 4.5  # per-cell tolerance in standard errors; with ~40 cells a false alarm has probability < 1e-3


@pytest.fixture(scope="module")
def marginals():
    return load_marginals(NYC)


@pytest.fixture(scope="module")
def nyc_50k():
    return population_from_marginals(NYC, num_people=50_000, seed=7)


def _within(observed: np.ndarray, expected: np.ndarray, n: int) -> None:
    """Each share within Z binomial standard errors of its expectation."""
    se = np.sqrt(expected * (1 - expected) / n)
    z = np.abs(observed - expected) / np.maximum(se, 1e-12)
    assert z.max() < Z, f"max |z| = {z.max():.2f} at cell {int(z.argmax())}: {observed} vs {expected}"


def test_nyc_marginals_are_the_documented_ones(marginals):
    assert marginals.total_population == 8_336_817
    assert math.isclose(sum(marginals.age_shares), 1.0) and math.isclose(sum(marginals.household_shares), 1.0)
    assert marginals.age_bin_edges[0] == 0 and len(marginals.age_shares) == 18
    assert compose_config(["population=nyc"]).population.num_people is None   # full city by default


def test_age_distribution_matches_the_marginal(nyc_50k, marginals):
    age = nyc_50k["person"].age.numpy()
    counts = np.histogram(age, bins=marginals.age_bin_edges)[0]
    assert counts.sum() == 50_000
    _within(counts / 50_000, np.asarray(marginals.age_shares), 50_000)


def test_household_size_distribution_matches_the_marginal(nyc_50k, marginals):
    sizes = nyc_50k["household"].size.numpy()
    shares = np.bincount(sizes, minlength=len(marginals.household_shares) + 1)[1:] / sizes.size
    _within(shares, np.asarray(marginals.household_shares), sizes.size)


def test_enrolment_by_age_and_employment_match(nyc_50k, marginals):
    age = nyc_50k["person"].age
    pupils = torch.zeros(50_000, dtype=torch.bool)
    pupils[nyc_50k["person", "member_of", "school"].edge_index[0]] = True
    for low, high, rate in marginals.enrolment:
        band = (age >= low) & (age <= high)
        n = int(band.sum())
        _within(np.array([float(pupils[band].float().mean())]), np.array([rate]), n)
    assert int(pupils[(age < 3) | (age > 17)].sum()) == 0
    workers = torch.zeros(50_000, dtype=torch.bool)
    workers[nyc_50k["person", "member_of", "workplace"].edge_index[0]] = True
    band = (age >= marginals.employment_min_age) & (age <= marginals.employment_max_age)
    _within(np.array([float(workers[band].float().mean())]), np.array([marginals.employment_rate]), int(band.sum()))
    assert int(workers[~band].sum()) == 0
    assert torch.equal(nyc_50k["school"].size, torch.bincount(nyc_50k["person", "member_of", "school"].edge_index[1]))
    assert int(nyc_50k["school"].size.min()) > 0                       # thinning left no empty school


def test_workplace_exponent_fit_recovers_a_known_exponent():
    classes = [(1, 4), (5, 9), (10, 19), (20, 49), (50, 99), (100, 249), (250, 999), (1000, None)]
    for exponent in (0.6, 1.06, 1.8):
        shares = pareto_class_probabilities(exponent, classes, 1, 5000)
        assert fit_workplace_exponent(classes, shares, 1, 5000) == pytest.approx(exponent, rel=1e-4)


def test_same_seed_same_population_and_tables(tmp_path):
    a = population_from_marginals(NYC, num_people=2000, seed=3)
    b = population_from_marginals(NYC, num_people=2000, seed=3)
    for et in a.edge_types:
        assert torch.equal(a[et].edge_index, b[et].edge_index)
    persons, venues = census_tables(NYC, num_people=2000, seed=3)
    assert len(persons) == 2000 and set(venues) == {"household", "school", "workplace", "community"}
    assert {"person_id", "age", "household_id", "school_id", "workplace_id", "community_id"} <= set(persons)


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.replace("total_population: 8336817", "total_population: -3"), r"field 'total_population'"),
    (lambda t: t.replace("percent: [32.6, 28.3, 16.0, 12.5, 5.9, 2.6, 2.1]", "percent: [1, 2]"),
     r"field 'household_size.percent': expected 7 values"),
    (lambda t: t.replace("[5, 9], [10, 19]", "[5, 9], [11, 19]"), r"field 'workplace_size.classes': expected consecutive"),
    (lambda t: t.replace("- {min_age: 3, max_age: 4, percent: 70.0}", "- {min_age: 3, max_age: 4, percent: 170.0}"),
     r"field 'school.enrolment_by_age\[0\].percent'"),
    (lambda t: t.replace("employment:", "jobs:"), r"field 'employment': expected a mapping"),
    (lambda t: t + "\n  : [\n", r"not readable YAML"),
])
def test_bad_marginals_name_the_field(tmp_path, edit, match):
    path = tmp_path / "m.yaml"
    path.write_text(edit(NYC.read_text()))
    with pytest.raises(DataFileError, match=match):
        population_from_marginals(path, num_people=100)


def test_bad_options():
    with pytest.raises(ConfigError, match="population.num_people"):
        population_from_marginals(NYC, num_people=0)
    with pytest.raises(ConfigError, match="population.seed"):
        population_from_marginals(NYC, num_people=10, seed=-1)
