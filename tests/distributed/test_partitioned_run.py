"""The same run on P processes: compartment counts at every step identical to one process, gradients to 1e-10.

Each test spawns P local processes (torch.multiprocessing, gloo on the CPU) over a few hundred people in
float64; a wrong exchange (a dropped ghost contribution, venue sizes from one part's members only, an observable
summed on one rank, a gradient counted on one rank or P times) changes the counts or the gradients.
"""
from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp

from tests.distributed import workers

OVERRIDES = ["population.num_people=400", "steps=12", "dtype=float64", "replicates=2", "seed=3",
             "model.params.seir.initial_infected_fraction=0.03",
             "model.learnable=[transmission.beta_household,transmission.beta_community,seir.infectious_period]"]


def reference(overrides, grad=True):
    model, data, run_cfg = workers.build(overrides)
    out = workers.run(model, data, run_cfg, grad)
    if grad:
        out["grads"] = workers.grads(model)
    return out


def spawn(world, tmp_path, overrides, grad=True, method="metis", folder=None):
    init = tmp_path / "init"
    mp.spawn(workers.part, args=(world, str(init), list(overrides), str(tmp_path), grad, method,
                                 None if folder is None else str(folder)), nprocs=world, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]


def assert_same_run(ref, parts):
    for out in parts:  # every rank holds the whole run's observables
        assert out["num_nodes"] == ref["num_nodes"]
        for name, series in ref["series"].items():
            got = out["series"][name]
            if name in ("S", "E", "I", "R", "new_infections"):  # counts: identical
                assert torch.equal(got, series), name
            else:
                torch.testing.assert_close(got, series, rtol=1e-12, atol=0)
        for g, named in ref["grouped"].items():
            for name, series in named.items():
                assert torch.equal(out["grouped"][g][name], series), (g, name)
        if "grads" in ref:
            for name, grad in ref["grads"].items():
                torch.testing.assert_close(out["grads"][name], grad, rtol=1e-10, atol=0)


@pytest.mark.slow
def test_two_processes_same_counts_and_gradients(tmp_path):
    ref = reference(OVERRIDES)
    assert ref["series"]["new_infections"][1:].sum() > 20  # the epidemic moves: the comparison has something to see
    assert all(g.abs().sum() > 0 for g in ref["grads"].values())
    assert_same_run(ref, spawn(2, tmp_path, OVERRIDES))
