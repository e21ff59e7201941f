"""Interventions: closures, vaccination, isolation — their factors against their formulas, windows, budgets."""
from __future__ import annotations

import math

import pytest
import torch

from lpm_graph.core import Model, Output, Process
from lpm_graph.core.state import FieldSpec
from lpm_graph.errors import ConfigError
from lpm_graph.models.epidemic import SEIR, ContactTransmission, Infectiousness, Isolation, Vaccination, VenueClosure
from tests.models.epidemic.conftest import (ROLE, binomial_se, leaves_infected, pairs, pairs_model, seir_model,
                                            step_context)

ZERO_BETAS = {"beta_household": 0.0, "beta_school": 0.0, "beta_workplace": 0.0, "beta_community": 0.0}
# one-leaf stars: 20,000 leaves x 4 replicates; a proportion near 0.25 has standard error 0.0015
N_PAIRS, R = 20_000, 4


def test_vaccination_gives_no_doses_to_the_dead(population):
    # Everyone infectious, certain death on removal, removal in one step: by step 2 everyone is dead.
    # A campaign starting then must not vaccinate anybody.
    campaign = Vaccination(daily_fraction=0.5, start=2, end=6)
    model = seir_model(SEIR(fatality=True), environment=[campaign],
                       params={"seir": {"infectious_period": 1.0, "fatality": 1.0, "initial_infected_fraction": 1.0}})
    traj = model(population, steps=5, seed=0, replicates=2)
    assert torch.equal(traj.series["D"][1], torch.full((2,), 3000.0))
    assert traj.series["V"][-1].eq(0).all()


# -- each factor against its formula -------------------------------------------------------------------------


def _check_leaf_probability(make, p: float, stochastic_p: float | None = None) -> None:
    """The fraction of leaves infected in step 0: exactly ``p`` in the float64 mean field; within 5 binomial
    standard errors of ``stochastic_p`` (default ``p``) over 20,000 leaves x 4 replicates.  The callers' values
    are exact in float32, so the mean field reproduces the formula to float64 rounding."""
    data = pairs(N_PAIRS)
    expected = make("expected").double()(data, steps=1)
    assert abs(float(leaves_infected(expected)) - p) < 1e-12
    q = p if stochastic_p is None else stochastic_p
    traj = make("stochastic")(data, steps=1, seed=3, replicates=R)
    assert abs(float(leaves_infected(traj).mean()) - q) < 5 * binomial_se(q, N_PAIRS * R)


@pytest.mark.parametrize("factor", [0.25, 0.5])
def test_closure_multiplies_the_contact_of_its_relation_by_its_factor(factor):
    # lambda = beta * w * f: P(infection) = 1 - exp(-beta f); a factor of two in f moves p by > 0.07
    beta = 1.25
    _check_leaf_probability(
        lambda mode: pairs_model(beta, mode=mode, environment=[VenueClosure("contact", start=0, factor=factor)]),
        1 - math.exp(-beta * factor))


def test_two_closures_of_one_relation_multiply():
    beta = 1.25
    closures = lambda: [VenueClosure("contact", start=0, factor=0.5, name="first"),  # noqa: E731
                        VenueClosure("contact", start=0, factor=0.5, name="second")]
    _check_leaf_probability(lambda mode: pairs_model(beta, mode=mode, environment=closures()),
                            1 - math.exp(-beta * 0.25))


@pytest.mark.parametrize("efficacy", [0.5, 0.75])
def test_vaccination_multiplies_susceptibility_by_one_minus_efficacy(efficacy):
    # a campaign of daily_fraction 1 vaccinates everyone in step 0, before the infection draw of that step:
    # P(infection) = 1 - exp(-(1 - efficacy) beta w)
    beta = 1.25
    _check_leaf_probability(
        lambda mode: pairs_model(beta, mode=mode, environment=[
            Vaccination(daily_fraction=1.0, efficacy=efficacy, grouping="role")]),
        1 - math.exp(-(1 - efficacy) * beta))


@pytest.mark.parametrize("compliance, effectiveness", [(0.5, 0.75), (1.0, 0.5), (0.25, 1.0)])
def test_isolation_multiplies_infectiousness_by_one_minus_effectiveness_for_compliers(compliance, effectiveness):
    # mean field: the factor is 1 - eta c, so P = 1 - exp(-beta (1 - eta c)); stochastic: a complying infector
    # (probability c) transmits with beta (1 - eta), the others with beta
    beta = 1.25
    c, eta = compliance, effectiveness
    mixture = c * (1 - math.exp(-beta * (1 - eta))) + (1 - c) * (1 - math.exp(-beta))
    _check_leaf_probability(
        lambda mode: pairs_model(beta, mode=mode, environment=[Isolation(compliance=c, effectiveness=eta)]),
        1 - math.exp(-beta * (1 - eta * c)), mixture)


def test_full_isolation_stops_transmission_from_every_infectious_person(population):
    """Compliance 1 and effectiveness 1 silence every infectious person from their first infectious day, so
    nobody but the seeds is ever infected (isolation acts on all infectious compliers, not a symptomatic
    subset); the docstring says so and no longer claims to model isolation of symptomatic cases."""
    model = seir_model(environment=[Isolation(compliance=1.0, effectiveness=1.0, start=0)],
                       params={"transmission": {"beta_household": 2.0, "beta_community": 1.0}})
    traj = model(population, steps=30, seed=1, replicates=2)
    assert traj.series["new_infections"][0].min() > 0
    assert traj.series["new_infections"][1:].sum() == 0
    baseline = seir_model(params={"transmission": {"beta_household": 2.0, "beta_community": 1.0}})
    assert baseline(population, steps=30, seed=1, replicates=2).series["new_infections"][1:].sum(0).min() > 100
    doc = " ".join(Isolation.__doc__.split())
    assert "acts on every infectious person who complies" in doc
    assert "symptomatic" not in doc.split(".")[0]


# -- windows, parameters -------------------------------------------------------------------------------------


def test_closure_window_is_half_open(tiny_population):
    model = seir_model(environment=[VenueClosure("school", start=3, end=5, factor=0.25)])
    graph = model.prepare(tiny_population)
    process = model.process("close_school")
    scales = [process(step_context(model, graph, t=t), {}, {}).fields.get("school.contact_scale", 1.0)
              for t in range(7)]
    assert [float(s) for s in scales] == [1.0, 1.0, 1.0, 0.25, 0.25, 1.0, 1.0]
    assert VenueClosure("school", start=2).active(1000) and not VenueClosure("school", start=2).active(1)


def test_closure_factor_is_a_parameter_with_the_exact_derivative():
    # leaves infected = n (1 - exp(-beta f)), so d/df = n beta exp(-beta f), exactly, in the float64 mean field
    beta, f, n = 1.25, 0.375, 500
    model = Model({"infectiousness": Infectiousness(grouping=None), "contact": ContactTransmission(),
                   "seir": SEIR(grouping="role")}, environment=[VenueClosure("contact", start=0)],
                  params={"contact": {"beta": beta}, "close_contact": {"factor": f},
                          "seir": {"exposed_period": 3.0, "infectious_period": 5.0, "susceptibility": 1.0,
                                   "initial_infected_fraction": [0.0, 1.0]}},
                  groupings=ROLE, mode="expected", learnable=["close_contact.factor"]).double()
    assert "close_contact.factor" in model.params and float(model.params["close_contact.factor"].detach()) == f
    traj = model(pairs(n), steps=1)
    infected = traj.group("new_infections", "role", "leaf")[1].sum()
    infected.backward()
    assert float(infected.detach()) == pytest.approx(n * (1 - math.exp(-beta * f)), rel=1e-12)
    assert float(model.params.raw("close_contact.factor").grad) == pytest.approx(n * beta * math.exp(-beta * f),
                                                                                 rel=1e-12)


@pytest.mark.parametrize("make, match", [
    (lambda: VenueClosure("school", start=0, factor=1.5), r"VenueClosure\(school\).factor must be a probability"),
    (lambda: VenueClosure("school", start=5, end=2), "needs integer 0 <= start <= end"),
    (lambda: VenueClosure("school", start=-1), "needs integer 0 <= start <= end"),
    (lambda: Vaccination(daily_fraction=1.5), "Vaccination.daily_fraction must be a probability"),
    (lambda: Vaccination(0.01, allocation=[0, 0]), "positive sum"),
    (lambda: Vaccination(0.01, allocation="shares"), "a list of shares, 'logits' or null"),
    (lambda: Vaccination(0.01, efficacy=-0.1), "Vaccination.efficacy must be a probability"),
    (lambda: Isolation(compliance=2.0), "Isolation.compliance must be a probability"),
    (lambda: Isolation(effectiveness=-1.0), "Isolation.effectiveness must be a probability"),
    (lambda: Vaccination(0.01, allocation=[1] * 9, priority=[8]), "either allocation or priority"),
    (lambda: Vaccination(0.01, priority=[8, 8]), "distinct group indices"),
    (lambda: Vaccination(0.01, priority=[]), "distinct group indices"),
    (lambda: Vaccination(), "either daily_fraction .* or doses"),
    (lambda: Vaccination(0.01, doses="person.doses"), "either daily_fraction .* or doses"),
    (lambda: Vaccination(doses="doses"), "must name a person field"),
    (lambda: Vaccination(doses="person.doses", allocation="logits"), "no allocation, priority or spill_over"),
])
def test_bad_interventions_are_refused(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


# -- vaccination campaigns -----------------------------------------------------------------------------------


def no_transmission_model(environment, mode="stochastic", **kwargs):
    # nobody infected on purpose: only the campaign moves anyone
    return seir_model(SEIR(require_infection=False), environment=environment, mode=mode,
                      params={"transmission": ZERO_BETAS, "seir": {"initial_infected_fraction": 0.0}}, **kwargs)


def _per_group(graph, V):
    return torch.zeros(9, V.size(1), dtype=V.dtype).index_add(0, graph.group_index("age"), V)


def test_vaccination_delivers_the_daily_budget_by_allocation(population):
    allocation = [0, 0, 0, 0, 0, 0, 1, 1, 2]  # 60-69: 1/4, 70-79: 1/4, 80+: 1/2
    model = no_transmission_model([Vaccination(daily_fraction=0.002, allocation=allocation, start=0, end=5)])
    graph = model.prepare(population)
    traj = model(graph, steps=8, seed=1, replicates=4)
    per_group = _per_group(graph, traj.final_state["person.V"])
    assert per_group[:6].sum() == 0
    # 5 days x 6 doses a day = 30 expected doses, thinned per group: about Poisson, sd sqrt(30); 5 sd
    assert ((per_group.sum(0) - 30).abs() < 5 * math.sqrt(30)).all()
    # in the mean field each group gets exactly its share of the budget
    mean = no_transmission_model([Vaccination(daily_fraction=0.002, allocation=allocation, start=0, end=5)],
                                 mode="expected").double()
    V = mean(graph, steps=8).final_state["person.V"].double()
    assert torch.allclose(_per_group(graph, V)[6:, 0], torch.tensor([7.5, 7.5, 15.0], dtype=torch.float64))
    # nobody is vaccinated after the campaign ends: counts stop growing at step 5
    assert torch.equal(traj.series["V"][5], traj.series["V"][8]) and (traj.series["V"][5] > traj.series["V"][4]).any()


def test_vaccination_lowers_infections_with_common_random_numbers(population):
    base = seir_model()
    vacc = seir_model(environment=[Vaccination(daily_fraction=0.02, efficacy=0.9)])
    a = base(population, steps=60, seed=2, replicates=4).series["new_infections"][1:].sum(0)
    b = vacc(population, steps=60, seed=2, replicates=4).series["new_infections"][1:].sum(0)
    assert (b < a).all()


def test_learnable_allocation_gets_a_gradient(tiny_population):
    # one logit per age group (a single logit would only shift them all: the softmax ignores it)
    model = seir_model(SEIR(fatality=True), environment=[Vaccination(0.01, allocation="logits")],
                       params={"seir": {"fatality": [0.0, 0, 0, 0, 0.01, 0.02, 0.05, 0.1, 0.2]},
                               "vaccination": {"allocation": [0.0] * 9}},
                       learnable=["vaccination.allocation"], mode="expected").double()
    traj = model(tiny_population, steps=30)
    traj.series["D"][-1].sum().backward()
    g = model.params.raw("vaccination.allocation").grad
    assert g.shape == (9,) and torch.isfinite(g).all() and g.abs().sum() > 0


def test_isolation_with_zero_compliance_changes_nothing_and_full_compliance_helps(population):
    base = seir_model()
    none = seir_model(environment=[Isolation(compliance=0.0)])
    full = seir_model(environment=[Isolation(compliance=1.0, effectiveness=0.9)])
    a = base(population, steps=50, seed=3, replicates=3)
    b = none(population, steps=50, seed=3, replicates=3)
    c = full(population, steps=50, seed=3, replicates=3)
    assert torch.equal(a.series["I"], b.series["I"])
    assert (c.series["new_infections"][1:].sum(0) < a.series["new_infections"][1:].sum(0)).all()


def test_priority_vaccinates_groups_in_order_and_spills_over(population):
    """Oldest first: the daily budget fills 80+, then 70-79, then 60-69; nobody else is vaccinated."""
    model = no_transmission_model([Vaccination(daily_fraction=0.02, priority=[8, 7, 6])], mode="expected").double()
    graph = model.prepare(population)
    sizes = torch.bincount(graph.group_index("age"), minlength=9).double()
    budget = 0.02 * graph.num_nodes["person"]
    for days in (1, 3, 8, 60):
        V = model(graph, steps=days).final_state["person.V"]
        per_group = _per_group(graph, V)[:, 0]
        left = days * budget
        expected = torch.zeros(9, dtype=torch.float64)
        for g in (8, 7, 6):
            expected[g] = min(sizes[g], left)
            left -= expected[g]
        assert torch.allclose(per_group, expected, atol=1e-6), (days, per_group, expected)


def test_priority_beyond_the_groups_is_refused(tiny_population):
    model = no_transmission_model([Vaccination(0.01, priority=[9, 8])])
    with pytest.raises(ConfigError, match=r"names group 9 but grouping 'age' has 9 groups \(0..8\)"):
        model(tiny_population, steps=1)


def test_spill_over_passes_unusable_doses_on_by_share(population):
    """Allocation 1:1:2 over 60-69, 70-79, 80+ with a budget larger than the 80+ group: without spill-over
    the surplus of 80+ is lost; with it every dose is used, and the surplus goes 1:1 to the other two."""
    allocation = [0, 0, 0, 0, 0, 0, 1, 1, 2]
    kw = dict(daily_fraction=0.1, allocation=allocation)
    graph = no_transmission_model([]).double().prepare(population)
    sizes = torch.bincount(graph.group_index("age"), minlength=9).double()
    budget = 0.1 * graph.num_nodes["person"]
    assert sizes[8] < budget / 2 and budget / 2 < min(sizes[6], sizes[7])  # 80+ cannot use its half of day 1
    per_group = {}
    for spill in (False, True):
        model = no_transmission_model([Vaccination(**kw, spill_over=spill)], mode="expected").double()
        V = model(graph, steps=1).final_state["person.V"]
        per_group[spill] = _per_group(graph, V)[:, 0]
    wasted = budget / 2 - sizes[8]
    quarter = torch.tensor(budget / 4, dtype=torch.float64)
    assert torch.allclose(per_group[False][6:], torch.stack([quarter, quarter, sizes[8]]))
    assert torch.allclose(per_group[True][6:], torch.stack([quarter + wasted / 2, quarter + wasted / 2, sizes[8]]))
    assert float(per_group[True].sum()) == pytest.approx(budget)
    assert (per_group[True][:6] == 0).all()


def test_closing_schools_lowers_school_age_infections():
    from lpm_graph.data import generate_population

    pop = generate_population(6000, seed=3)
    params = {"transmission": {"beta_household": 0.2, "beta_community": 0.1, "beta_school": 0.8}}
    base = seir_model(params=params)
    closed = seir_model(environment=[VenueClosure("school", start=0, end=None)], params=params)
    a = base(pop, steps=80, seed=1, replicates=4).grouped["age"]["new_infections"][:, 1].sum(0)
    b = closed(pop, steps=80, seed=1, replicates=4).grouped["age"]["new_infections"][:, 1].sum(0)
    # age group 1 is 10-19: with schools the dominant venue, closing them must cut
    # their infections in every replicate (paired by common random numbers)
    assert (b < a).all()


class _GivenDoses(Process):
    """Writes ``person.doses``: ``amount`` doses to every person of age group ``group`` on each step."""

    role = "environment"

    def __init__(self, group: int, amount: float):
        super().__init__("given_doses")
        self.group, self.amount = group, amount

    def field_specs(self):
        return [FieldSpec("person", "doses")]

    def forward(self, ctx, state, fields):
        chosen = (ctx.graph.group_index("age") == self.group).to(ctx.dtype).unsqueeze(1)
        return Output(fields={"person.doses": self.amount * chosen.expand(-1, ctx.replicates)})


def test_vaccination_with_doses_from_a_field_vaccinates_exactly_those_doses_in_the_mean_field(population):
    # 0.25 doses per person of the 80+ group a day: a quarter of them a day, until none is left unvaccinated
    model = no_transmission_model([_GivenDoses(group=8, amount=0.25), Vaccination(doses="person.doses")],
                                  mode="expected").double()
    graph = model.prepare(population)
    size = float((graph.group_index("age") == 8).sum())
    V = [_per_group(graph, model(graph, steps=t).final_state["person.V"].double())[:, 0] for t in (1, 2, 6)]
    assert V[0][:8].sum() == 0 and float(V[0][8]) == pytest.approx(0.25 * size, rel=1e-12)
    assert float(V[1][8]) == pytest.approx(0.5 * size, rel=1e-12)
    assert float(V[2][8]) == pytest.approx(size, rel=1e-12)  # capped at the eligible: nobody twice
    # stochastic: each eligible member drawn with d_g / e_g, about a quarter of the group on day one
    traj = no_transmission_model([_GivenDoses(group=8, amount=0.25), Vaccination(doses="person.doses")])(
        graph, steps=1, seed=4, replicates=8)
    got = _per_group(graph, traj.final_state["person.V"])[8]
    sd = math.sqrt(size * 0.25 * 0.75)
    assert ((got - 0.25 * size).abs() < 5 * sd).all() and _per_group(graph, traj.final_state["person.V"])[:8].sum() == 0
