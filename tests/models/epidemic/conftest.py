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
    for ns, v in (params or {}).items():
        values.setdefault(ns, {}).update(v)
    return Model({"infectiousness": Infectiousness(), "transmission": VenueTransmission(), seir.name: seir},
                 environment=environment, params=values, groupings=AGE, **model_kwargs)


@pytest.fixture(scope="session")
def population():
    return generate_population(3000, seed=11)
