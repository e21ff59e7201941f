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


def metis_or_fallback() -> str:
    try:
        import pymetis  # noqa: F401
    except ImportError:
        return "contiguous"
    return "metis"


# the opinion model (DeGroot, NeighbourMean = WeightedSum(normalize=True)) on a weighted random graph sparse enough
# that some people have no neighbours (the isolated-node path), with one susceptibility per age group: a degree
# d_i summed over one part's edges only (not through the exchange), a ghost's stale opinion read, or an observable
# of one rank changes the means or the gradients
OPINION = ["model=opinion", "population.num_people=300", "population.mean_degree=3", "population.weighted=true",
           "dtype=float64", "steps=12", "replicates=2", "seed=3", "model.processes.degroot.grouping=age",
           "model.params.degroot.susceptibility=[0.2,0.3,0.4,0.5,0.6]", "model.learnable=[degroot.susceptibility]"]
# Friedkin-Johnsen (DeGroot anchored to the initial opinions, some people fully stubborn by a draw keyed by uid)
STUBBORN = [*(o.replace("model=opinion", "model=opinion_stubborn") for o in OPINION),
            "model.processes.degroot.stubborn_fraction=0.1", "model.params.degroot.stubbornness=[0.05,0.1,0.1,0.2,0.3]",
            "model.learnable=[degroot.susceptibility,degroot.stubbornness]"]

COUNTS = ("S", "E", "I", "R", "new_infections")


def spawn(world, tmp_path, overrides, grad=True, method=None, folder=None, then=None, more=()):
    """The ranks' results of ``overrides``; with ``more``, ``(results, [results of each of more])``."""
    method = method or metis_or_fallback()
    init = tmp_path / "init"
    mp.spawn(workers.part, args=(world, str(init), list(overrides), str(tmp_path), grad, method,
                                 None if folder is None else str(folder), then, [list(o) for o in more]),
             nprocs=world, join=True)
    out = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    if not more:
        return out
    return out, [[torch.load(tmp_path / f"more{i}-rank{r}.pt", weights_only=True) for r in range(world)]
                 for i in range(len(more))]


def assert_same_run(ref, parts):
    for out in parts:  # every rank holds the whole run's observables
        assert out["num_nodes"] == ref["num_nodes"]
        for name, series in ref["series"].items():
            got = out["series"][name]
            if name in COUNTS:  # counts: identical
                assert torch.equal(got, series), name
            else:
                torch.testing.assert_close(got, series, rtol=1e-12, atol=0)
        for g, named in ref["grouped"].items():
            for name, series in named.items():
                if name in COUNTS:
                    assert torch.equal(out["grouped"][g][name], series), (g, name)
                else:
                    torch.testing.assert_close(out["grouped"][g][name], series, rtol=1e-12, atol=0)
        if "grads" in ref:
            for name, grad in ref["grads"].items():
                torch.testing.assert_close(out["grads"][name], grad, rtol=1e-10, atol=0)


CALIBRATE = ["task=calibrate", "population.num_people=400", "dtype=float64", "task.iterations=3", "task.plot=false",
             "task.report=false", "task.checkpoint_every=0", "progress=false", "distributed.method=contiguous",
             "model.params.seir.initial_infected_fraction=0.02"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::lpm_graph.errors.CalibrationWarning")  # 400 people against 100k's data
def test_two_processes_same_counts_and_gradients_and_the_same_calibration(tmp_path):
    """The core equality (stochastic, float64; from a partition written to disk and read per rank), then the opinion models' (:data:`OPINION`, :data:`STUBBORN`),
    then ``task=calibrate`` (the default problem, expected mode, three Adam steps) in the same two processes: the
    same losses and fitted values as one process, to 1e-10."""
    import json

    import pandas as pd

    from lpm_graph import tasks

    ref = reference(OVERRIDES)
    assert ref["series"]["new_infections"][1:].sum() > 20  # the epidemic moves: the comparison has something to see
    assert all(g.abs().sum() > 0 for g in ref["grads"].values())
    opinion, stubborn = reference(OPINION), reference(STUBBORN)
    single = tmp_path / "single"
    tasks.get("calibrate")(workers.compose(CALIBRATE), single)
    from lpm_graph.distributed.partition import partition_graph, write_partition

    _, data, _ = workers.build(OVERRIDES)  # the round trip: the epidemic's parts written once, each rank reads its own
    write_partition(data, partition_graph(data, 2, metis_or_fallback()), tmp_path / "parts")
    parts, (opinion_parts, stubborn_parts) = spawn(2, tmp_path, OVERRIDES, folder=tmp_path / "parts", then=CALIBRATE,
                                                   more=[OPINION, STUBBORN])
    assert_same_run(ref, parts)
    assert_same_opinions(opinion, opinion_parts)
    assert_same_opinions(stubborn, stubborn_parts)
    expected, got = pd.read_csv(single / "loss.csv"), pd.read_csv(tmp_path / "task0" / "loss.csv")
    assert len(got) == 3 and (expected["loss"].diff().iloc[1:] < 0).all()  # the fit moves
    pd.testing.assert_frame_equal(got, expected, rtol=1e-10, atol=0)
    assert json.loads((tmp_path / "task0" / "fitted_params.json").read_text())["final_loss"] == pytest.approx(
        json.loads((single / "fitted_params.json").read_text())["final_loss"], rel=1e-10)
    assert not (tmp_path / "task1").exists() or not any((tmp_path / "task1").iterdir())  # only rank 0 writes


def assert_same_opinions(ref, parts):
    """The opinion model on P parts: means and variances (overall and per age group) to 1e-12, the per-group
    susceptibility's gradient to 1e-10, and the comparison has something to see."""
    var = ref["series"]["opinion_var"]
    assert (var[-1] < 0.5 * var[0]).all()  # the opinions move towards each other
    for grad in ref["grads"].values():
        assert (grad.abs() > 0).all()  # every age group's parameters matter
    for out in parts:
        assert out["ghosts"]["person"] > 0  # people have neighbours on the other parts: the exchange is exercised
    assert_same_run(ref, parts)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("LPM_GRAPH_TEST_DISTRIBUTED") != "all", reason="4 spawned processes take "
                    "30-110 s on a loaded 2-core machine; opt in with LPM_GRAPH_TEST_DISTRIBUTED=all")
def test_four_processes_from_a_written_partition(tmp_path):
    """P = 4 from a partition written once and read per rank: the round trip runs the same epidemic; then the
    opinion model on 4 parts in the same processes."""
    from lpm_graph.distributed.partition import partition_graph, write_partition

    overrides = [o.replace("num_people=400", "num_people=300") for o in OVERRIDES]
    ref = reference(overrides)
    opinion = reference(OPINION)
    _, data, _ = workers.build(overrides)
    write_partition(data, partition_graph(data, 4, metis_or_fallback()), tmp_path / "parts")
    stubborn = reference(STUBBORN)
    parts, (opinion_parts, stubborn_parts) = spawn(4, tmp_path, overrides, folder=tmp_path / "parts",
                                                   more=[OPINION, STUBBORN])
    assert_same_run(ref, parts)
    assert_same_opinions(opinion, opinion_parts)  # and the opinion models on 4 parts (partitioned on the fly)
    assert_same_opinions(stubborn, stubborn_parts)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("LPM_GRAPH_TEST_DISTRIBUTED") != "all", reason="opt in with "
                    "LPM_GRAPH_TEST_DISTRIBUTED=all (two more spawned processes)")
def test_contacts_between_people_ghost_the_people(tmp_path):
    """Person -> person contacts (time-varying windows): people are ghosts of other parts, their sources are
    broadcast before each product and their partial forces reduced after it."""
    overrides = ["population=sociopatterns", "population.path=data/sociopatterns/school_sample.dat", "model=contact",
                 "dtype=float64", "steps=10", "replicates=2", "seed=1", "model.learnable=[contact.beta]",
                 "model.params.seir.initial_infected_fraction=0.05"]
    ref = reference(overrides)
    assert ref["series"]["new_infections"][1:].sum() > 5
    assert_same_run(ref, spawn(2, tmp_path, overrides))
