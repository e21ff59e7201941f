"""SEIR(D) progression: final size, transition rates, age structure."""
from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.data import HeteroData

from lpm_graph.data import ConfigError
from lpm_graph.dynamics import SEIR, VenueTransmission
from lpm_graph.model import PopulationModel


def well_mixed(n: int) -> HeteroData:
    """Everyone in one community venue: frequency-dependent mixing is a well-mixed population."""
    data = HeteroData()
    data["person"].num_nodes = n
    data["person"].uid = torch.arange(n)
    data["person"].age = torch.full((n,), 30.0)
    data["community"].num_nodes = 1
    data["person", "member_of", "community"].edge_index = torch.stack([torch.arange(n), torch.zeros(n, dtype=torch.long)])
    return data


def sir_model(beta, period, i0, fatality=None, **kw):
    params = dict(beta_community=beta, exposed_period=1e-3, infectious_period=period, susceptibility=1.0,
                  infectiousness=1.0, initial_infected_fraction=i0)
    if fatality is not None:
        params["fatality"] = fatality
    return PopulationModel([VenueTransmission(["community"])], SEIR(fatality=fatality is not None), params, **kw)


def test_well_mixed_final_size_matches_kermack_mckendrick():
    """With escape probability exp(-beta I/N) per day and a geometric infectious period of mean
    1/p steps, R0 = beta/p and the final size solves 1 - r = (1 - i0) exp(-R0 r)."""
    n, i0, period, r0 = 20_000, 0.002, 4.0, 2.0
    p_end = 1 - math.exp(-1 / period)
    model = sir_model(beta=r0 * p_end, period=period, i0=i0)
    traj = model(well_mixed(n), steps=250, seed=1, replicates=4)
    assert float(traj.series["I"][-1].max()) == 0, "epidemic must be over"
    attack = 1 - traj.series["S"][-1] / n
    r = 0.5
    for _ in range(200):
        r = 1 - (1 - i0) * math.exp(-r0 * r)
    # sd of the final size ~ sqrt(r(1-r)/n) / (1 - R0 (1-r)) = 0.0048; mean of 4: 0.0024; 5 sd
    assert abs(float(attack.mean()) - r) < 0.012, (attack, r)
    assert (attack - r).abs().max() < 0.025


def test_expected_mode_final_size_matches_kermack_mckendrick():
    n, i0, period, r0 = 1000, 0.002, 4.0, 2.0
    p_end = 1 - math.exp(-1 / period)
    traj = sir_model(beta=r0 * p_end, period=period, i0=i0, mode="expected").double()(well_mixed(n), steps=400)
    r = 0.5
    for _ in range(200):
        r = 1 - (1 - i0) * math.exp(-r0 * r)
    # mean field on one venue: the deterministic recursion; only discretisation remains
    assert abs(float(1 - traj.series["S"][-1, 0] / n) - r) < 0.01


def test_no_transmission_means_only_seeds_are_infected():
    n = 5000
    traj = sir_model(beta=0.0, period=3.0, i0=0.01)(well_mixed(n), steps=60, seed=2)
    seeds = traj.series["new_infections"][0, 0]
    assert traj.series["new_infections"][1:].sum() == 0
    assert float(traj.series["R"][-1, 0]) == float(seeds)
    # binomial(5000, 0.01): sd 7.0
    assert abs(float(seeds) - 50) < 5 * 7.0


def test_infectious_period_is_geometric_with_the_configured_mean():
    n, period = 20_000, 5.0
    traj = sir_model(beta=0.0, period=period, i0=1.0)(well_mixed(n), steps=1, seed=3)
    # one step: each infectious person recovers w.p. 1 - exp(-1/period)
    p = 1 - math.exp(-1 / period)
    removed = float(traj.series["R"][1, 0])
    sd = math.sqrt(n * p * (1 - p))
    assert abs(removed - n * p) < 5 * sd


def test_fatality_fraction_among_removed():
    n, mu = 20_000, 0.2
    traj = sir_model(beta=0.0, period=1.0, i0=1.0, fatality=mu)(well_mixed(n), steps=40, seed=4)
    removed = float(traj.series["R"][-1, 0] + traj.series["D"][-1, 0])
    assert removed == n
    deaths = float(traj.series["D"][-1, 0])
    assert abs(deaths - n * mu) < 5 * math.sqrt(n * mu * (1 - mu))
    assert torch.allclose(traj.series["new_deaths"][1:].sum(0), traj.series["D"][-1])


def test_age_dependent_susceptibility_is_applied_per_group():
    n = 8000
    data = well_mixed(n)
    data["person"].age = torch.where(torch.arange(n) % 2 == 0, 5.0, 50.0)
    params = dict(beta_community=0.5, exposed_period=2.0, infectious_period=3.0,
                  susceptibility=[0.0, 1.0], infectiousness=1.0, initial_infected_fraction=0.01)
    model = PopulationModel([VenueTransmission(["community"])], SEIR(), params, age_bins=[0, 18])
    traj = model(data, steps=60, seed=5)
    by_age = traj.by_age["new_infections"][1:].sum(0)[:, 0]
    assert by_age[0] == 0 and by_age[1] > 100


def test_initial_compartment_must_be_e_or_i():
    with pytest.raises(ConfigError, match="initial_compartment"):
        SEIR(initial_compartment="R")
    assert SEIR(fatality=True).compartments == ("S", "E", "I", "R", "D")
