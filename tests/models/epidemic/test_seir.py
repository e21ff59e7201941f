"""SEIR(D): state, transitions and their rates, seeding."""
from __future__ import annotations

import torch

from lpm_graph.models.epidemic import SEIR
from tests.models.epidemic.conftest import seir_model


def test_initial_compartments_are_distinct_tensors(population):
    # A shared zero tensor for E, R (and D) would alias them: writing one in place would write all.
    model = seir_model(SEIR(fatality=True))
    traj = model(population, steps=1, seed=0, replicates=2)
    graph = model.prepare(population)
    from lpm_graph.core.process import StepContext

    ctx = StepContext(t=0, graph=graph, params=model.params.at(0), sampler=model.sampler, dt=1.0, replicates=2,
                      dtype=torch.float32, seed=0)
    state, _ = model.initial_state(ctx)
    ptrs = [state[f"person.{c}"].data_ptr() for c in ("S", "E", "I", "R", "D")]
    assert len(set(ptrs)) == len(ptrs)
    assert traj.series["E"][0].eq(0).all() and traj.series["D"][0].eq(0).all()
