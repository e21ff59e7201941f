"""The epidemic unrolled: conservation, common random numbers, gradients, devices."""
from __future__ import annotations

import math

import pytest
import torch

from lpm_graph.models.epidemic import SEIR, Isolation, Vaccination, VenueClosure
from tests.helpers import permute_people
from tests.models.epidemic.conftest import seir_model

FATALITY = [0.0, 0.0, 0.001, 0.002, 0.005, 0.01, 0.03, 0.08, 0.15]
SUSCEPTIBILITY = [0.5, 0.7, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
BASE = {"transmission": {"beta_household": 0.5, "beta_school": 0.3, "beta_workplace": 0.3, "beta_community": 0.4},
        "seir": {"exposed_period": 2.0, "infectious_period": 4.0, "susceptibility": SUSCEPTIBILITY,
                 "initial_infected_fraction": 0.01}}


def make_model(fatality=False, environment=(), params=None, **kwargs):
    values = {ns: dict(v) for ns, v in BASE.items()}
    if fatality:
        values["seir"]["fatality"] = FATALITY
    for ns, v in (params or {}).items():
        values.setdefault(ns, {}).update(v)
    return seir_model(SEIR(fatality=fatality), environment=environment, params=values, **kwargs)


@pytest.mark.parametrize("mode", ["stochastic", "expected"])
@pytest.mark.parametrize("fatality", [False, True])
def test_compartments_sum_to_the_population_every_step(population, mode, fatality):
    model = make_model(fatality=fatality, mode=mode)
    traj = model(population, steps=40, seed=3, replicates=3)
    compartments = model.process("seir").compartments
    total = sum(traj.series[c] for c in compartments)
    n = 3000
    # stochastic: exact counts; expected: float32 sums of 3000 probabilities, each step's rounding < 1e-3
    atol = 0 if mode == "stochastic" else 1e-3
    assert torch.allclose(total, torch.full_like(total, n), atol=atol, rtol=0)
    # every person's state is a distribution over the compartments (0/1 in stochastic mode)
    per_person = sum(traj.final_state[f"person.{c}"] for c in compartments)
    assert torch.allclose(per_person, torch.ones_like(per_person), atol=1e-5)
    for c in compartments:
        s = traj.final_state[f"person.{c}"]
        assert s.min() >= 0 and s.max() <= 1
        if mode == "stochastic":
            assert set(s.unique().tolist()) <= {0.0, 1.0}
    # S never increases, the removed never decrease; new infections are the drop in S
    assert (traj.series["S"].diff(dim=0) <= 1e-3).all()
    assert (traj.series["R"].diff(dim=0) >= -1e-3).all()
    assert torch.allclose(-traj.series["S"].diff(dim=0), traj.series["new_infections"][1:], atol=1e-2)
    by_age = traj.grouped["age"]["new_infections"].sum(1)
    assert torch.allclose(by_age, traj.series["new_infections"], atol=1e-2)
    if mode == "stochastic":
        assert traj.series["S"][-1].max() < 0.9 * n, "an epidemic happened"


def test_epidemic_takes_off_and_ends(population):
    traj = make_model()(population, steps=120, seed=1)
    infectious = traj.series["I"][:, 0]
    assert infectious.max() > 5 * infectious[0]
    assert infectious[-1] < 0.2 * infectious.max()


def test_intervention_runs_share_random_numbers(population):
    """Common random numbers: until an intervention starts, the runs are identical; an intervention that
    changes nothing leaves the whole trajectory identical."""
    start = 15
    base = make_model()
    closed = make_model(environment=[VenueClosure("school", start=start, end=40, factor=0.0)])
    noop = make_model(environment=[VenueClosure("school", start=start, end=40, factor=1.0)])
    a = base(population, steps=60, seed=7, replicates=2)
    b = closed(population, steps=60, seed=7, replicates=2)
    c = noop(population, steps=60, seed=7, replicates=2)
    # index t holds the state after step t-1; the closure first acts in step `start`
    assert torch.equal(a.series["I"][: start + 1], b.series["I"][: start + 1])
    assert not torch.equal(a.series["I"][start + 1:], b.series["I"][start + 1:])
    for k in a.series:
        assert torch.equal(a.series[k], c.series[k]), k
    # vaccination's and isolation's own draws do not shift the epidemic's: with no effect, nothing changes
    idle = make_model(environment=[Vaccination(daily_fraction=0.01, efficacy=0.0),
                                   Isolation(compliance=0.5, effectiveness=0.0)])
    d = idle(population, steps=60, seed=7, replicates=2)
    for k in a.series:
        assert torch.equal(a.series[k], d.series[k]), k


def test_permuted_people_with_interventions_give_the_same_run(population):
    # every draw, the interventions' included, is keyed by uid: the node order does not matter
    model = make_model(fatality=True, environment=[Vaccination(daily_fraction=0.01),
                                                   Isolation(compliance=0.5, start=5)])
    perm = torch.randperm(3000, generator=torch.Generator().manual_seed(0))
    a = model(population, steps=30, seed=9, replicates=2)
    b = model(permute_people(population, perm), steps=30, seed=9, replicates=2)
    for k in a.series:
        assert torch.equal(a.series[k], b.series[k]), k
    assert torch.equal(a.grouped["age"]["new_infections"], b.grouped["age"]["new_infections"])
    for k, v in a.final_state.items():
        assert torch.equal(v[perm], b.final_state[k]), k


def _outcome(traj):
    return traj.series["new_infections"][1:].sum() + 0.1 * traj.series["I"].max()


ALL = ["transmission.beta_household", "transmission.beta_school", "transmission.beta_workplace",
       "transmission.beta_community", "seir.exposed_period", "seir.infectious_period", "seir.susceptibility",
       "seir.initial_infected_fraction", "seir.fatality", "infectiousness.relative"]


@pytest.mark.parametrize("surrogate", ["straight_through", "gumbel"])
def test_surrogate_gradients_reach_every_epidemic_parameter(population, surrogate):
    model = make_model(fatality=True, learnable=ALL, surrogate=surrogate)
    traj = model(population, steps=30, seed=0, replicates=2)
    (_outcome(traj) + traj.series["D"][-1].sum()).backward()
    for name in ALL:
        g = model.params.raw(name).grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name


def test_expected_mode_gradients_match_central_finite_differences(tiny_population):
    """Float64 mean field: d outcome / d theta by autograd equals central differences (step 1e-6 relative)
    to 1e-5 relative in every element of every epidemic parameter."""
    model = make_model(fatality=True, learnable=ALL, mode="expected").double()
    graph = model.prepare(tiny_population)

    def f():
        traj = model(graph, steps=30)
        return _outcome(traj) + 10 * traj.series["D"][-1].sum()

    f().backward()
    for name in ALL:
        p = model.params.raw(name)
        flat, grad = p.data.view(-1), p.grad.view(-1)
        for i in range(flat.numel()):
            h = 1e-6 * max(1.0, abs(float(flat[i])))
            with torch.no_grad():
                flat[i] += h
                up = f()
                flat[i] -= 2 * h
                down = f()
                flat[i] += h
            fd = float(up - down) / (2 * h)
            assert math.isclose(float(grad[i]), fd, rel_tol=1e-5, abs_tol=1e-6), (name, i, float(grad[i]), fd)


@pytest.mark.parametrize("surrogate, temperature, low, high", [
    ("gumbel", 0.1, 0.7, 1.4),
    ("straight_through", 0.5, 0.5, 2.0),
])
def test_surrogate_gradient_agrees_with_finite_difference_of_the_mean(population, surrogate, temperature, low, high):
    """Sign and size of the surrogate gradient of mean infections over a 10-step unroll against central
    finite differences of the mean over 16 replicates with common random numbers.  Bands: measured ratios
    were 1.02 (gumbel, tau=0.1) and 1.47 (straight-through); both estimators are biased and the bias grows
    with the horizon (lpm_graph/core/sampling.py)."""
    name = "transmission.beta_community"
    model = make_model(learnable=[name], surrogate=surrogate, temperature=temperature)
    R, steps = 16, 10

    def mean_infections():
        return model(population, steps=steps, seed=0, replicates=R).series["new_infections"][1:].sum() / R

    mean_infections().backward()
    grad = float(model.params.raw(name).grad)
    h = 0.05
    with torch.no_grad():
        p = model.params.raw(name)
        p += h
        up = mean_infections()
        p -= 2 * h
        down = mean_infections()
        p += h
    fd = float(up - down) / (2 * h)
    assert fd > 0 and grad > 0
    assert low < grad / fd < high, (grad, fd)


def test_compiled_kernel_matches_the_eager_kernel(tiny_population):
    """``compile=True`` fuses seir_update; the same draws give the same hard events (up to a uniform within
    rounding of its probability) and gradients equal to float32 round-off."""
    runs = []
    for compiled in (False, True):
        model = make_model(learnable=["transmission.beta_community", "seir.susceptibility"], compile=compiled,
                           params={"transmission": {"beta_household": 1.0, "beta_community": 0.8}})
        traj = model(tiny_population, steps=15, seed=4, replicates=2)
        (traj.series["new_infections"].sum() + traj.grouped["age"]["new_infections"][:, 3].sum()).backward()
        runs.append((traj, [p.grad.clone() for p in model.parameters()]))
    (a, ga), (b, gb) = runs
    n = tiny_population["person"].num_nodes
    assert a.series["S"][-1].min() < 0.9 * n  # an epidemic happened
    for name in a.series:
        assert torch.allclose(a.series[name], b.series[name], atol=0.002 * n, rtol=0), name
    for x, y in zip(ga, gb):
        assert torch.isfinite(y).all() and torch.allclose(x, y, rtol=1e-3, atol=1e-3 * float(x.abs().max()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_matches_cpu_and_has_gradients(population):
    names = ["transmission.beta_household", "transmission.beta_community", "seir.infectious_period"]
    cpu = make_model(learnable=names, environment=[Vaccination(daily_fraction=0.01)]).double()
    gpu = make_model(learnable=names, environment=[Vaccination(daily_fraction=0.01)]).double().to("cuda")
    a = cpu(population, steps=20, seed=5, replicates=2)
    b = gpu(gpu.prepare(population).to("cuda"), steps=20, seed=5, replicates=2)
    # identical random numbers on both devices; sums may round differently, so a uniform within rounding
    # of its probability may fire on one device only: compare to a few people
    assert torch.allclose(a.series["I"], b.series["I"].cpu(), atol=2.0)
    assert torch.allclose(a.series["V"], b.series["V"].cpu(), atol=2.0)
    _outcome(b).backward()
    for n in names:
        g = gpu.params.raw(n).grad
        assert g is not None and g.is_cuda and torch.isfinite(g).all() and g.abs().sum() > 0, n
