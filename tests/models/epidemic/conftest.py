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


def pairs(n: int, weight: float = 1.0):
    """``n`` one-leaf stars: infector ``i`` -> leaf ``n + i`` along one contact edge of weight ``weight``.

    Attribute ``role`` codes leaves 0 and infectors 1 (grouping ``role``), so per-group seeding can infect
    every infector and no leaf: a leaf then meets exactly the force of infection ``beta * weight * x_i``.
    """
    from torch_geometric.data import HeteroData

    data = HeteroData()
    data["person"].num_nodes = 2 * n
    data["person"].uid = torch.arange(2 * n)
    data["person"].age = torch.full((2 * n,), 30.0)
    data["person"].role = torch.cat([torch.ones(n), torch.zeros(n)]).long()
    data["person", "contact", "person"].edge_index = torch.stack([torch.arange(n), torch.arange(n, 2 * n)])
    data["person", "contact", "person"].edge_weight = torch.full((n,), float(weight))
    return data


ROLE = {"role": {"node_type": "person", "attribute": "role", "labels": ["leaf", "infector"]}}


def pairs_model(beta: float, environment=(), mode: str = "stochastic", dt: float = 1.0, process=None,
                **seir) -> Model:
    """Infectiousness -> contact transmission -> SEIR on :func:`pairs`: every infector infectious at step 0,
    every leaf susceptible; per-role parameters ``[leaf, infector]``."""
    process = process or SEIR(grouping="role")
    values = {"exposed_period": 3.0, "infectious_period": 5.0, "susceptibility": 1.0,
              "initial_infected_fraction": [0.0, 1.0]}
    if not process.exposed:
        del values["exposed_period"]
    values.update(seir)
    return Model({"infectiousness": Infectiousness(grouping=None), "contact": ContactTransmission(),
                  process.name: process}, environment=environment,
                 params={"contact": {"beta": beta}, process.name: values}, groupings=ROLE, mode=mode, dt=dt)


def leaves_infected(traj) -> torch.Tensor:
    """``[R]``: fraction of the leaves infected in the first step."""
    leaves = traj.group("new_infections", "role", "leaf")
    n = traj.num_nodes["person"] // 2
    return leaves[1].double() / n


def binomial_se(p: float, n: int) -> float:
    """Standard error of a binomial proportion of ``n`` trials."""
    return (p * (1 - p) / n) ** 0.5


def step_context(model: Model, graph, replicates: int = 1, seed: int = 0, t: int = 0, dtype=torch.float32,
                 params=None):
    """The context a process sees at step ``t`` (``params``: values to use instead of the model's)."""
    from lpm_graph.core import StepContext

    values = model.params.at(t, params)
    return StepContext(t=t, graph=graph, params=values, sampler=model.sampler, dt=model.dt, replicates=replicates,
                       dtype=dtype, seed=seed)
