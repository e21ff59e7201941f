"""The decision ``person.vaccinates`` read by ``Vaccination``: acceptance of a dose offered, one step late."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.behavior import FixedDecisions
from lpm_graph.models.epidemic import SEIR, Vaccination
from tests.models.epidemic.conftest import seir_model
from tests.models.epidemic.test_interventions import ZERO_BETAS

CAMPAIGN = {"daily_fraction": 0.01, "start": 1, "end": 6}   # from step 1: step 0 reads the initial 0


def campaign_model(accept: float | None, learnable=(), **kw):
    behavior = {} if accept is None else {"fixed": FixedDecisions({"vaccinates": accept}, grouping=None)}
    return seir_model(SEIR(require_infection=False), environment=[Vaccination(**CAMPAIGN, **kw)],
                      behavior=behavior, mode="expected", learnable=list(learnable),
                      params={"transmission": ZERO_BETAS, "seir": {"initial_infected_fraction": 0.0}},
                      dtype=torch.float64)


def vaccinated(model, population, steps=7):
    return model(population, steps=steps).final_state["person.V"].sum()


def test_no_acceptance_vaccinates_nobody(population):
    assert float(vaccinated(campaign_model(0.0), population)) == 0.0
    assert float(vaccinated(campaign_model(None), population)) > 0   # the campaign does vaccinate without it


def test_half_acceptance_halves_the_uptake_of_each_day_in_the_mean_field(population):
    base = campaign_model(None)(population, steps=7).series["V"][:, 0].double()
    half = campaign_model(0.5)(population, steps=7).series["V"][:, 0].double()
    daily_base, daily_half = base.diff(), half.diff()
    assert float(daily_half[1]) > 0
    # with a budget q_g = b N a_g / e_g the offer is per unvaccinated person, so the uptake is exactly c times
    # the day's budget whatever e_g is (no group runs out at 1% a day for 5 days)
    torch.testing.assert_close(daily_half[1:6], 0.5 * daily_base[1:6])


def test_step_zero_reads_the_initial_last_decision(population):
    early = {**CAMPAIGN, "start": 0}
    model = seir_model(SEIR(require_infection=False), environment=[Vaccination(**early)],
                       behavior={"fixed": FixedDecisions({"vaccinates": 1.0}, grouping=None)}, mode="expected",
                       params={"transmission": ZERO_BETAS, "seir": {"initial_infected_fraction": 0.0}},
                      dtype=torch.float64)
    V = model(population, steps=2).series["V"][:, 0]
    assert float(V[1]) == 0.0 and float(V[2]) > 0   # the decision of step 0 is read on step 1


def test_the_gradient_in_the_decision_is_the_uptake_per_unit_acceptance(population):
    model = campaign_model(0.5, learnable=["fixed.vaccinates"])
    total = vaccinated(model, population)
    total.backward()
    [(_, p)] = list(model.named_parameters())
    grad = float(p.grad)
    assert grad != 0.0
    # uptake is linear in c with a budget that is an offer per unvaccinated person: d total / d c = total / c
    assert grad == pytest.approx(float(total.detach()) / 0.5, rel=1e-9)


def test_gradient_matches_finite_differences(population):
    def total(c: float) -> float:
        return float(vaccinated(campaign_model(c), population))
    model = campaign_model(0.3, learnable=["fixed.vaccinates"])
    vaccinated(model, population).backward()
    [(_, p)] = list(model.named_parameters())
    h = 1e-4
    assert float(p.grad) == pytest.approx((total(0.3 + h) - total(0.3 - h)) / (2 * h), rel=1e-6)


def test_accepts_must_name_a_person_state():
    from lpm_graph.errors import ConfigError
    with pytest.raises(ConfigError, match=r"Vaccination.accepts must name a person state"):
        Vaccination(daily_fraction=0.01, accepts="vaccinates")
