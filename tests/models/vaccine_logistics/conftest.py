"""A small vaccine network and the shipped model=vaccine_logistics over it (one thread: tests/models/conftest.py)."""
from __future__ import annotations

from hydra.utils import instantiate

from tests.conftest import compose_config

#: 3,000 people in communities of 500: 4 districts, 12 clinics (urban ones of ~500 people, rural of ~125)
SMALL = ("population.num_people=3000", "population.community.mean_size=500",
         "population.people_per_clinic=[500,250,250,125]", "model.params.seir.initial_infected_fraction=0.005",
         "population.supply=0.01")
ALLOCATION = "{_target_: lpm_graph.models.vaccine_logistics.DoseAllocation, allocation: %s, name: allocation}"


def compose(*overrides):
    return compose_config(["model=vaccine_logistics", *SMALL, "seed=5", *overrides])


def build(*overrides, double: bool = True):
    """(model, population) of the shipped config with the small network and ``overrides``."""
    cfg = compose(*overrides)
    model = instantiate(cfg.model, _convert_="all")
    return (model.double() if double else model), instantiate(cfg.population, _convert_="all")
