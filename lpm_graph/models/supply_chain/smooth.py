r"""Smooth minima, ramps and steps: exact in the forward of stochastic runs, smooth where a gradient needs them.

Each function takes a smoothing width :math:`\tau \ge 0` in the units of its
arguments and the run's mode:

``expected`` mode (the mean field)
    the smooth function itself is the forward (and so the exact derivative):

    .. math::

        \operatorname{smin}_\tau(a_1, \dots, a_k) &= \max\Big(0,\,
            -\tau \log \sum_i e^{-a_i/\tau}\Big), \\
        \operatorname{ramp}_\tau(x) &= \tau \log\big(1 + e^{x/\tau}\big), \qquad
        \operatorname{step}_\tau(x) = \sigma(x/\tau).

    :math:`\operatorname{smin}_\tau` lies in :math:`[\min_i a_i - \tau\log k,\ \min_i a_i]`
    (clipped at 0 for non-negative arguments), so "ship what you have" never ships
    more than there is.
``stochastic`` mode
    the forward is exact (:math:`\min`, :math:`\max(0, x)`,
    :math:`\mathbb 1[x > 0]`) and the backward that of the smooth function
    (straight-through: ``hard + (soft - soft.detach())``), so sampled runs keep
    whole, feasible quantities and still pass a gradient.

With :math:`\tau = 0` every function is exact in both modes (its backward the
subgradient of ``torch.minimum`` / ``relu``; the step then has no gradient).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["smooth_min", "smooth_ramp", "smooth_step"]


def _straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """``hard`` forward, the gradient of ``soft`` alone backward (``hard``'s own subgradient, of ``torch.minimum``
    or ``relu``, is not added to it)."""
    return hard.detach() + (soft - soft.detach()) if soft.requires_grad else hard


def smooth_min(values: list[Tensor | None], tau: float, stochastic: bool) -> Tensor:
    """:math:`\\operatorname{smin}_\\tau` of broadcastable tensors (``None`` entries are +infinity)."""
    values = [v for v in values if v is not None]
    if len(values) == 1:
        return values[0]
    hard = values[0]
    for v in values[1:]:
        hard = torch.minimum(hard, v)
    if tau <= 0:
        return hard
    if stochastic and not any(v.requires_grad for v in values):
        return hard
    shape = torch.broadcast_shapes(*(v.shape for v in values))
    stacked = torch.stack([v.expand(shape) for v in values])
    soft = (-tau * torch.logsumexp(-stacked / tau, dim=0)).clamp_min(0.0)
    return _straight_through(hard, soft) if stochastic else soft


def smooth_ramp(x: Tensor, tau: float, stochastic: bool) -> Tensor:
    """:math:`\\operatorname{ramp}_\\tau(x)`, the smooth :math:`\\max(0, x)`."""
    hard = torch.relu(x)
    if tau <= 0 or (stochastic and not x.requires_grad):
        return hard
    soft = tau * F.softplus(x / tau)
    return _straight_through(hard, soft) if stochastic else soft


def smooth_step(x: Tensor, tau: float, stochastic: bool, inclusive: bool = False) -> Tensor:
    """:math:`\\operatorname{step}_\\tau(x)`, the smooth :math:`\\mathbb 1[x > 0]` (``inclusive``: :math:`x \\ge 0`)."""
    hard = ((x >= 0) if inclusive else (x > 0)).to(x.dtype)
    if tau <= 0 or (stochastic and not x.requires_grad):
        return hard
    soft = torch.sigmoid(x / tau)
    return _straight_through(hard, soft) if stochastic else soft
