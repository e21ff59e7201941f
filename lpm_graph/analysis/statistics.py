r"""Paired differences over replicates and their uncertainty.

With common random numbers, replicate :math:`r` of a scenario and replicate
:math:`r` of the baseline share every random draw that the scenario does not
change, so the paired differences :math:`d_r = y^{s}_r - y^{b}_r` are
independent draws of the scenario's effect with far less spread than the
outcomes themselves.  :func:`paired_summary` reports their mean, standard
deviation and the Student-t 95% interval of the mean,

.. math::

    \bar d \pm t_{0.975,\,R-1}\; s_d / \sqrt{R},

with :func:`t_quantile` computed exactly (closed-form CDF for integer degrees
of freedom, Abramowitz & Stegun 26.7.3-4, inverted by bisection), so no
statistics library is needed.
"""
from __future__ import annotations

import math

from torch import Tensor

__all__ = ["t_cdf_two_sided", "t_quantile", "paired_summary", "mean_sd"]


def t_cdf_two_sided(t: float, df: int) -> float:
    r""":math:`P(|T| < t)` for Student's t with integer ``df`` degrees of freedom (``t >= 0``).

    With :math:`\vartheta = \arctan(t/\sqrt{\nu})`: for odd :math:`\nu`,
    :math:`\frac{2}{\pi}\big(\vartheta + \sin\vartheta\,[\cos\vartheta + \tfrac{2}{3}\cos^3\vartheta
    + \dots + \tfrac{2\cdot4\cdots(\nu-3)}{1\cdot3\cdots(\nu-2)}\cos^{\nu-2}\vartheta]\big)`;
    for even :math:`\nu`, :math:`\sin\vartheta\,[1 + \tfrac12\cos^2\vartheta + \dots
    + \tfrac{1\cdot3\cdots(\nu-3)}{2\cdot4\cdots(\nu-2)}\cos^{\nu-2}\vartheta]`.
    """
    if df < 1 or int(df) != df:
        raise ValueError(f"t_cdf_two_sided: df must be a positive integer, got {df}")
    if t < 0:
        raise ValueError(f"t_cdf_two_sided: t must be >= 0, got {t}")
    theta = math.atan(t / math.sqrt(df))
    c, s = math.cos(theta), math.sin(theta)
    if df % 2 == 1:
        total, term = 0.0, c
        for k in range(1, (df - 1) // 2 + 1):
            if k > 1:
                term *= c * c * (2 * k - 2) / (2 * k - 1)
            total += term
        return 2.0 / math.pi * (theta + s * total) if df > 1 else 2.0 * theta / math.pi
    total, term = 1.0, 1.0
    for k in range(1, df // 2):
        term *= c * c * (2 * k - 1) / (2 * k)
        total += term
    return s * total


def t_quantile(p: float, df: int) -> float:
    """The ``p``-quantile (``0.5 <= p < 1``) of Student's t with integer ``df``, to ~1e-12."""
    if not 0.5 <= p < 1:
        raise ValueError(f"t_quantile: p must be in [0.5, 1), got {p}")
    target = 2 * p - 1
    lo, hi = 0.0, 1.0
    while t_cdf_two_sided(hi, df) < target:
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf_two_sided(mid, df) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def paired_summary(diff: Tensor, level: float = 0.95) -> dict[str, float]:
    """Mean, sd and the t interval of the mean of paired differences ``diff`` (``[R]``).

    With one replicate the sd and the interval are ``nan`` (no spread to estimate).
    """
    d = diff.detach().double().cpu().flatten()
    R = d.numel()
    mean = float(d.mean())
    if R < 2:
        return {"diff_mean": mean, "diff_sd": math.nan, "diff_ci_low": math.nan, "diff_ci_high": math.nan}
    sd = float(d.std())
    half = t_quantile(0.5 + level / 2, R - 1) * sd / math.sqrt(R)
    return {"diff_mean": mean, "diff_sd": sd, "diff_ci_low": mean - half, "diff_ci_high": mean + half}


def mean_sd(values: Tensor) -> tuple[float, float]:
    """Mean and sample sd (``nan`` for one value) of ``[R]`` values."""
    v = values.detach().double().cpu().flatten()
    return float(v.mean()), float(v.std()) if v.numel() > 1 else math.nan

