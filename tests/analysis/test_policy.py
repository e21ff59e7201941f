"""Vaccine allocation optimised by gradient through the simulator beats uniform allocation."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from lpm_graph.analysis.counterfactual import compare, run_scenarios
from lpm_graph.analysis.policy import optimise_allocation, plot_policies, population_share_logits
from lpm_graph.data import generate_population
from lpm_graph.dynamics import SEIR, Vaccination, VenueTransmission
from lpm_graph.model import PopulationModel
from tests.conftest import compose_config

CAMPAIGN = dict(daily_fraction=0.005, efficacy=0.9, start=0, end=60)


@pytest.fixture(scope="module")
def setting():
    """The shipped SEIRD parameters (Verity et al. fatality by age) on 5,000 people, 0.5% seeded."""
    params = OmegaConf.to_container(compose_config(["model=seird"]).model.params)
    params.update(initial_infected_fraction=0.005, allocation=[0.0] * 9)
    pop = generate_population(5000, seed=3)

    def model(mode="stochastic", **vaccination):
        return PopulationModel([VenueTransmission()], SEIR(fatality=True), params, mode=mode,
                               environment=[Vaccination(**CAMPAIGN, **vaccination)])

    graph = model().prepare(pop)
    return model, graph


def test_optimised_allocation_beats_uniform_with_common_random_numbers(setting, tmp_path):
    """Optimised on the mean field (expected mode, 8 Adam steps), evaluated in stochastic mode over 16
    replicates paired by common random numbers: the 95% interval of the paired difference in deaths
    (optimised - uniform) must lie below zero."""
    model, graph = setting
    opt = model(mode="expected", allocation="allocation")
    with torch.no_grad():
        opt.params.raw("allocation").copy_(population_share_logits(graph, torch.float32))
    result = optimise_allocation(opt, graph, parameter="allocation", steps=100, iterations=8, lr=0.5)
    assert result.objective < 0.8 * result.initial_objective
    assert result.objective == min(result.trace)
    assert float(result.shares.sum()) == pytest.approx(1.0) and (result.shares >= 0).all()
    # the optimiser moves doses towards the old, whose fatality is highest
    uniform = torch.softmax(population_share_logits(graph), 0)
    assert float(result.shares[6:].sum()) > float(uniform[6:].sum())

    policies = {"uniform": model(), "optimised": model(allocation=result.shares.tolist()),
                "oldest_first": model(priority=list(range(8, -1, -1)))}
    runs = run_scenarios(policies, graph, steps=100, seed=0, replicates=16, outcome_names=["deaths", "attack_rate"])
    table = compare(runs, "uniform")
    row = table[(table.scenario == "optimised") & (table.outcome == "deaths")].iloc[0]
    assert row.diff_ci_high < 0, row.to_dict()
    oldest = table[(table.scenario == "oldest_first") & (table.outcome == "deaths")].iloc[0]
    assert oldest.diff_ci_high < 0, oldest.to_dict()
    labels = ["0-10", "10-20", "20-30", "30-40", "40-50", "50-60", "60-70", "70-80", "80+"]
    plot_policies(table, {"uniform": uniform.tolist(), "optimised": result.shares.tolist()}, labels,
                  tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_population_share_logits_give_the_uniform_policy(setting):
    model, graph = setting
    shares = torch.softmax(population_share_logits(graph), 0)
    counts = torch.bincount(graph.age_group, minlength=9).double()
    assert torch.allclose(shares, counts / counts.sum())
    uniform = model()
    assert torch.allclose(uniform.environment[0].shares({}, graph, shares), shares)


def test_optimise_allocation_refuses_bad_arguments(setting):
    model, graph = setting
    with pytest.raises(KeyError, match="nowhere"):
        optimise_allocation(model(), graph, parameter="nowhere", steps=5, iterations=1)
    with pytest.raises(ValueError, match="iterations must be >= 1"):
        optimise_allocation(model(mode="expected", allocation="allocation"), graph, parameter="allocation",
                            steps=5, iterations=0)


def test_allocation_gradient_with_spill_over_and_phases_matches_finite_differences(tiny_population):
    """What the optimiser follows: d deaths / d logits through a spill-over campaign with two 10-day phases
    (float64, expected mode) equals central differences to 1e-5 relative.  The budget (5% a day) exhausts
    the oldest groups within the window, so the spill-over rounds are exercised."""
    params = OmegaConf.to_container(compose_config(["model=seird"]).model.params)
    params.update(initial_infected_fraction=0.02, allocation=[[0.5 * g for g in range(9)], [0.0] * 9])
    model = PopulationModel([VenueTransmission()], SEIR(fatality=True), params, mode="expected",
                            time_varying={"allocation": 10},
                            environment=[Vaccination(daily_fraction=0.05, allocation="allocation", spill_over=True,
                                                     end=20)]).double()
    graph = model.prepare(tiny_population, dtype=torch.float64)
    logits = model.params["allocation"].detach().clone()

    def deaths(x):
        return model(graph, steps=25, overrides={"allocation": x}).series["D"][-1].sum()

    x = logits.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(deaths(x), x)
    V = model(graph, steps=20, overrides={"allocation": logits}).final_state["V"][:, 0]
    covered = torch.zeros(9, dtype=torch.float64).index_add(0, graph.age_group, V)
    sizes = torch.bincount(graph.age_group, minlength=9).double()
    assert torch.isclose(covered[8], sizes[8])  # the oldest group is fully covered: doses spilled over
    h = 1e-6
    for k, g in [(0, 8), (0, 6), (0, 2), (1, 8), (1, 7), (1, 0)]:
        e = torch.zeros_like(logits)
        e[k, g] = h
        with torch.no_grad():
            fd = float(deaths(logits + e) - deaths(logits - e)) / (2 * h)
        assert float(grad[k, g]) == pytest.approx(fd, rel=1e-5, abs=1e-9), (k, g, float(grad[k, g]), fd)
        # in the second phase the two oldest groups are covered: their shares no longer matter
        assert (abs(fd) < 1e-12) == ((k, g) in [(1, 8), (1, 7)]), (k, g, fd)
