r"""Differential privacy of released sums: discrete Gaussian noise and its accounting.

**The sampler.** :class:`DiscreteGaussian` draws from the discrete Gaussian
on the integers,

.. math::

    \Pr[Y = y] = \frac{e^{-y^2 / 2\sigma^2}}{\sum_{z \in \mathbb{Z}} e^{-z^2 / 2\sigma^2}},
    \qquad y \in \mathbb{Z},

exactly, by the rejection sampler of Canonne, Kamath and Steinke, *The
Discrete Gaussian for Differential Privacy* (NeurIPS 2020), Algorithms 1–3:
Bernoulli trials of :math:`e^{-\gamma}` for rational :math:`\gamma` from
Bernoulli trials of rationals, a discrete Laplace proposal of scale
:math:`t = \lfloor\sigma\rfloor + 1`, and acceptance with probability
:math:`\exp(-(|Y| - \sigma^2/t)^2 / 2\sigma^2)`.  Every trial is an exact
comparison of integers (``secrets.randbelow``: the operating system's
cryptographically secure source), with :math:`\sigma^2` an exact rational
(``fractions.Fraction``), so no floating-point rounding biases the tails and
no general-purpose generator's state can be predicted from its outputs.
Noise is added to the fixed-point integers of a sum before decoding
(:mod:`lpm_graph.privacy.agents`): the released value is an integer, so the
guarantee below holds exactly, without the floating-point attacks on a
continuous Gaussian (Mironov 2012).

**The guarantee.** For a query :math:`q` into :math:`\mathbb{Z}^d` whose
value changes by at most :math:`\Delta_2` in L2 norm when one private agent
changes, adding independent :math:`\mathcal{N}_\mathbb{Z}(0, \sigma^2)` to
each coordinate is :math:`\rho`-zCDP (concentrated DP, Bun and Steinke 2016)
with (Canonne, Kamath and Steinke 2020, Theorem 15)

.. math::

    \rho = \frac12\Big(\frac{\Delta_2^2}{\sigma^2}
        + 5 \sum_{k=1}^{d-1} e^{-2\pi^2\sigma^2 \frac{k}{k+1}}\Big),

the second term negligible for :math:`\sigma \ge 2` (below :math:`10^{-30}`
per coordinate; our :math:`\sigma` are multiples of the fixed-point scale,
thousands at least).  zCDP composes by adding :math:`\rho`, so
:class:`ZCDPAccountant` keeps :math:`\sum \rho` over every release of a run
or a calibration; :math:`\rho`-zCDP is :math:`(\alpha, \alpha\rho)`-RDP for
every order :math:`\alpha > 1`, which converts to :math:`(\varepsilon, \delta)`
by (Balle et al. 2020; Canonne, Kamath and Steinke 2020, Proposition 12)

.. math::

    \varepsilon(\delta) = \min_{\alpha > 1}\;
        \alpha\rho + \frac{\log(1/\delta) + (\alpha - 1)\log(1 - 1/\alpha) - \log\alpha}{\alpha - 1}.

With a noise multiplier :math:`z = \sigma/\Delta_2` per release, a release
costs :math:`\rho = 1/(2z^2)`: the RDP curve of the Gaussian mechanism at
sampling rate 1, the one Opacus' ``RDPAccountant`` keeps;
:func:`opacus_epsilon` computes the same :math:`\varepsilon` with Opacus
(extra ``privacy``) over its own grid of orders, and the test suite checks
the two agree.
"""
from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from lpm_graph.errors import ConfigError

__all__ = ["DiscreteGaussian", "ZCDPAccountant", "discrete_gaussian_moments", "epsilon_from_rho", "opacus_epsilon",
           "DEFAULT_ORDERS"]

#: orders of the (ε, δ) conversion: a fine grid from 1.001 to 10^5 (the minimum is smooth in α)
DEFAULT_ORDERS = tuple(float(a) for a in np.unique(np.concatenate([1.0 + np.logspace(-3, 5, 4000)])))


def _bernoulli(p: Fraction) -> int:
    """1 with probability ``p`` (a rational in [0, 1]), exactly: a uniform integer below the denominator."""
    return int(secrets.randbelow(p.denominator) < p.numerator)


def _bernoulli_exp(gamma: Fraction) -> int:
    r"""1 with probability :math:`e^{-\gamma}` for a rational :math:`\gamma \ge 0` (CKS 2020, Algorithm 1)."""
    while gamma > 1:  # e^{-γ} = e^{-1} ... e^{-1} e^{-(γ - ⌊γ⌋)}: each factor a trial of its own
        if not _bernoulli_exp(Fraction(1)):
            return 0
        gamma -= 1
    k = 1
    while _bernoulli(gamma / k):  # P[K odd] = e^{-γ} for the first K whose trial of γ/K fails
        k += 1
    return k % 2


def _discrete_laplace(t: int) -> int:
    r"""An integer with :math:`\Pr[Z = z] \propto e^{-|z|/t}` (CKS 2020, Algorithm 2 with :math:`s = 1`)."""
    while True:
        u = secrets.randbelow(t)
        if not _bernoulli_exp(Fraction(u, t)):
            continue
        v = 0
        while _bernoulli_exp(Fraction(1)):
            v += 1
        y = u + t * v
        negative = secrets.randbelow(2)
        if negative and y == 0:
            continue
        return -y if negative else y


class DiscreteGaussian:
    r"""Exact draws from the discrete Gaussian :math:`\mathcal{N}_\mathbb{Z}(0, \sigma^2)` (module docstring).

    Args:
        sigma (float): the scale :math:`\sigma > 0` (taken as the exact
            rational value of the float, squared exactly).

    Every draw reads the operating system's cryptographically secure source
    (``secrets``); nothing is seeded, so two runs add different noise.
    """

    def __init__(self, sigma: float):
        if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
            raise ConfigError(f"DiscreteGaussian: sigma must be a positive finite number, got {sigma!r}")
        self.sigma = float(sigma)
        self.sigma2 = Fraction(self.sigma) ** 2
        self.t = int(math.floor(self.sigma)) + 1

    def sample(self) -> int:
        """One draw (CKS 2020, Algorithm 3)."""
        t, s2 = self.t, self.sigma2
        while True:
            y = _discrete_laplace(t)
            gap = abs(y) - s2 / t
            if _bernoulli_exp(gap * gap / (2 * s2)):
                return y

    def samples(self, n: int) -> list[int]:
        """``n`` independent draws as Python ints (of any size)."""
        return [self.sample() for _ in range(int(n))]

    def __repr__(self) -> str:
        return f"DiscreteGaussian(sigma={self.sigma:g})"


def discrete_gaussian_moments(sigma: float, width: float = 40.0) -> tuple[float, float]:
    r"""Variance and fourth moment of :math:`\mathcal{N}_\mathbb{Z}(0, \sigma^2)` by summing its mass over
    :math:`|y| \le \text{width}\,\sigma + 10` (the rest is below :math:`e^{-800}`); the mean is 0 by symmetry."""
    m = int(width * sigma) + 10
    y = np.arange(-m, m + 1, dtype=np.float64)
    w = np.exp(-y * y / (2.0 * sigma * sigma))
    w /= w.sum()
    return float((w * y ** 2).sum()), float((w * y ** 4).sum())


def _tail_term(sigma: float, dims: int) -> float:
    """CKS 2020 Theorem 15's correction of a ``dims``-coordinate release: 5 Σ_k e^{-2π²σ² k/(k+1)}."""
    if dims <= 1:
        return 0.0
    k = np.arange(1, dims, dtype=np.float64)
    return float(5.0 * np.exp(-2.0 * math.pi ** 2 * sigma ** 2 * k / (k + 1.0)).sum())


def epsilon_from_rho(rho: float, delta: float, orders: Sequence[float] = DEFAULT_ORDERS) -> float:
    r"""The :math:`\varepsilon` of :math:`\rho`-zCDP at :math:`\delta` (module docstring), minimised over ``orders``."""
    if not 0 < delta < 1:
        raise ConfigError(f"privacy.delta must be in (0, 1), got {delta!r}")
    if rho <= 0:
        return 0.0
    a = np.asarray(orders, dtype=np.float64)
    a = a[a > 1]
    eps = a * rho + (math.log(1.0 / delta) + (a - 1.0) * np.log1p(-1.0 / a) - np.log(a)) / (a - 1.0)
    return float(max(eps.min(), 0.0))


class ZCDPAccountant:
    r"""The privacy spent by discrete Gaussian releases, composed in zCDP (module docstring).

    Args:
        delta (float): the :math:`\delta` of the reported :math:`(\varepsilon, \delta)`. (default: ``1e-6``)

    :meth:`spend` records one release (its L2 sensitivity, noise scale and
    coordinate count, in the same integer units); :attr:`rho` is their sum
    and :meth:`epsilon` the :math:`(\varepsilon, \delta)` of everything so far.
    """

    def __init__(self, delta: float = 1e-6):
        if not (isinstance(delta, float) and 0 < delta < 1):
            raise ConfigError(f"privacy.delta must be a number in (0, 1), got {delta!r}")
        self.delta = float(delta)
        self.rho = 0.0
        self.releases = 0
        self.noise_multipliers: dict[float, int] = {}

    def spend(self, sensitivity: float, sigma: float, dims: int = 1) -> float:
        """Record one release; returns its :math:`\\rho`."""
        if not (sensitivity >= 0 and sigma > 0):
            raise ValueError(f"ZCDPAccountant.spend: needs sensitivity >= 0 and sigma > 0, got {sensitivity}, {sigma}")
        rho = 0.5 * ((sensitivity / sigma) ** 2 + _tail_term(sigma, dims))
        self.rho += rho
        self.releases += 1
        z = round(sigma / sensitivity, 12) if sensitivity > 0 else math.inf
        self.noise_multipliers[z] = self.noise_multipliers.get(z, 0) + 1
        return rho

    def epsilon(self, delta: float | None = None, orders: Sequence[float] = DEFAULT_ORDERS) -> float:
        return epsilon_from_rho(self.rho, self.delta if delta is None else delta, orders)

    def report(self) -> dict:
        return {"releases": self.releases, "rho": self.rho, "delta": self.delta, "epsilon": self.epsilon(),
                "accountant": "zCDP (discrete Gaussian, Canonne-Kamath-Steinke 2020), converted to (epsilon, delta)"}


def opacus_epsilon(noise_multiplier: float, releases: int, delta: float) -> float:
    """The :math:`\\varepsilon` Opacus' ``RDPAccountant`` reports for ``releases`` Gaussian releases of noise
    multiplier ``noise_multiplier`` at sampling rate 1 (extra ``privacy``; ImportError without Opacus)."""
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(float(noise_multiplier), 1.0, int(releases))]
    return float(acc.get_epsilon(delta=delta))
