r"""``task.method=vi``'s guide: a correlated normal in the bounded parameters, truncated to their bounds.

A posterior the data leave spread over a bounded parameter's range is, in the unconstrained space (logit,
softplus), as wide-tailed as the prior is there (logistic): a normal guide in that space is too thin in the tails
and its 90% intervals miss the range's ends.  In the bounded space :math:`\theta` the same posterior is the prior
(Uniform over the bounds, or a declared one restricted to them) times a likelihood that is close to a normal: a
normal in :math:`\theta` cut at the bounds.  This guide is that family, with a density that stays closed-form
in any dimension: each element a normal truncated to its bounds **given the ones before it** (the GHK
construction, Geweke-Hajivassiliou-Keane):

.. math::
    \theta_i = m_i + L_{ii}\,\varepsilon_i, \qquad m_i = \mu_i + \sum_{j<i} L_{ij}\,\varepsilon_j, \qquad
    \varepsilon_i \sim \mathcal N(0, 1) \text{ truncated to }
    \Big[\frac{lo_i - m_i}{L_{ii}}, \frac{hi_i - m_i}{L_{ii}}\Big],

.. math::
    \log q(\theta) = \sum_i \Big(\log\varphi(\varepsilon_i) - \log L_{ii} - \log\big(\Phi(\beta_i) -
    \Phi(\alpha_i)\big)\Big).

Without active bounds it is the multivariate normal :math:`\mathcal N(\mu, LL^\top)`; with them a
correlated normal restricted to the box (close to, not equal to, the truncated multivariate normal, whose
normaliser has no closed form).  Draws are reparameterised by the inverse CDF, so the ELBO's gradient flows
through them into :math:`\mu` and :math:`L`.
"""
from __future__ import annotations

import math

import pyro
import pyro.distributions as pdist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam
from torch import Tensor

__all__ = ["TruncatedNormal", "TruncatedNormalGuide", "BoundedPrior"]


def log_mass(alpha: Tensor, beta: Tensor) -> Tensor:
    """:math:`\\log(\\Phi(\\beta) - \\Phi(\\alpha))` for :math:`\\alpha \\le \\beta`, from the tail nearer the
    interval (an interval far above 0 is mirrored below it, where :math:`\\log\\Phi` keeps its precision)."""
    flip = alpha > 0
    a, b = torch.where(flip, -beta, alpha), torch.where(flip, -alpha, beta)
    la, lb = torch.special.log_ndtr(a), torch.special.log_ndtr(b)
    return lb + torch.log1p(-torch.exp((la - lb).clamp(max=0.0)).clamp(max=1.0 - 1e-16))  # log(1 - Phi(a)/Phi(b))


def _standard_truncated(u: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
    """The standard normal truncated to ``[alpha, beta]`` at its quantile ``u`` (mirrored where the interval lies
    above 0, as in :func:`log_mass`)."""
    flip = alpha > 0
    a, b = torch.where(flip, -beta, alpha), torch.where(flip, -alpha, beta)
    uu = torch.where(flip, 1.0 - u, u)
    # log(Phi(a) + uu (Phi(b) - Phi(a))) from log Phi, which keeps its precision where Phi itself underflows
    la, width = torch.special.log_ndtr(a), log_mass(a, b)  # a <= 0 here: log_mass does not mirror again
    logp = torch.logaddexp(la, torch.log(uu.clamp_min(torch.finfo(u.dtype).tiny)) + width)
    eps = torch.special.ndtri(torch.exp(logp).clamp(torch.finfo(u.dtype).tiny, 1.0 - 1e-16))
    eps = torch.maximum(torch.minimum(eps, b), a)
    return torch.where(flip, -eps, eps)


class TruncatedNormal(pdist.TorchDistribution):
    r"""The correlated normal :math:`\mathcal N(\mu, LL^\top)` truncated to a box element by element given the
    elements before it (module docstring); reparameterised.

    Args:
        loc: :math:`\mu`.
        scale_tril: :math:`L`, lower triangular with a positive diagonal.
        low, high: the bounds (``-inf`` / ``inf`` where there is none).

    Shapes:
        loc, low, high: ``[dim]``; scale_tril: ``[dim, dim]``; draws and ``log_prob``'s argument ``[..., dim]``,
        ``log_prob`` ``[...]``.
    """

    arg_constraints = {"loc": constraints.real_vector, "scale_tril": constraints.lower_cholesky}
    has_rsample = True

    def __init__(self, loc: Tensor, scale_tril: Tensor, low: Tensor, high: Tensor, validate_args=None):
        self.loc, self.scale_tril = loc, scale_tril
        self.low, self.high = low.to(loc), high.to(loc)
        # draws stay 1e-9 of a finite range inside its bounds: far in a tail the inverse CDF lands on a bound, where
        # a simulated likelihood can be zero (a reporting fraction of 0 against observed cases)
        span = torch.where(torch.isfinite(self.high - self.low), self.high - self.low, torch.zeros_like(self.low))
        self._inner = (self.low + 1e-9 * span, self.high - 1e-9 * span)
        super().__init__(batch_shape=torch.Size(), event_shape=loc.shape[-1:], validate_args=validate_args)

    @constraints.dependent_property
    def support(self):
        return constraints.independent(constraints.interval(self.low, self.high), 1)

    def _walk(self, u: Tensor | None = None, value: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One pass over the elements: from quantiles ``u`` (sampling) or through ``value`` (density).  Returns
        the draw and its log density, ``[..., dim]`` and ``[...]``."""
        dim = self.loc.shape[-1]
        batch = (u if u is not None else value).shape[:-1]
        diag = self.scale_tril.diagonal()
        eps, out, logq = [], [], torch.zeros(batch, dtype=self.loc.dtype, device=self.loc.device)
        for i in range(dim):
            m = self.loc[i] + (torch.stack(eps, -1) @ self.scale_tril[i, :i] if i else 0.0)
            alpha, beta = (self.low[i] - m) / diag[i], (self.high[i] - m) / diag[i]
            if u is not None:
                e = _standard_truncated(u[..., i], alpha.expand(batch), beta.expand(batch))
                x = torch.maximum(torch.minimum(m + diag[i] * e, self._inner[1][i]), self._inner[0][i])
            else:
                x = value[..., i]
                e = (x - m) / diag[i]
            logq = logq + (-0.5 * e ** 2 - 0.5 * math.log(2 * math.pi) - torch.log(diag[i])
                           - log_mass(alpha.expand(batch), beta.expand(batch)))
            eps.append(e)
            out.append(x)
        return torch.stack(out, -1), logq

    def rsample(self, sample_shape=torch.Size()) -> Tensor:
        shape = torch.Size(sample_shape) + self.loc.shape[-1:]
        u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self._walk(u=u)[0]

    def log_prob(self, value: Tensor) -> Tensor:
        _, logq = self._walk(value=value)
        inside = ((value >= self.low) & (value <= self.high)).all(-1)
        return torch.where(inside, logq, torch.full_like(logq, -math.inf))


class BoundedPrior(pdist.TorchDistribution):
    """The prior of :math:`\\theta` (every learnable element, in :attr:`Prior.columns` order) restricted to the
    bounds, unnormalised: ``vi``'s model site under :class:`TruncatedNormalGuide`.

    Shapes:
        ``log_prob``'s argument ``[..., dim]``, its result ``[...]``.
    """

    arg_constraints: dict = {}

    def __init__(self, prior, low: Tensor, high: Tensor):
        self.prior, self.low, self.high = prior, low, high
        super().__init__(batch_shape=torch.Size(), event_shape=torch.Size([prior.dim]), validate_args=False)

    @constraints.dependent_property
    def support(self):
        return constraints.independent(constraints.interval(self.low, self.high), 1)

    def sample(self, sample_shape=torch.Size()):
        shape = torch.Size(sample_shape)
        z = self.prior.sample(max(1, math.prod(shape)))
        return self.prior.theta(z).reshape(*shape, self.prior.dim)

    def log_prob(self, value: Tensor) -> Tensor:
        total = torch.zeros(value.shape[:-1], dtype=value.dtype, device=value.device)
        for name, theta in self.prior.split(value).items():
            if name in self.prior.dists:
                lp = self.prior.dists[name].log_prob(theta.double()).to(value.dtype)
                total = total + lp.reshape(*value.shape[:-1], -1).sum(-1)
        inside = ((value >= self.low) & (value <= self.high)).all(-1)
        return torch.where(inside, total, torch.full_like(total, -math.inf))


class TruncatedNormalGuide(PyroModule):
    r"""``vi``'s guide: :class:`TruncatedNormal` at site ``theta``, its parameters in units of a fixed scale.

    :math:`\mu = c + s \odot a` and :math:`L = \operatorname{diag}(s)\,\operatorname{diag}(r)\,U` (``U`` unit lower
    triangular), with the learnt ``loc`` :math:`a`, ``scale`` :math:`r` and ``scale_tril`` :math:`U`; the
    ``center`` :math:`c` and ``unit`` :math:`s` are fixed buffers (the start's mean and sd), so one optimiser step
    of a given learning rate moves every element by the same fraction of its own width.

    Shapes:
        center, unit, low, high: ``[dim]``; start_tril: ``[dim, dim]``, the start's :math:`L` over ``unit``.
    """

    def __init__(self, center: Tensor, unit: Tensor, start_tril: Tensor, low: Tensor, high: Tensor):
        super().__init__()
        dim = len(center)
        for name, value in (("center", center), ("unit", unit), ("low", low), ("high", high)):
            self.register_buffer(name, value.detach().clone())
        diag = start_tril.diagonal()
        self.loc = PyroParam(torch.zeros(dim, dtype=center.dtype))
        self.scale = PyroParam(diag.detach().clone(), constraints.softplus_positive)
        self.scale_tril = PyroParam((start_tril / diag[:, None]).detach().clone(), constraints.unit_lower_cholesky)

    def get_posterior(self) -> TruncatedNormal:
        tril = self.unit[:, None] * (self.scale[:, None] * self.scale_tril)
        return TruncatedNormal(self.center + self.unit * self.loc, tril, self.low, self.high)

    def forward(self, *args, **kwargs):
        return pyro.sample("theta", self.get_posterior())
