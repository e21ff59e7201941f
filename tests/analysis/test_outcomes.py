"""Outcome definitions on hand-built trajectories."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.analysis.outcomes import check_outcomes, infections_by_age, outcome, outcomes
from lpm_graph.data import ConfigError
from lpm_graph.model import Trajectory


def make_traj(I: torch.Tensor, N: float = 100.0) -> Trajectory:
    """A trajectory with infectious curve I ([T+1, R]), S falling by the same amount, one death per 10 removed."""
    T1, R = I.shape
    S = N - I.cumsum(0) * 0.2
    D = torch.linspace(0, 3, T1).unsqueeze(1).expand(T1, R)
    new = torch.cat([N - S[:1], -S.diff(dim=0)])
    by_age = torch.stack([0.25 * new, 0.75 * new], dim=1)  # [T+1, 2, R]
    return Trajectory(series={"S": S, "I": I, "D": D, "new_infections": new},
                      by_age={"new_infections": by_age}, compartments=("S", "I", "D"), age_bins=[0.0, 50.0])


def test_attack_rate_peak_and_deaths():
    I = torch.tensor([[1.0, 2.0], [5.0, 3.0], [9.0, 3.5], [4.0, 8.0], [2.0, 1.0]])
    traj = make_traj(I)
    out = outcomes(traj, ["attack_rate", "peak_size", "peak_day", "deaths"], num_people=100)
    assert torch.allclose(out["attack_rate"], 1 - traj.series["S"][-1] / 100)
    assert out["peak_size"].tolist() == [9.0, 8.0]
    assert out["peak_day"].tolist() == [2.0, 3.0]
    assert out["deaths"].tolist() == [3.0, 3.0]
    by_age = infections_by_age(traj)
    assert list(by_age) == ["0-50", "50+"]
    assert torch.allclose(by_age["0-50"] + by_age["50+"], 100 - traj.series["S"][-1])


def test_smooth_peak_day_tends_to_the_argmax_and_is_exact_for_symmetric_curves():
    t = torch.arange(41, dtype=torch.float64)
    skewed = (t ** 2 * torch.exp(-t / 6)).unsqueeze(1)  # peak at t = 12, long right tail
    traj = make_traj(skewed)
    hard = float(outcome(traj, "peak_day", 100))
    assert hard == 12.0
    errors = [abs(float(outcome(traj, "peak_day", 100, smooth=True, temperature=tau)) - hard)
              for tau in (0.2, 0.05, 0.01, 0.001)]
    assert all(b < a for a, b in zip(errors, errors[1:])) and errors[-1] < 0.05
    days = torch.arange(35, dtype=torch.float64)  # days 0..34, symmetric about 17
    symmetric = torch.exp(-((days - 17.0) / 5) ** 2).unsqueeze(1)
    assert float(outcome(make_traj(symmetric), "peak_day", 100, smooth=True, temperature=0.3)) == pytest.approx(
        17.0, abs=1e-9)


def test_smooth_peak_day_is_differentiable():
    t = torch.arange(30, dtype=torch.float64)

    def peak_day(shift):
        I = torch.exp(-((t - shift) / 4) ** 2).unsqueeze(1) * 50
        return outcome(make_traj(I), "peak_day", 100, smooth=True, temperature=0.05).sum()

    shift = torch.tensor(11.3, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(peak_day(shift), shift)
    h = 1e-6
    at = lambda x: peak_day(torch.tensor(x, dtype=torch.float64))  # noqa: E731
    fd = (at(11.3 + h) - at(11.3 - h)) / (2 * h)
    assert float(grad) == pytest.approx(float(fd), rel=1e-6)
    # moving the curve moves its (smoothed, day-grid) peak day about one for one
    assert 0.9 < float(grad) < 1.1


def test_outcome_checks_name_the_field():
    with pytest.raises(ConfigError, match="task.outcomes names \\['r0'\\]"):
        check_outcomes(["attack_rate", "r0"], ("S", "E", "I", "R"))
    with pytest.raises(ConfigError, match="use model=seird"):
        check_outcomes(["deaths"], ("S", "E", "I", "R"))
    check_outcomes(["deaths"], ("S", "E", "I", "R", "D"))
    with pytest.raises(KeyError, match="unknown outcome"):
        outcome(make_traj(torch.ones(3, 1)), "r0", 100)
