"""Small epidemic models and populations for the epidemic's tests."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.core import Model
from lpm_graph.data import generate_population
from lpm_graph.models.epidemic import SEIR, ContactTransmission, Infectiousness, VenueTransmission

AGE = {"age": {"node_type": "person", "attribute": "age", "bins": [0, 10, 20, 30, 40, 50, 60, 70, 80]}}
BETAS = {"beta_household": 0.4, "beta_school": 0.2, "beta_workplace": 0.2, "beta_community": 0.3}


def seir_model(seir=None, environment=(), params=None, **model_kwargs) -> Model:
    """Infectiousness -> venue transmission -> SEIR(D), with the shipped default values."""
    seir = seir or SEIR()
    values = {"transmission": dict(BETAS),
              "seir": {"exposed_period": 3.0, "infectious_period": 5.0, "susceptibility": 1.0,
                       "initial_infected_fraction": 0.01}}
    if getattr(seir, "fatality", False):
        values["seir"]["fatality"] = 0.01
    if seir.infectious_steps is not None:
        del values["seir"]["infectious_period"]
    for ns, v in (params or {}).items():
        values.setdefault(ns, {}).update(v)
    return Model({"infectiousness": Infectiousness(), "transmission": VenueTransmission(), seir.name: seir},
                 environment=environment, params=values, groupings=AGE, **model_kwargs)


@pytest.fixture(scope="session")
def population():
    return generate_population(3000, seed=11)


def well_mixed(n: int, seed: int = 0):
    """``n`` people in one community venue: frequency-dependent mixing makes lambda = beta * I / N."""
    from torch_geometric.data import HeteroData

    g = torch.Generator().manual_seed(seed)
    data = HeteroData()
    data["person"].num_nodes = n
    data["person"].uid = torch.arange(n)
    data["person"].age = torch.randint(0, 90, (n,), generator=g).float()
    data["community"].num_nodes = 1
    data["community"].uid = torch.arange(1)
    data["person", "member_of", "community"].edge_index = torch.stack([torch.arange(n), torch.zeros(n, dtype=torch.long)])
    return data


def mixed_model(process, beta: float, mode: str = "stochastic", **params) -> Model:
    """Infectiousness -> one-venue transmission -> ``process`` (SEIR, SIR or SIS)."""
    return Model({"infectiousness": Infectiousness(grouping=None),
                  "transmission": VenueTransmission(venue_types=["community"]), process.name: process},
                 params={"transmission": {"beta_community": beta}, process.name: params}, groupings=AGE, mode=mode)
