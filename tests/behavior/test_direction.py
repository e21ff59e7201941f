"""Direction of effect: more staying home, fewer school and work infections and a larger household share.

Infections are attributed to venue types in expectation: a probe after the transmission splits each
person's force of infection into its venue types (the force is linear in the contact intensities, so the
parts sum to it) and emits ``S_i * lambda_{i,type}``, each person's hazard from that type.  Scenarios run on
common random numbers (the decisions draw none), and each claim is a paired difference over replicates
beyond three standard errors of its mean.
"""
from __future__ import annotations

import math

import torch

from lpm_graph.behavior import FixedDecisions
from lpm_graph.core import Model, Process
from lpm_graph.core.observe import Observable
from lpm_graph.core.process import Output
from lpm_graph.core.state import EventSpec, Read
from lpm_graph.models.epidemic import SEIR, Infectiousness, VenueTransmission

VENUES = ("household", "school", "workplace", "community")
BETAS = {"beta_household": 0.4, "beta_school": 0.3, "beta_workplace": 0.3, "beta_community": 0.2}
AGE = {"age": {"node_type": "person", "attribute": "age", "bins": [0, 10, 20, 30, 40, 50, 60, 70, 80]}}


class HazardByVenue(Process):
    """Emits ``person.hazard_<type>``: the susceptible's force of infection from each venue type."""

    role = "interaction"
    default_name = "probe"

    def __init__(self, transmission: VenueTransmission):
        super().__init__()
        self.transmission = [transmission]  # not a submodule: its parameters stay the model's

    def reads(self):
        return ["person.S", "person.force_of_infection", *self.transmission[0].reads()[:1],
                *(Read(k, optional=True, default=0.0) for k in self.transmission[0].decision_keys)]

    def event_specs(self):
        return [EventSpec("person", f"hazard_{vt}") for vt in (*VENUES, "all")]

    def observables(self):
        return [Observable(f"hazard_{vt}", f"person.hazard_{vt}", "sum") for vt in (*VENUES, "all")]

    def forward(self, ctx, state, fields):
        tr = self.transmission[0]
        out = {}
        for vt in VENUES:
            params = {k: (v if k == f"{tr.name}.beta_{vt}" else v * 0) if k.startswith(f"{tr.name}.beta_") else v
                      for k, v in ctx.params.items()}
            lam = tr(ctx.at(ctx.t, params), state, fields).fields[tr.target]
            out[f"person.hazard_{vt}"] = state["person.S"] * lam
        out["person.hazard_all"] = state["person.S"] * fields["person.force_of_infection"]
        return Output(events=out)


def _model(stays_home: float, mode: str = "stochastic") -> Model:
    tr = VenueTransmission(venue_types=list(VENUES))
    return Model({"infectiousness": Infectiousness(grouping=None), "transmission": tr,
                  "probe": HazardByVenue(tr), "seir": SEIR(grouping=None)},
                 behavior={"fixed": FixedDecisions({"stays_home": stays_home}, grouping=None)},
                 params={"transmission": BETAS, "seir": {"exposed_period": 3.0, "infectious_period": 5.0,
                                                          "susceptibility": 1.0, "initial_infected_fraction": 0.0,
                                                          "initial_infected": 10}},
                 groupings=AGE, mode=mode)


def _measures(traj):
    total = {vt: traj.series[f"hazard_{vt}"][1:].sum(0).double() for vt in VENUES}
    every = sum(total.values())
    return {"infections": traj.series["new_infections"][1:].sum(0).double(),
            "school_work": total["school"] + total["workplace"],
            "household_share": total["household"] / every}


def _paired(a, b):
    d = b - a
    return float(d.mean()), float(d.std()) / math.sqrt(d.numel())


def test_staying_home_moves_infections_from_school_and_work_to_the_household(population):
    R = 12
    with torch.no_grad():
        base = _measures(_model(0.0)(population, steps=60, seed=5, replicates=R))
        home = _measures(_model(0.6)(population, steps=60, seed=5, replicates=R))
    assert float(base["infections"].min()) > 100  # every replicate takes off
    diff, se = _paired(base["infections"], home["infections"])
    assert diff + 3 * se < 0, (diff, se)
    diff, se = _paired(base["school_work"], home["school_work"])
    assert diff + 3 * se < 0, (diff, se)
    diff, se = _paired(base["household_share"], home["household_share"])
    assert diff - 3 * se > 0, (diff, se)


def test_the_mean_field_agrees_and_the_probe_splits_the_whole_force(population):
    with torch.no_grad():
        runs = {h: _model(h, "expected")(population, steps=40, seed=0) for h in (0.0, 0.3, 0.6)}
    for traj in runs.values():
        parts = sum(traj.series[f"hazard_{vt}"] for vt in VENUES)
        torch.testing.assert_close(parts, traj.series["hazard_all"], rtol=1e-4, atol=1e-3)
    m = {h: _measures(t) for h, t in runs.items()}
    assert float(m[0.0]["infections"]) > float(m[0.3]["infections"]) > float(m[0.6]["infections"])
    assert float(m[0.0]["school_work"]) > float(m[0.3]["school_work"]) > float(m[0.6]["school_work"])
    assert float(m[0.0]["household_share"]) < float(m[0.3]["household_share"]) < float(m[0.6]["household_share"])
