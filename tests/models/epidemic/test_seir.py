"""SEIR(D): state, transitions and their rates, seeding."""
from __future__ import annotations

import math

import pytest
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


# -- seeding ------------------------------------------------------------------------------------------------


def test_exact_count_seeding_starts_every_replicate_with_that_many(population):
    for k in (1, 100):
        model = seir_model(params={"seir": {"initial_infected": k, "initial_infected_fraction": 0.0}})
        traj = model(population, steps=1, seed=3, replicates=16)
        assert torch.equal(traj.series["I"][0], torch.full((16,), float(k)))
        assert torch.equal(traj.series["new_infections"][0], torch.full((16,), float(k)))


def test_exact_count_seeds_are_uniform_and_layout_invariant(population):
    # 3000 people, 5 seeds in each of 1200 replicates: each person is chosen Binomial(1200, 5/3000) times.
    # Pearson's statistic over the 3000 people has mean ~ 2999 and sd ~ sqrt(2 * 2999) ~ 77; allow 5 sd.
    model = seir_model(params={"seir": {"initial_infected": 5, "initial_infected_fraction": 0.0}})
    graph = model.prepare(population)
    from lpm_graph.core.process import StepContext

    ctx = StepContext(t=0, graph=graph, params=model.params.at(0), sampler=model.sampler, dt=1.0, replicates=1200,
                      dtype=torch.float32, seed=4)
    state, _ = model.initial_state(ctx)
    counts = state["person.I"].sum(1).double()
    expected = 1200 * 5 / 3000
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert abs(chi2 - 2999) < 5 * (2 * 2999) ** 0.5
    # the chosen people depend on uid only: a permuted graph picks the same uids
    perm = torch.randperm(3000, generator=torch.Generator().manual_seed(0))
    from tests.helpers import permute_people

    permuted = model.prepare(permute_people(population, perm))
    ctx2 = StepContext(t=0, graph=permuted, params=model.params.at(0), sampler=model.sampler, dt=1.0,
                       replicates=1200, dtype=torch.float32, seed=4)
    state2, _ = model.initial_state(ctx2)
    assert torch.equal(state2["person.I"], state["person.I"][perm])


def test_expected_mode_seeds_the_mean_of_count_and_fraction(population):
    model = seir_model(mode="expected", params={"seir": {"initial_infected": 30, "initial_infected_fraction": 0.1}})
    traj = model(population, steps=1, seed=0)
    # P(seeded) = 1 - (1 - 30/3000)(1 - 0.1) per person
    assert abs(float(traj.series["I"][0]) - 3000 * (1 - 0.99 * 0.9)) < 1e-2


def test_more_seeds_than_people_is_refused(population):
    from lpm_graph.errors import ConfigError

    model = seir_model(params={"seir": {"initial_infected": 3001}})
    import pytest

    with pytest.raises(ConfigError, match="initial_infected = 3001 but the population has 3000"):
        model(population, steps=1)


# -- SIR, SIS, fixed infectious period ----------------------------------------------------------------------


def _final_size(r0: float) -> float:
    z = 0.5
    for _ in range(200):
        z = 1 - math.exp(-r0 * z)
    return z


def test_sir_final_size_follows_r0_equal_beta_times_infectious_period():
    # Well mixed, frequency dependent: R0 = beta * T_I, and the final size solves z = 1 - exp(-R0 z).
    # The mean field reaches it up to the seeds (0.1%); 8 stochastic replicates of 20,000 people fall within
    # 5 standard errors of it (per-replicate sd of the final size ~ 0.01 at this size, measured with margin).
    from lpm_graph.models.epidemic import SIR
    from tests.models.epidemic.conftest import mixed_model, well_mixed

    data = well_mixed(20_000)
    for beta, period in ((0.4, 5.0), (0.5, 3.0)):
        r0 = beta * period
        params = dict(infectious_period=period, susceptibility=1.0, initial_infected_fraction=0.001)
        traj = mixed_model(SIR(grouping=None), beta, "expected", **params)(data, steps=300, seed=0)
        z = 1 - float(traj.series["S"][-1]) / 20_000
        assert abs(z - _final_size(r0)) < 2e-3
        traj = mixed_model(SIR(grouping=None), beta, **params)(data, steps=300, seed=1, replicates=8)
        z = 1 - traj.series["S"][-1].double() / 20_000
        assert abs(float(z.mean()) - _final_size(r0)) < 5 * 0.01 / 8 ** 0.5
        assert "E" not in traj.series


def test_sis_settles_at_the_endemic_equilibrium():
    # Mean field equilibrium: (1 - exp(-beta i)) (1 - i) = i / T for the prevalence i (about 1 - 1/R0).
    from lpm_graph.models.epidemic import SIS
    from tests.models.epidemic.conftest import mixed_model, well_mixed

    beta, period = 0.5, 4.0
    lo, hi = 1e-6, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if (1 - math.exp(-beta * mid)) * (1 - mid) > mid / period else (lo, mid)
    traj = mixed_model(SIS(grouping=None), beta, "expected", infectious_period=period, susceptibility=1.0,
                       initial_infected_fraction=0.01)(well_mixed(5000), steps=600, seed=0)
    assert abs(float(traj.series["I"][-1]) / 5000 - lo) < 1e-4
    assert "R" not in traj.series
    assert torch.allclose(traj.series["S"] + traj.series["I"], torch.tensor(5000.0))


def test_fixed_infectious_period_lasts_exactly_that_many_steps(population):
    for mode in ("stochastic", "expected"):
        model = _no_transmission(SEIR(initial_compartment="I", infectious_steps=4), initial_infected_fraction=1.0)
        if mode == "expected":
            model = seir_model(SEIR(initial_compartment="I", infectious_steps=4), mode="expected",
                               params={"transmission": {k: 0.0 for k in ("beta_household", "beta_school",
                                                                          "beta_workplace", "beta_community")},
                                       "seir": {"initial_infected_fraction": 1.0}})
        traj = model(population, steps=6, seed=0)
        assert traj.series["I"][:4].eq(3000).all() and traj.series["I"][4:].eq(0).all()
        assert traj.series["R"][4].eq(3000).all()


# -- the infection rate -------------------------------------------------------------------------------------


def test_infection_probability_in_one_step_is_one_minus_exp_of_sigma_lambda_dt():
    """P(S -> E in one step) = 1 - exp(-sigma * e * lambda * dt): each leaf of a one-leaf star meets exactly
    lambda = beta * w from its infectious infector (e = 1: no intervention).  The settings move sigma, lambda
    and dt separately; each p is checked in expected mode (exact) and stochastic mode, where 20,000 leaves x
    4 replicates give a binomial proportion whose standard error is at most 0.0018: 5 of them is < 0.009,
    while any factor of two in sigma, beta, w or dt moves p by more than 0.05."""
    from tests.models.epidemic.conftest import binomial_se, leaves_infected, pairs, pairs_model

    n, R = 20_000, 4
    # values exact in float32, so that the float64 mean field matches the formula to rounding
    for beta, weight, sigma, dt in ((1.25, 1.0, 0.5, 0.5), (0.375, 2.5, 1.0, 1.0), (0.3125, 1.0, 0.75, 1.0)):
        p = 1 - math.exp(-sigma * beta * weight * dt)
        data = pairs(n, weight)
        expected = pairs_model(beta, mode="expected", dt=dt, susceptibility=[sigma, 1.0]).double()(data, steps=1)
        assert abs(float(leaves_infected(expected)) - p) < 1e-12, (beta, weight, sigma, dt)
        traj = pairs_model(beta, dt=dt, susceptibility=[sigma, 1.0])(data, steps=1, seed=1, replicates=R)
        assert abs(float(leaves_infected(traj).mean()) - p) < 5 * binomial_se(p, n * R), (beta, weight, sigma, dt)
        # nobody else is infected: the infectors start in I, the leaves have no other contact
        assert torch.equal(traj.series["new_infections"][1], traj.group("new_infections", "role", "leaf")[1])


def test_infections_enter_e_and_onsets_enter_i_from_the_start_of_step_compartments():
    # the leaves infected in step 0 are in E after it and none of them in I: onsets are drawn from the
    # compartments at the start of the step, not from the E the same step's infections just entered
    from tests.models.epidemic.conftest import pairs, pairs_model

    n = 2000
    traj = pairs_model(2.0, exposed_period=1.0)(pairs(n), steps=1, seed=0, replicates=2)
    infected = traj.group("new_infections", "role", "leaf")[1]
    assert (infected > 0.5 * n).all()
    leaves = slice(n, 2 * n)
    assert traj.final_state["person.I"][leaves].sum() == 0
    assert torch.equal(traj.final_state["person.E"][leaves].sum(0), infected)
    assert torch.equal(traj.series["E"][1], infected)


# -- seeding, fatality ---------------------------------------------------------------------------------------


def test_initial_infected_fraction_is_the_seeding_frequency_per_group():
    """Each person starts infected with the fraction of their group: per role [0.02, 0.3] on 20,000 people per
    role x 8 replicates; 5 binomial standard errors (0.0018 and 0.0057), far below a factor of two."""
    from tests.models.epidemic.conftest import binomial_se, pairs, pairs_model

    n, R = 20_000, 8
    traj = pairs_model(0.0, initial_infected_fraction=[0.02, 0.3])(pairs(n), steps=1, seed=2, replicates=R)
    for label, f in (("leaf", 0.02), ("infector", 0.3)):
        seeded = traj.group("new_infections", "role", label)[0].double() / n
        assert abs(float(seeded.mean()) - f) < 5 * binomial_se(f, n * R), label
    assert torch.equal(traj.series["I"][0], traj.series["new_infections"][0])


def test_death_among_the_removed_has_probability_fatality(population):
    """Everyone infectious, removal certain in the first step (T_I = dt): D / N is a binomial proportion of
    3000 x 8 draws with mean mu; 5 standard errors (0.013 at mu = 0.2) are far below a factor of two."""
    from tests.models.epidemic.conftest import binomial_se

    for mu in (0.2, 0.05):
        model = _no_transmission(SEIR(fatality=True, initial_compartment="I"), infectious_period=1.0, fatality=mu,
                                 initial_infected_fraction=1.0)
        traj = model(population, steps=3, seed=4, replicates=8)
        assert torch.equal(traj.series["R"][1] + traj.series["D"][1], torch.full((8,), 3000.0))
        dead = traj.series["D"][-1].double() / 3000
        assert abs(float(dead.mean()) - mu) < 5 * binomial_se(mu, 3000 * 8), mu
        assert torch.equal(traj.series["new_deaths"][1:].sum(0), traj.series["D"][-1])
        expected = seir_model(SEIR(fatality=True), mode="expected", params={
            "transmission": {k: 0.0 for k in ("beta_household", "beta_school", "beta_workplace", "beta_community")},
            "seir": {"infectious_period": 1.0, "fatality": mu, "initial_infected_fraction": 1.0}})(population, steps=2)
        assert abs(float(expected.series["D"][-1]) - mu * 3000) < 1e-2


def test_without_transmission_only_the_seeds_are_ever_infected(population):
    model = _no_transmission(SEIR(), infectious_period=3.0)
    traj = model(population, steps=40, seed=2, replicates=2)
    seeds = traj.series["new_infections"][0]
    assert traj.series["new_infections"][1:].sum() == 0
    assert torch.equal(traj.series["S"][-1], 3000 - seeds)
    # Binomial(3000, 0.01): sd 5.4 per replicate
    assert (seeds - 30).abs().max() < 5 * 5.45


def test_per_group_susceptibility_is_applied_to_each_group():
    # half the people are 5, half 50; susceptibility [0, 1] by the groups [0, 18), [18, inf)
    from tests.models.epidemic.conftest import well_mixed
    from lpm_graph.core import Model
    from lpm_graph.models.epidemic import Infectiousness, VenueTransmission

    n = 8000
    data = well_mixed(n)
    data["person"].age = torch.where(torch.arange(n) % 2 == 0, 5.0, 50.0)
    model = Model({"infectiousness": Infectiousness(grouping=None),
                   "transmission": VenueTransmission(venue_types=["community"]), "seir": SEIR()},
                  params={"transmission": {"beta_community": 1.0},
                          "seir": {"exposed_period": 2.0, "infectious_period": 3.0, "susceptibility": [0.0, 1.0],
                                   "initial_infected_fraction": 0.01}},
                  groupings={"age": {"bins": [0, 18]}})
    traj = model(data, steps=40, seed=5)
    by_age = traj.grouped["age"]["new_infections"][1:].sum(0)[:, 0]
    seeds = traj.grouped["age"]["new_infections"][0, :, 0]
    # adults: R0 = beta * T_I * (their share of contacts) = 1.5, so infections grow well past the ~40 seeds
    assert by_age[0] == 0 and by_age[1] > 10 * seeds[1], (by_age, seeds)
    assert traj.labels["age"] == ["0-18", "18+"]


def test_bad_seir_settings_are_refused():
    import pytest

    from lpm_graph.errors import ConfigError
    from lpm_graph.models.epidemic import SIR

    with pytest.raises(ConfigError, match="SEIR.initial_compartment must be E or I, got 'R'"):
        SEIR(initial_compartment="R")
    with pytest.raises(ConfigError, match="SIR.initial_compartment must be I, got 'E'"):
        SIR(initial_compartment="E")
    with pytest.raises(ConfigError, match="infectious_steps must be a positive integer"):
        SEIR(infectious_steps=0)
    assert SEIR(fatality=True).compartments == ("S", "E", "I", "R", "D")
    assert SIR().compartments == ("S", "I", "R")
    with pytest.raises(ConfigError, match=r"model.params.seir.fatality\[2\] must be a probability"):
        seir_model(SEIR(fatality=True), params={"seir": {"fatality": [0, 0, 1.5, 0, 0, 0, 0, 0, 0]}})
    with pytest.raises(ConfigError, match=r"model.params.seir.susceptibility is shape \[3\] but process 'seir' "
                                          r"reads it as scalar or \[9\] \(one per age group\)"):
        seir_model(params={"seir": {"susceptibility": [1.0, 1.0, 1.0]}})
    with pytest.raises(ConfigError, match="model.params.seir.exposed_period must be a finite number > 0"):
        seir_model(params={"seir": {"exposed_period": 0.0}})
    with pytest.raises(ConfigError, match="model.params.seir.initial_infected must be a whole number"):
        seir_model(params={"seir": {"initial_infected": 2.5}})


def test_a_run_without_any_initial_infection_is_refused_and_a_replicate_without_one_warned(population):
    # 3000 people with a fraction of 1e-4: about 74% of replicates start with no infection at all
    import warnings

    from lpm_graph.errors import ConfigError, SimulationWarning

    none = seir_model(params={"seir": {"initial_infected_fraction": 0.0}})
    with pytest.raises(ConfigError, match="no replicate starts with an infection.*initial_infected"):
        none(population, steps=2, replicates=4)
    seir_model(SEIR(require_infection=False), params={"seir": {"initial_infected_fraction": 0.0}})(
        population, steps=2, replicates=4)  # asked for: runs
    rare = seir_model(params={"seir": {"initial_infected_fraction": 1e-4}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traj = rare(population, steps=2, seed=0, replicates=32)
    empty = int((traj.series["I"][0] == 0).sum())
    assert 0 < empty < 32
    assert [str(w.message) for w in caught if issubclass(w.category, SimulationWarning)] == [
        f"process 'seir': {empty} of 32 replicates start without any infection and will stay so; raise "
        "model.params.seir.initial_infected_fraction, or seed exactly model.params.seir.initial_infected=<k> people "
        "per replicate"]
    # exact seeding never leaves a replicate empty
    seir_model(params={"seir": {"initial_infected_fraction": 0.0, "initial_infected": 1}})(population, steps=2,
                                                                                         replicates=32)
