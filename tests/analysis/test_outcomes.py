"""Outcomes the epidemic declares, on hand-built trajectories."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.analysis.outcomes import check_outcomes, definitions, group_totals, outcomes
from lpm_graph.core import Trajectory
from lpm_graph.errors import ConfigError
from lpm_graph.models.epidemic import SEIR, SIS
from tests.models.epidemic.conftest import mixed_model, seir_model


@pytest.fixture(scope="module")
def seird():
    return seir_model(SEIR(fatality=True))


def make_traj(model, I: torch.Tensor, N: float = 100.0) -> Trajectory:
    """I ([T+1, R]) given; S falls by a fifth of the running sum of I; D rises linearly to 3; a quarter of
    the new infections in group 0-50."""
    T1, R = I.shape
    S = N - I.cumsum(0) * 0.2
    D = torch.linspace(0, 3, T1, dtype=I.dtype).unsqueeze(1).expand(T1, R)
    new = torch.cat([N - S[:1], -S.diff(dim=0)])
    zero = torch.zeros_like(I)
    series = {"S": S, "E": zero, "I": I, "R": N - S - I - D, "D": D, "new_infections": new,
              "new_deaths": torch.cat([zero[:1], D.diff(dim=0)])}
    grouped = {"age": {"new_infections": torch.stack([0.25 * new, 0.75 * new], dim=1),
                       "new_deaths": torch.stack([zero, zero], dim=1)}}
    return Trajectory(series=series, grouped=grouped, labels={"age": ["0-50", "50+"]},
                      observables=dict(model.observables), num_nodes={"person": int(N)})


def test_attack_rate_peak_and_deaths(seird):
    I = torch.tensor([[1.0, 2.0], [5.0, 3.0], [9.0, 3.5], [4.0, 8.0], [2.0, 1.0]])
    traj = make_traj(seird, I)
    out = outcomes(traj, seird, ["attack_rate", "total_infections", "peak_size", "peak_day", "deaths"])
    assert torch.allclose(out["attack_rate"], 1 - traj.series["S"][-1] / 100)
    assert torch.allclose(out["total_infections"], 100 - traj.series["S"][-1])
    assert out["peak_size"].tolist() == [9.0, 8.0]
    assert out["peak_day"].tolist() == [2.0, 3.0]
    assert out["deaths"].tolist() == [3.0, 3.0]
    totals = group_totals(traj)
    assert set(totals) == {"new_infections_age_0-50", "new_infections_age_50+", "new_deaths_age_0-50",
                           "new_deaths_age_50+"}
    # the totals include step 0's events: every infection ever, i.e. N - S_T
    assert torch.allclose(totals["new_infections_age_0-50"] + totals["new_infections_age_50+"],
                          100 - traj.series["S"][-1])
    assert torch.allclose(totals["new_infections_age_0-50"] * 3, totals["new_infections_age_50+"])


def test_sis_counts_infections_not_an_attack_rate():
    model = mixed_model(SIS(grouping=None), 0.5, infectious_period=4.0, susceptibility=1.0,
                        initial_infected_fraction=0.01)
    assert "attack_rate" not in model.outcomes
    new = torch.tensor([[3.0], [4.0], [5.0]])
    I = torch.tensor([[3.0], [6.0], [8.0]])
    traj = Trajectory(series={"S": 100 - I, "I": I, "new_infections": new}, grouped={}, labels={},
                      observables=dict(model.observables), num_nodes={"person": 100})
    out = outcomes(traj, model, ["total_infections", "final_prevalence", "peak_size"])
    assert out["total_infections"].tolist() == [12.0] and out["final_prevalence"].tolist() == pytest.approx([0.08])
    assert out["peak_size"].tolist() == [8.0]


def test_smooth_peak_day_tends_to_the_argmax_and_is_exact_for_symmetric_curves(seird):
    t = torch.arange(41, dtype=torch.float64)
    skewed = (t ** 2 * torch.exp(-t / 6)).unsqueeze(1)  # peak at t = 12, long right tail
    traj = make_traj(seird, skewed)
    peak = seird.outcomes["peak_day"]
    hard = float(peak(traj))
    assert hard == 12.0
    errors = [abs(float(peak(traj, smooth=True, temperature=tau)) - hard) for tau in (0.2, 0.05, 0.01, 0.001)]
    assert all(b < a for a, b in zip(errors, errors[1:])) and errors[-1] < 0.05
    days = torch.arange(35, dtype=torch.float64)  # days 0..34, symmetric about 17
    symmetric = torch.exp(-((days - 17.0) / 5) ** 2).unsqueeze(1)
    assert float(peak(make_traj(seird, symmetric), smooth=True, temperature=0.3)) == pytest.approx(17.0, abs=1e-9)


def test_smooth_peak_day_is_differentiable(seird):
    t = torch.arange(30, dtype=torch.float64)

    def peak_day(shift):
        I = torch.exp(-((t - shift) / 4) ** 2).unsqueeze(1) * 50
        return seird.outcomes["peak_day"](make_traj(seird, I), smooth=True, temperature=0.05).sum()

    shift = torch.tensor(11.3, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(peak_day(shift), shift)
    h = 1e-6
    at = lambda x: peak_day(torch.tensor(x, dtype=torch.float64))  # noqa: E731
    fd = (at(11.3 + h) - at(11.3 - h)) / (2 * h)
    assert float(grad) == pytest.approx(float(fd), rel=1e-6)
    # moving the curve moves its (smoothed, day-grid) peak day about one for one
    assert 0.9 < float(grad) < 1.1


def test_outcome_checks_name_the_field(seird):
    with pytest.raises(ConfigError, match="task.outcomes names \\['r0'\\], which the model does not declare"):
        check_outcomes(["attack_rate", "r0"], seird)
    seir = seir_model()
    with pytest.raises(ConfigError, match="task.policy.objective names \\['deaths'\\]"):
        check_outcomes(["deaths"], seir, "task.policy.objective")
    check_outcomes(["deaths"], seird)
    defs = definitions(seird, ["peak_day", "attack_rate"], smooth=True, temperature=0.05)
    assert "smooth surrogate" in defs["peak_day"] and "tau=0.05" in defs["peak_day"]
    assert defs["attack_rate"] == "1 - S_T/N (fraction ever infected)"
