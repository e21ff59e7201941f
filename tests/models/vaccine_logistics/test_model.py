"""model=vaccine_logistics: the composition, dose accounting, vaccination by the doses given, closures."""
from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate

import lpm_graph.models.vaccine_logistics as glue_package
from lpm_graph.models import epidemic, supply_chain
from lpm_graph.models.vaccine_logistics import Arrivals, DoseAllocation, DoseDemand
from tests.models.vaccine_logistics.conftest import ALLOCATION, build, compose

CLOSED = ("model.environment=[" + ALLOCATION % "proportional" + ", {_target_: lpm_graph.models.supply_chain."
          "Disruption, node_type: clinic, nodes: [0, 5, 11], start: 3, end: 25, name: closure}]")


def test_the_composition_is_the_two_packages_own_classes_not_copies():
    model = instantiate(compose().model, _convert_="all")
    kinds = {p.name: type(p) for p in model.order}
    assert kinds == {"allocation": DoseAllocation, "demand": DoseDemand, "depot": supply_chain.Stage,
                     "clinic": supply_chain.Stage, "doses": Arrivals, "vaccination": epidemic.Vaccination,
                     "person": supply_chain.Stage, "infectiousness": epidemic.Infectiousness,
                     "transmission": epidemic.VenueTransmission, "seir": epidemic.SEIR}
    # the classes are the packages' objects themselves, and the glue subclasses none of them
    assert supply_chain.Stage.__module__ == "lpm_graph.models.supply_chain.stage"
    assert epidemic.Vaccination.__module__ == "lpm_graph.models.epidemic.interventions"
    own = [getattr(glue_package, n) for n in glue_package.__all__ if isinstance(getattr(glue_package, n), type)]
    shared = (supply_chain.Stage, supply_chain.Demand, epidemic.Vaccination, epidemic.SEIR,
              epidemic.VenueTransmission, epidemic.Infectiousness)
    assert own and not any(issubclass(c, shared) for c in own)
    assert model.process("seir").fatality and model.process("person").consumes


@pytest.mark.parametrize("mode", ["expected", "stochastic"])
def test_doses_are_conserved_every_step(mode):
    """Made by the depots = in transit to clinics + in clinics' stock + administered + wasted (float64), with a
    closure piling stock up; the balance without the doses administered fails it by far."""
    model, data = build(f"model.mode={mode}", CLOSED)
    s = model(data, steps=40, seed=2, replicates=2).series
    made = s["depot_shipped"].cumsum(0)
    held = (s["clinic_in_transit"] + s["clinic_stock"] + s["person_in_transit"] + s["person_delivered"].cumsum(0)
            + s["clinic_wasted"].cumsum(0))
    assert float(made[-1].min()) > 100 and float(s["clinic_wasted"].sum()) > 0
    assert torch.allclose(made, held, rtol=0, atol=1e-9 * float(made[-1].max()))
    assert not torch.allclose(made, held - s["person_delivered"].cumsum(0), rtol=0, atol=1.0)


def test_nobody_is_vaccinated_beyond_the_doses_administered():
    # expected mode: exactly the doses administered (to float64 rounding), at every step
    model, data = build("model.mode=expected")
    s = model(data, steps=40).series
    given = s["person_delivered"].cumsum(0)
    assert float(given[-1]) > 300
    assert torch.allclose(s["V"], given, rtol=1e-10, atol=1e-9)
    # stochastic: each eligible member of a clinic drawn with doses / eligible; vaccinated minus administered is a
    # sum of centred Bernoulli draws, sd at most sqrt(doses)
    model, data = build("model.mode=stochastic")
    s = model(data, steps=40, seed=3, replicates=6).series
    given = s["person_delivered"].sum(0)
    assert ((s["V"][-1] - given).abs() < 5 * given.sqrt()).all()


def test_more_doses_mean_fewer_infections_with_common_random_numbers():
    """Supply 0.2% vs 2% of the people a day, the same random numbers: the paired difference of total infections
    exceeds 3 standard errors of its mean (measured about 10 standard errors)."""
    reps = 6
    runs = {}
    for supply in (0.002, 0.02):
        model, data = build("model.mode=stochastic", f"population.supply={supply}", double=False)
        runs[supply] = model(data, steps=80, seed=11, replicates=reps).series["S"][-1]
    diff = runs[0.02] - runs[0.002]  # more susceptible left with more doses
    se = float(diff.std()) / math.sqrt(reps)
    assert float(diff.mean()) > 3 * se, (diff.tolist(), se)


def test_a_closed_clinic_vaccinates_its_catchment_less():
    """Clinics 0, 5 and 11 closed (the supply chain's Disruption) for steps 3..24 of 30: their catchments'
    coverage falls below half of what it is with every clinic open (measured about a fifth), the open clinics'
    stays within 5%."""
    def coverage(*overrides):
        model, data = build("model.mode=expected", *overrides)
        V = model(data, steps=30).final_state["person.V"][:, 0]
        clinic = data["person"].clinic
        got = torch.zeros(data["clinic"].num_nodes, dtype=V.dtype).index_add(0, clinic, V)
        return got / data["clinic"].population.double()

    closed, open_ = coverage(CLOSED), coverage()
    shut = torch.tensor([0, 5, 11])
    others = torch.ones(closed.numel(), dtype=torch.bool)
    others[shut] = False
    ratio = closed / open_  # each clinic against itself open (districts differ in capacity)
    assert float(ratio[shut].max()) < 0.5 and float(ratio[others].min()) > 0.95, ratio.tolist()
