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


def _no_transmission(seir, **params):
    zero = {"beta_household": 0.0, "beta_school": 0.0, "beta_workplace": 0.0, "beta_community": 0.0}
    return seir_model(seir, params={"transmission": zero, "seir": params})


def _mean_time_in(traj, compartment: str) -> torch.Tensor:
    """Mean steps a seeded cohort spends in a compartment it starts in: sum_t P(still there after t steps)."""
    counts = traj.series[compartment].double()
    return (counts / counts[0]).sum(0)


def test_exposed_period_is_the_mean_time_in_E(population):
    # Everyone starts in E, nothing transmits: the time in E is geometric with p = dt / T_E, mean T_E.
    # Expected mode: sum_t (1 - p)^t over 200 steps equals 1/p = T_E to within (1-p)^200.
    for period in (3.0, 6.0):
        model = _no_transmission(SEIR(initial_compartment="E"), exposed_period=period, initial_infected_fraction=1.0)
        expected = seir_model(SEIR(initial_compartment="E"), mode="expected",
                              params={"transmission": {k: 0.0 for k in ("beta_household", "beta_school",
                                                                          "beta_workplace", "beta_community")},
                                      "seir": {"exposed_period": period, "initial_infected_fraction": 1.0}})
        traj = expected(population, steps=200, seed=0)
        assert torch.allclose(_mean_time_in(traj, "E"), torch.tensor([period], dtype=torch.float64), rtol=1e-4)
        # Stochastic: 3000 people x 8 replicates; the geometric's variance is (1 - p) / p^2, so the mean of n
        # durations has standard error sqrt((1 - p) / p^2 / n); allow 5 of them.
        traj = model(population, steps=200, seed=1, replicates=8)
        p = 1.0 / period
        se = ((1 - p) / p**2 / (3000 * 8)) ** 0.5
        assert abs(float(_mean_time_in(traj, "E").mean()) - period) < 5 * se


def test_infectious_period_is_the_mean_time_in_I(population):
    for period in (2.0, 5.0):
        model = _no_transmission(SEIR(initial_compartment="I"), infectious_period=period,
                                 initial_infected_fraction=1.0)
        traj = model(population, steps=200, seed=2, replicates=8)
        p = 1.0 / period
        se = ((1 - p) / p**2 / (3000 * 8)) ** 0.5
        assert abs(float(_mean_time_in(traj, "I").mean()) - period) < 5 * se
        # the first step's exits are a binomial fraction p (a rate off by 2 moves this by ~p)
        left = 1.0 - traj.series["I"][1].double() / traj.series["I"][0].double()
        assert abs(float(left.mean()) - p) < 5 * (p * (1 - p) / (3000 * 8)) ** 0.5


def test_a_period_shorter_than_a_step_lasts_one_step(population):
    model = _no_transmission(SEIR(initial_compartment="E"), exposed_period=0.5, initial_infected_fraction=1.0)
    traj = model(population, steps=3, seed=0)
    assert int(traj.series["E"][1]) == 0
