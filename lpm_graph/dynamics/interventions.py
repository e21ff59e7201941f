r"""Environment functions :math:`e(t) = g(s(t), e, \theta, t)`: interventions.

An environment module takes ``(t, state, params, env)`` and returns an
updated :class:`~lpm_graph.dynamics.transmission.Environment`.  The model
applies them in config order at the start of every step, from a neutral
environment.
"""
from __future__ import annotations

from torch import nn

from lpm_graph.dynamics.transmission import Environment

__all__ = ["VenueClosure"]


class VenueClosure(nn.Module):
    r"""Scale the contact intensity of a venue type (or contact relation) over a window.

    .. math::

        e_\tau(t) \leftarrow e_\tau(t)\cdot
        \begin{cases} f & t_0 \le t < t_1 \\ 1 & \text{otherwise} \end{cases}

    Args:
        venue_type (str): venue node type (``"school"``) or contact relation
            name (``"contact"``).
        start (int): first step of the closure, inclusive.
        end (int): step at which it ends, exclusive; ``None`` for never.
        factor (float): remaining fraction of contact in ``[0, 1]``; 0 closes
            the venues. (default: ``0.0``)
    """

    def __init__(self, venue_type: str, start: int, end: int | None = None, factor: float = 0.0):
        super().__init__()
        from lpm_graph.data.validate import ConfigError

        if not 0.0 <= float(factor) <= 1.0:
            raise ConfigError(f"VenueClosure.factor must be in [0, 1] (remaining fraction of contact), got {factor}")
        if int(start) < 0 or (end is not None and int(end) < int(start)):
            raise ConfigError(f"VenueClosure needs 0 <= start <= end, got start={start}, end={end}")
        self.venue_type, self.start, self.end, self.factor = venue_type, int(start), end, float(factor)

    def active(self, t: int) -> bool:
        return self.start <= t and (self.end is None or t < int(self.end))

    def forward(self, t: int, state, params, env: Environment) -> Environment:
        return env.with_scale(self.venue_type, self.factor) if self.active(t) else env

    def extra_repr(self) -> str:
        return f"venue_type={self.venue_type!r}, start={self.start}, end={self.end}, factor={self.factor}"
