r"""Discrete events with a surrogate gradient: Bernoulli, categorical, binomial and Poisson draws.

A transition that happens with probability :math:`p` is drawn from the
counter-based uniform :math:`u` of its (seed, step, stream, agent):

.. math::

    h = \mathbb{1}[u < p]

Forward values are always hard 0/1, so indicator states stay exact counts.  What
flows backward is chosen by ``surrogate``:

``"straight_through"``
    :math:`\partial h / \partial p := 1`.  Since :math:`\mathbb{E}_u[h] = p`,
    this is the exact derivative of the expected one-step outcome, i.e. an
    unbiased estimator of :math:`\partial \mathbb{E}[h]/\partial p` for one
    transition (Bengio et al. 2013's straight-through estimator).
``"gumbel"`` (default, :math:`\tau = 0.1`)
    Straight-through Gumbel-softmax for two classes (binary Concrete, Maddison
    et al. 2017; used by GradABM): the backward is that of
    :math:`\sigma\big((\operatorname{logit} p - \operatorname{logit} u)/\tau\big)`,
    whose hard limit is the same :math:`h`.  Lower temperature :math:`\tau`
    is less biased and noisier.

Both are biased over an unroll, and the bias grows with the horizon because
surrogate mass keeps flowing through agents whose hard state has saturated.
Measured on the epidemic model, a 3,000-person synthetic population (16 replicates, gradient of
mean cumulative infections in the community contact rate over central finite
differences of the mean with common random numbers): straight-through
1.17 / 1.47 / 2.5 / 19 at 5 / 10 / 20 / 40 steps; Gumbel with
:math:`\tau = 0.1`: 0.98 / 1.02 / 1.29 / 2.2; with :math:`\tau = 0.5`:
2.0 / 3.1 / 6.4 / 52.  Hence the default; for exact gradients of the mean
field use ``mode="expected"``.

``mode="expected"`` replaces :math:`h` by :math:`p` itself: the deterministic
mean-field dynamics over the same graph, smooth and exactly differentiable.

**Other draws**, each from counter-based uniforms (``float64``: 52 bits, so
rare outcomes keep their probability):

:meth:`Sampler.categorical`
    one of :math:`K` outcomes with probabilities :math:`\pi_k`, by the
    Gumbel-max trick with one uniform per outcome,
    :math:`k^* = \arg\max_k \log\pi_k + g_k`, :math:`g_k = -\log(-\log u_k)`;
    returned one-hot.  Surrogates: straight-through
    (:math:`\partial h / \partial \pi := I`), or Gumbel-softmax
    :math:`\operatorname{softmax}((\log\pi + g)/\tau)` (Jang et al. 2017).
    Expected mode returns :math:`\pi`.
:meth:`Sampler.binomial`, :meth:`Sampler.poisson`
    counts by inversion of the CDF, exact while the variance is at most
    :data:`EXACT_VARIANCE`; beyond it, the normal approximation
    :math:`\operatorname{round}(\mu + \sigma\,\Phi^{-1}(u))` clipped to the
    support (error :math:`O(1/\sigma)` in distribution, mean and variance
    kept).  Their surrogate is straight-through on the mean
    (:math:`\partial X/\partial \mu := 1`, unbiased for one step, since
    :math:`\mathbb{E}X = \mu`) whatever ``surrogate`` says: counts have no
    binary relaxation.  Expected mode returns the mean :math:`np` or
    :math:`\lambda`.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from lpm_graph.errors import ConfigError

__all__ = ["Sampler", "MODES", "SURROGATES", "EXACT_VARIANCE", "REFINE_BELOW", "needs_refinement"]

MODES = ("stochastic", "expected")
SURROGATES = ("straight_through", "gumbel")
#: counts are drawn exactly by CDF inversion while their variance is at most this
EXACT_VARIANCE = 64.0
#: a float32 Bernoulli draw is refined (lpm_graph.core.random.refinement) when a probability may be below this:
#: above it a 23-bit uniform's relative bias, 1/(2^24 p), is under 2.5e-4
REFINE_BELOW = 2.0 ** -12


def needs_refinement(p: Tensor) -> bool:
    """Whether a probability tensor has a positive entry below :data:`REFINE_BELOW` (checked on small
    per-group vectors; per-node probabilities are refined without asking)."""
    small = (p > 0) & (p < REFINE_BELOW)
    return bool(small.any())


class Sampler:
    """Draws discrete events as configured.

    Args:
        mode (str): ``"stochastic"`` or ``"expected"``. (default: ``"stochastic"``)
        surrogate (str): ``"straight_through"`` or ``"gumbel"``. (default: ``"gumbel"``)
        temperature (float): :math:`\\tau > 0` of the ``"gumbel"`` surrogate. (default: ``0.1``)
    """

    def __init__(self, mode: str = "stochastic", surrogate: str = "gumbel", temperature: float = 0.1):
        if mode not in MODES:
            raise ConfigError(f"model.mode must be one of {list(MODES)}, got {mode!r}")
        if surrogate not in SURROGATES:
            raise ConfigError(f"model.surrogate must be one of {list(SURROGATES)}, got {surrogate!r}")
        if not temperature > 0:
            raise ConfigError(f"model.temperature must be > 0, got {temperature}")
        self.mode, self.surrogate, self.temperature = mode, surrogate, float(temperature)

    @property
    def stochastic(self) -> bool:
        return self.mode == "stochastic"

    def __call__(self, p: Tensor, u: Tensor | None, refine: Tensor | None = None) -> Tensor:
        """A Bernoulli event indicator for probability ``p`` given uniforms ``u`` (same shape).

        ``refine``: for ``float32`` uniforms, their
        :class:`~lpm_graph.core.random.Refinement` (or dense sub-cell offsets
        from :func:`~lpm_graph.core.random.refinement`): the event is then
        ``u - j < p``, exact for rare ``p``; without, ``u < p``.
        """
        if not self.stochastic:
            return p
        if refine is None:
            hard = u < p
        elif isinstance(refine, Tensor):
            hard = (u - p) < refine
        else:
            hard = refine.fire(p, u)
        hard = hard.to(p.dtype)
        if not p.requires_grad:
            return hard
        if self.surrogate == "straight_through":
            return hard + (p - p.detach())
        eps = torch.finfo(p.dtype).eps
        q = p.clamp(eps, 1 - eps)
        soft = torch.sigmoid((torch.logit(q) - torch.logit(u.to(p.dtype))) / self.temperature)
        return hard + (soft - soft.detach())

    bernoulli = __call__

    def categorical(self, probs: Tensor, u: Tensor | None) -> Tensor:
        """One of ``K`` outcomes, one-hot ``[..., K]``, for probabilities ``probs`` ``[..., K]`` (rows sum
        to one) and ``float64`` uniforms ``u`` of the same shape (one per outcome)."""
        if not self.stochastic:
            return probs
        if u is None or u.shape != probs.shape:
            raise ValueError(f"Sampler.categorical: needs one uniform per outcome, shape {tuple(probs.shape)}, "
                             f"got {None if u is None else tuple(u.shape)}")
        g = -torch.log(-torch.log(u.to(torch.float64)))
        score = torch.log(probs.detach().to(torch.float64)) + g
        hard = torch.nn.functional.one_hot(score.argmax(-1), probs.size(-1)).to(probs.dtype)
        if not probs.requires_grad:
            return hard
        if self.surrogate == "straight_through":
            return hard + (probs - probs.detach())
        logp = torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))
        soft = torch.softmax((logp + g.to(probs.dtype)) / self.temperature, dim=-1)
        return hard + (soft - soft.detach())

    def binomial(self, n: Tensor, p: Tensor, u: Tensor | None) -> Tensor:
        """Binomial counts of ``n`` trials (non-negative whole numbers) with probability ``p``, given
        ``float64`` uniforms ``u`` (one per count; module docstring for the method)."""
        mean = n * p
        if not self.stochastic:
            return mean
        n64 = n.detach().to(torch.float64).expand_as(u)
        p64 = p.detach().to(torch.float64).expand_as(u)
        flip = p64 > 0.5
        q = torch.where(flip, 1.0 - p64, p64)
        var = n64 * q * (1.0 - q)
        exact = var <= EXACT_VARIANCE
        x = torch.zeros_like(u, dtype=torch.float64)
        if bool(exact.any()):
            pmf = torch.exp(n64 * torch.log1p(-q))
            ratio = q / (1.0 - q).clamp_min(1e-300)
            x = _invert(u, pmf, lambda k, pmf: pmf * (n64 - k).clamp_min(0.0) / (k + 1) * ratio,
                        _bound(n64 * q, var, exact), exact)
        if not bool(exact.all()):
            approx = torch.round(n64 * q + var.sqrt() * torch.special.ndtri(u))
            x = torch.where(exact, x, approx)
        x = torch.minimum(x.clamp_min(0.0), n64)
        x = torch.where(flip, n64 - x, x)
        return self._counts(x.to(mean.dtype), mean)

    def poisson(self, lam: Tensor, u: Tensor | None) -> Tensor:
        """Poisson counts with mean ``lam`` (``>= 0``), given ``float64`` uniforms ``u`` (one per count)."""
        if not self.stochastic:
            return lam
        lam64 = lam.detach().to(torch.float64).expand_as(u)
        exact = lam64 <= EXACT_VARIANCE
        x = torch.zeros_like(u, dtype=torch.float64)
        if bool(exact.any()):
            x = _invert(u, torch.exp(-lam64), lambda k, pmf: pmf * lam64 / (k + 1), _bound(lam64, lam64, exact), exact)
        if not bool(exact.all()):
            approx = torch.round(lam64 + lam64.sqrt() * torch.special.ndtri(u))
            x = torch.where(exact, x, approx)
        return self._counts(x.clamp_min(0.0).to(lam.dtype), lam)

    def _counts(self, hard: Tensor, mean: Tensor) -> Tensor:
        if not mean.requires_grad:
            return hard
        return hard + (mean - mean.detach())

    def __repr__(self) -> str:
        return f"Sampler(mode={self.mode!r}, surrogate={self.surrogate!r}, temperature={self.temperature})"


def _bound(mean: Tensor, var: Tensor, where: Tensor) -> int:
    """Iterations of CDF inversion that cover every count but a tail below ~1e-20 (10 sd past the mean)."""
    m = torch.where(where, mean + 10.0 * var.sqrt(), torch.zeros_like(mean))
    return int(math.ceil(float(m.max()))) + 12 if m.numel() else 0


def _invert(u: Tensor, pmf: Tensor, step, iterations: int, where: Tensor) -> Tensor:
    """Smallest ``k`` with ``CDF(k) >= u`` by accumulating ``pmf`` (``step(k, pmf_k) -> pmf_{k+1}``)."""
    cdf = pmf.clone()
    x = torch.zeros_like(u, dtype=torch.float64)
    for k in range(iterations):
        active = (u > cdf) & where
        if not bool(active.any()):
            break
        x += active.to(torch.float64)
        pmf = step(float(k), pmf)
        cdf += pmf
    return x
