"""Smooth minima, ramps and steps (lpm_graph.models.supply_chain.smooth): exact forwards where asked, the smooth
functions' values and gradients."""
from __future__ import annotations

import math

import pytest
import torch

from lpm_graph.models.supply_chain.smooth import smooth_min, smooth_ramp, smooth_step

F64 = torch.float64


def t(*v, grad=False):
    return torch.tensor(v, dtype=F64, requires_grad=grad)


def test_the_expected_mode_forwards_the_smooth_functions_by_hand():
    a, b, tau = t(1.0, 3.0, 0.0), t(2.0, 0.5, 0.0), 0.5
    want = [max(0.0, -tau * math.log(math.exp(-x / tau) + math.exp(-y / tau))) for x, y in zip(a.tolist(), b.tolist())]
    torch.testing.assert_close(smooth_min([a, b], tau, False), t(*want), rtol=1e-14, atol=0)
    assert want[2] == 0.0  # -tau log 2 < 0, clipped: never more than there is, never less than nothing
    x = t(-1.0, 0.0, 2.0)
    torch.testing.assert_close(smooth_ramp(x, tau, False), tau * torch.log1p(torch.exp(x / tau)), rtol=1e-14, atol=0)
    torch.testing.assert_close(smooth_step(x, tau, False), torch.sigmoid(x / tau), rtol=1e-14, atol=0)


def test_the_smooth_minimum_lies_within_tau_log_k_below_the_minimum():
    g = torch.Generator().manual_seed(0)
    vals = [torch.rand(50, generator=g, dtype=F64) * 10 + 1 for _ in range(3)]
    tau = 0.2
    soft = smooth_min(vals, tau, False)
    hard = torch.minimum(torch.minimum(vals[0], vals[1]), vals[2])
    assert bool((soft <= hard).all()) and bool((soft >= hard - tau * math.log(3) - 1e-12).all())
    assert smooth_min([vals[0], None], tau, False) is vals[0]  # None is +infinity: the other value itself
    # broadcast: one per node against one for all
    assert smooth_min([vals[0], t(5.0)], tau, False).shape == (50,)


@pytest.mark.parametrize("stochastic", [False, True])
def test_tau_zero_is_exact_in_both_modes(stochastic):
    a, b = t(1.0, -2.0, 3.0, grad=True), t(2.0, 0.5, 3.0)
    torch.testing.assert_close(smooth_min([a, b], 0.0, stochastic), torch.minimum(a, b))
    x = t(-1.0, 0.0, 2.0, grad=True)
    torch.testing.assert_close(smooth_ramp(x, 0.0, stochastic), torch.relu(x))
    assert smooth_step(x, 0.0, stochastic).tolist() == [0.0, 0.0, 1.0]
    assert smooth_step(x, 0.0, stochastic, inclusive=True).tolist() == [0.0, 1.0, 1.0]


def test_the_stochastic_mode_is_exact_forward_with_the_smooth_backward():
    tau = 0.3
    for fn, hard, soft in [
        (lambda v: smooth_ramp(v, tau, True), torch.relu, lambda v: tau * torch.nn.functional.softplus(v / tau)),
        (lambda v: smooth_step(v, tau, True), lambda v: (v > 0).to(F64), lambda v: torch.sigmoid(v / tau)),
        (lambda v: smooth_min([v, t(1.2, 1.2, 1.2)], tau, True), lambda v: torch.minimum(v, t(1.2, 1.2, 1.2)),
         lambda v: (-tau * torch.logsumexp(-torch.stack([v, t(1.2, 1.2, 1.2)]) / tau, 0)).clamp_min(0))]:
        x = t(0.2, 0.6, 1.7, grad=True)
        y = fn(x)
        torch.testing.assert_close(y, hard(x.detach()), rtol=0, atol=0)  # whole, feasible quantities
        (g,) = torch.autograd.grad(y.sum(), x)
        x2 = x.detach().requires_grad_()
        (want,) = torch.autograd.grad(soft(x2).sum(), x2)
        torch.testing.assert_close(g, want, rtol=1e-14, atol=0)
        assert bool((g != 0).all())  # a gradient even where the exact step is flat
    # without a gradient to pass, the exact functions alone
    x = t(-0.4, 0.1, 0.7)
    assert smooth_step(x, tau, True).tolist() == [0.0, 1.0, 1.0]
    assert not smooth_ramp(x, tau, True).requires_grad


@pytest.mark.parametrize("which", ["min", "ramp", "step"])
def test_expected_mode_gradients_equal_finite_differences(which):
    tau, h = 0.4, 1e-6
    other = t(0.3, 0.9, 0.6)
    fn = {"min": lambda v: smooth_min([v, other], tau, False), "ramp": lambda v: smooth_ramp(v, tau, False),
          "step": lambda v: smooth_step(v, tau, False)}[which]
    x = t(-0.2, 0.5, 1.1, grad=True)
    (g,) = torch.autograd.grad(fn(x).sum(), x)
    for k in range(3):
        e = torch.zeros(3, dtype=F64)
        e[k] = h
        fd = (fn(x.detach() + e).sum() - fn(x.detach() - e).sum()) / (2 * h)
        assert float(g[k]) == pytest.approx(float(fd), rel=1e-7, abs=1e-9)
