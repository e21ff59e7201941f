"""Hard events forward, surrogate gradients backward."""
from __future__ import annotations

import math

import pytest
import torch

from lpm_graph.data import ConfigError
from lpm_graph.dynamics import Sampler
from lpm_graph.random import CounterRNG


@pytest.mark.parametrize("surrogate", ["straight_through", "gumbel"])
def test_forward_is_hard_with_the_right_rate(surrogate):
    n, p = 100_000, 0.3
    u = CounterRNG(torch.arange(n), seed=1).uniform(0, "test")
    prob = torch.full((n, 1), p, requires_grad=True)
    h = Sampler("stochastic", surrogate, 0.1)(prob, u)
    assert set(h.detach().unique().tolist()) == {0.0, 1.0}
    assert abs(float(h.detach().mean()) - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_straight_through_gradient_is_one():
    u = torch.rand(1000, 1, generator=torch.Generator().manual_seed(0))
    p = torch.full((1000, 1), 0.4, requires_grad=True)
    Sampler("stochastic", "straight_through")(p, u).sum().backward()
    assert torch.equal(p.grad, torch.ones_like(p))


def test_gumbel_gradient_matches_the_relaxation():
    u = torch.tensor([[0.2], [0.5], [0.9]], dtype=torch.float64)
    p = torch.full((3, 1), 0.4, dtype=torch.float64, requires_grad=True)
    tau = 0.5
    Sampler("stochastic", "gumbel", tau)(p, u).sum().backward()
    q = p.detach().clone().requires_grad_()
    torch.sigmoid((torch.logit(q) - torch.logit(u)) / tau).sum().backward()
    assert torch.allclose(p.grad, q.grad)
    # hard value is the zero-temperature limit of the relaxation
    assert torch.equal(Sampler("stochastic", "gumbel", tau)(p, u).detach(), (u < 0.4).double())


def test_gumbel_is_finite_at_probability_zero_and_one():
    u = torch.rand(10, 1, generator=torch.Generator().manual_seed(1))
    p = torch.tensor([0.0, 1.0] * 5).view(10, 1).requires_grad_()
    Sampler("stochastic", "gumbel", 0.1)(p, u).sum().backward()
    assert torch.isfinite(p.grad).all()


def test_expected_mode_returns_the_probability():
    p = torch.rand(5, 2)
    assert torch.equal(Sampler("expected")(p, None), p)


def test_bad_settings_name_the_field():
    with pytest.raises(ConfigError, match="model.mode"):
        Sampler("random")
    with pytest.raises(ConfigError, match="model.surrogate"):
        Sampler("stochastic", "reinforce")
    with pytest.raises(ConfigError, match="model.temperature"):
        Sampler("stochastic", "gumbel", 0.0)
