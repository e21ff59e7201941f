"""Environment functions: venue closures, vaccination campaigns, isolation."""
from __future__ import annotations

import math

import pytest
import torch

from lpm_graph.data import ConfigError
from lpm_graph.dynamics import SEIR, Environment, Isolation, Vaccination, VenueClosure, VenueTransmission
from lpm_graph.model import PopulationModel
from tests.test_model import BASE_PARAMS


def test_closure_window_is_half_open():
    g = VenueClosure("school", start=3, end=5, factor=0.25)
    scales = [g(t, {}, {}, Environment())[0].scale_of("school") for t in range(7)]
    assert scales == [1.0, 1.0, 1.0, 0.25, 0.25, 1.0, 1.0]
    assert VenueClosure("school", start=2).active(1000)


def test_closures_compose_and_leave_the_input_unchanged():
    env = Environment()
    a, _ = VenueClosure("school", 0, None, 0.5)(0, {}, {}, env)
    b, _ = VenueClosure("school", 0, None, 0.5)(0, {}, {}, a)
    assert b.scale_of("school") == 0.25 and env.scale_of("school") == 1.0
    assert b.scale_of("workplace") == 1.0


def test_closure_factor_may_be_a_parameter():
    g = VenueClosure("school", 0, None, factor="school_contact")
    assert g.param_domains == {"school_contact": "probability"}
    env, _ = g(0, {}, {"school_contact": torch.tensor(0.3)}, Environment())
    assert float(env.scale_of("school")) == pytest.approx(0.3)


@pytest.mark.parametrize("make, match", [
    (lambda: VenueClosure("school", start=0, factor=1.5), "VenueClosure.factor must be a probability"),
    (lambda: VenueClosure("school", start=5, end=2), "start <= end"),
    (lambda: VenueClosure("school", start=-1), "start <= end"),
    (lambda: Vaccination(daily_fraction=1.5), "Vaccination.daily_fraction must be a probability"),
    (lambda: Vaccination(0.01, allocation=[0, 0]), "positive sum"),
    (lambda: Vaccination(0.01, efficacy=-0.1), "Vaccination.efficacy"),
    (lambda: Isolation(compliance=2.0), "Isolation.compliance"),
])
def test_bad_interventions_are_refused(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def no_transmission_model(environment, mode="stochastic", learnable=()):
    params = dict(BASE_PARAMS, beta_household=0.0, beta_school=0.0, beta_workplace=0.0, beta_community=0.0,
                  initial_infected_fraction=0.0, vaccine_logits=[0.0] * 9)
    return PopulationModel([VenueTransmission()], SEIR(), params, environment=environment, mode=mode,
                           learnable=learnable)


def test_vaccination_delivers_the_daily_budget_by_allocation(small_population):
    n = small_population["person"].num_nodes
    allocation = [0, 0, 0, 0, 0, 0, 1, 1, 2]  # 60-69: 1/4, 70-79: 1/4, 80+: 1/2
    model = no_transmission_model([Vaccination(daily_fraction=0.002, allocation=allocation, start=0, end=5)])
    traj = model(small_population, steps=8, seed=1, replicates=4)
    V = traj.final_state["V"]
    # 5 days x 6 doses/day = 30 expected doses (binomial thinning per group; 80+ has only a few people)
    groups = model.prepare(small_population).age_group
    per_group = torch.zeros(9, 4).index_add(0, groups, V)
    assert per_group[:6].sum() == 0
    total = per_group.sum(0)
    assert ((total - 30).abs() < 5 * math.sqrt(30)).all()
    # nobody is vaccinated after the campaign ends: counts stop growing at step 5
    vacc = traj.series["V"]
    assert torch.equal(vacc[5], vacc[8])


def test_vaccination_lowers_infections_with_common_random_numbers(small_population):
    base = PopulationModel([VenueTransmission()], SEIR(), BASE_PARAMS)
    vacc = PopulationModel([VenueTransmission()], SEIR(), BASE_PARAMS,
                           environment=[Vaccination(daily_fraction=0.02, efficacy=0.9)])
    a = base(small_population, steps=60, seed=2, replicates=4).series["new_infections"][1:].sum(0)
    b = vacc(small_population, steps=60, seed=2, replicates=4).series["new_infections"][1:].sum(0)
    assert (b < a).all()


def test_learnable_allocation_gets_a_gradient(tiny_population):
    model = PopulationModel([VenueTransmission()], SEIR(fatality=True),
                            dict(BASE_PARAMS, fatality=[0.0, 0, 0, 0, 0.01, 0.02, 0.05, 0.1, 0.2],
                                 vaccine_logits=[0.0] * 9),
                            environment=[Vaccination(0.01, allocation="vaccine_logits")],
                            learnable=["vaccine_logits"], mode="expected").double()
    traj = model(tiny_population, steps=30)
    traj.series["D"][-1].sum().backward()
    g = model.params["vaccine_logits"].grad
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_isolation_with_zero_compliance_changes_nothing_and_full_compliance_helps(small_population):
    base = PopulationModel([VenueTransmission()], SEIR(), BASE_PARAMS)
    none = PopulationModel([VenueTransmission()], SEIR(), BASE_PARAMS, environment=[Isolation(compliance=0.0)])
    full = PopulationModel([VenueTransmission()], SEIR(), BASE_PARAMS,
                           environment=[Isolation(compliance=1.0, effectiveness=0.9)])
    a = base(small_population, steps=50, seed=3, replicates=3)
    b = none(small_population, steps=50, seed=3, replicates=3)
    c = full(small_population, steps=50, seed=3, replicates=3)
    assert torch.equal(a.series["I"], b.series["I"])
    assert (c.series["new_infections"][1:].sum(0) < a.series["new_infections"][1:].sum(0)).all()


def test_priority_vaccinates_groups_in_order_and_spills_over(small_population):
    """Oldest first: the daily budget fills 80+, then 70-79, then 60-69; nobody else is vaccinated."""
    model = no_transmission_model([Vaccination(daily_fraction=0.02, priority=[8, 7, 6])], mode="expected").double()
    graph = model.prepare(small_population, dtype=torch.float64)
    sizes = torch.bincount(graph.age_group, minlength=9).double()
    budget = 0.02 * graph.num_people
    for days in (1, 3, 8, 60):
        V = model(graph, steps=days).final_state["V"][:, 0]
        per_group = torch.zeros(9, dtype=torch.float64).index_add(0, graph.age_group, V)
        left = days * budget
        expected = torch.zeros(9, dtype=torch.float64)
        for g in (8, 7, 6):
            expected[g] = min(sizes[g], left)
            left -= expected[g]
        assert torch.allclose(per_group, expected, atol=1e-6), (days, per_group, expected)


@pytest.mark.parametrize("make, match", [
    (lambda: Vaccination(0.01, allocation=[1] * 9, priority=[8]), "either allocation or priority"),
    (lambda: Vaccination(0.01, priority=[8, 8]), "distinct age-group indices"),
    (lambda: Vaccination(0.01, priority=[]), "distinct age-group indices"),
])
def test_bad_priority_is_refused(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_priority_beyond_the_age_groups_is_refused(tiny_population):
    model = no_transmission_model([Vaccination(0.01, priority=[9, 8])])
    with pytest.raises(ConfigError, match="names age group 9 but the model has 9 age groups"):
        model(tiny_population, steps=1)


def test_spill_over_passes_unusable_doses_on_by_share(small_population):
    """Allocation 1:1:2 over 60-69, 70-79, 80+ with a budget larger than the 80+ group: without spill-over
    the surplus of 80+ is lost; with it every dose is used, and the surplus goes 1:1 to the other two."""
    allocation = [0, 0, 0, 0, 0, 0, 1, 1, 2]
    kw = dict(daily_fraction=0.1, allocation=allocation)
    graph = no_transmission_model([]).prepare(small_population, dtype=torch.float64)
    sizes = torch.bincount(graph.age_group, minlength=9).double()
    budget = 0.1 * graph.num_people
    assert sizes[8] < budget / 2 and budget / 2 < min(sizes[6], sizes[7])  # 80+ cannot use its half of day 1
    per_group = {}
    for spill in (False, True):
        model = no_transmission_model([Vaccination(**kw, spill_over=spill)], mode="expected").double()
        V = model(graph, steps=1).final_state["V"][:, 0]
        per_group[spill] = torch.zeros(9, dtype=torch.float64).index_add(0, graph.age_group, V)
    wasted = budget / 2 - sizes[8]
    quarter = torch.tensor(budget / 4, dtype=torch.float64)
    assert torch.allclose(per_group[False][6:], torch.stack([quarter, quarter, sizes[8]]))
    assert torch.allclose(per_group[True][6:], torch.stack([quarter + wasted / 2, quarter + wasted / 2, sizes[8]]))
    assert float(per_group[True].sum()) == pytest.approx(budget)
    assert (per_group[True][:6] == 0).all()
