"""Interventions: closures, vaccination, isolation."""
from __future__ import annotations

import torch

from lpm_graph.models.epidemic import SEIR, Vaccination
from tests.models.epidemic.conftest import seir_model


def test_vaccination_gives_no_doses_to_the_dead(population):
    # Everyone infectious, certain death on removal, removal in one step: by step 2 everyone is dead.
    # A campaign starting then must not vaccinate anybody.
    campaign = Vaccination(daily_fraction=0.5, start=2, end=6)
    model = seir_model(SEIR(fatality=True), environment=[campaign],
                       params={"seir": {"infectious_period": 1.0, "fatality": 1.0, "initial_infected_fraction": 1.0}})
    traj = model(population, steps=5, seed=0, replicates=2)
    assert torch.equal(traj.series["D"][1], torch.full((2,), 3000.0))
    assert traj.series["V"][-1].eq(0).all()
