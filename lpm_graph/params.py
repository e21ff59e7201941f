r"""Named model parameters :math:`\theta`: values, bounds, transforms, time variation.

A :class:`ParameterSet` holds every number the step stack reads by name
(``beta_household``, ``infectious_period``, an age-specific ``fatality``
vector, a weekly ``beta_community`` multiplier ...).

* **Learnable or fixed.** Learnable entries are ``nn.Parameter`` (gradients
  flow to them through the whole unroll); fixed ones are buffers, so
  ``.to(device)`` and ``state_dict()`` carry both.
* **Bounds and transforms.** A learnable parameter with bounds ``[lo, hi]``
  is stored unconstrained and mapped by
  :math:`\theta = lo + (hi - lo)\,\sigma(\phi)`; with ``[lo, null]`` by
  :math:`\theta = lo + \operatorname{softplus}(\phi)`; without bounds
  :math:`\theta = \phi`.  An optimiser then never leaves the bounds.
* **Time variation.** ``time_varying={'beta_community': 7}`` makes the value
  a list with one entry per 7 steps; step :math:`t` reads entry
  :math:`\min(\lfloor t/7 \rfloor, K-1)`.  Entries may themselves be
  per-age-group lists.

Each module of the step stack declares the parameters it reads and their
domain in ``param_domains`` (e.g. ``{'fatality': 'probability'}``); the model
checks the values against the domains when it is built, before any
simulation work, and reports the offending config field.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ParameterSet", "DOMAINS", "check_domain"]

#: name -> (predicate, description) of the accepted values
DOMAINS: dict[str, tuple] = {
    "real": (lambda v: math.isfinite(v), "a finite number"),
    "nonnegative": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "positive": (lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    "probability": (lambda v: 0.0 <= v <= 1.0, "a probability in [0, 1]"),
}


def _flatten(value) -> list[float]:
    if isinstance(value, Tensor):
        return [float(v) for v in value.detach().flatten().tolist()]
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [x for v in value for x in _flatten(v)]
    return [float(value)]


def _config_error(msg: str):
    from lpm_graph.data.validate import ConfigError

    return ConfigError(msg)


def check_domain(name: str, value, domain: str, where: str = "model.params") -> None:
    """Raise ``ConfigError`` naming ``where.name[i]`` if a value is outside ``domain``."""
    if domain not in DOMAINS:
        raise _config_error(f"{where}.{name}: unknown domain {domain!r}; use one of {sorted(DOMAINS)}")
    accept, text = DOMAINS[domain]
    try:
        values = _flatten(value)
    except (TypeError, ValueError):
        raise _config_error(f"{where}.{name} must be a number or a list of numbers, got {value!r}") from None
    if not values:
        raise _config_error(f"{where}.{name} is empty; give a number or one value per age group")
    for i, v in enumerate(values):
        if not accept(v):
            idx = f"[{i}]" if len(values) > 1 or isinstance(value, (list, tuple)) else ""
            raise _config_error(f"{where}.{name}{idx} must be {text}, got {v}")


class ParameterSet(nn.Module):
    r"""Named scalar or vector parameters.

    Args:
        values (Mapping[str, float | list]): the parameter values; a list holds
            one value per age group (or per period, for time-varying ones).
        learnable (Sequence[str], optional): names to optimise; the rest are
            fixed. (default: none)
        bounds (Mapping[str, [lo, hi]], optional): bounds of learnable
            parameters; ``hi`` may be ``None``. (default: none)
        time_varying (Mapping[str, int], optional): period in steps of each
            time-varying parameter. (default: none)
        dtype: floating type of the stored values. (default: float32)

    ``params['beta_household']`` returns the constrained value (scalar ``[]``,
    vector ``[G]``, or ``[K, ...]`` if time-varying); ``params.at(t)`` the
    values in effect at step ``t``; ``params.raw(name)`` the stored tensor
    (the ``nn.Parameter`` an optimiser updates).
    """

    def __init__(self, values: Mapping[str, object], learnable: Sequence[str] = (),
                 bounds: Mapping[str, Sequence] | None = None, time_varying: Mapping[str, int] | None = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        values = dict(values)
        bounds = {k: tuple(v) for k, v in dict(bounds or {}).items()}
        time_varying = {k: int(v) for k, v in dict(time_varying or {}).items()}
        for what, names in (("model.learnable", learnable), ("model.bounds", bounds),
                            ("model.time_varying", time_varying)):
            unknown = sorted(set(names) - set(values))
            if unknown:
                raise _config_error(f"{what} names {unknown}, which are not in model.params "
                                    f"(known: {sorted(values)})")
        self.names = list(values)
        self.learnable = [n for n in self.names if n in set(learnable)]
        self.bounds = bounds
        self.time_varying = time_varying
        self._params = nn.ParameterDict()
        for name, value in values.items():
            check_domain(name, value, "real")
            t = torch.as_tensor(value if isinstance(value, (list, tuple)) else float(value), dtype=dtype)
            if name in time_varying:
                if time_varying[name] < 1:
                    raise _config_error(f"model.time_varying.{name} must be a period of >= 1 steps, "
                                        f"got {time_varying[name]}")
                if t.dim() == 0:
                    raise _config_error(f"model.params.{name} is time-varying: give a list with one value per "
                                        f"{time_varying[name]} steps")
            if name in bounds:
                t = self._unconstrain(name, t)
            if name in self.learnable:
                self._params[name] = nn.Parameter(t)
            else:
                self.register_buffer(f"fixed_{name}", t)

    # -- transforms ----------------------------------------------------------
    def _bounds(self, name: str) -> tuple[float, float | None]:
        lo, hi = self.bounds[name]
        lo = float(lo)
        hi = None if hi is None else float(hi)
        if hi is not None and not hi > lo:
            raise _config_error(f"model.bounds.{name} must be [lo, hi] with hi > lo, got {[lo, hi]}")
        return lo, hi

    def _unconstrain(self, name: str, value: Tensor) -> Tensor:
        lo, hi = self._bounds(name)
        if (value < lo).any() or (hi is not None and (value > hi).any()):
            raise _config_error(f"model.params.{name} = {value.tolist()} is outside model.bounds.{name} = {[lo, hi]}")
        eps = 1e-6
        if hi is None:
            z = (value - lo).clamp_min(eps)
            return z + torch.log(-torch.expm1(-z))  # inverse softplus
        q = ((value - lo) / (hi - lo)).clamp(eps, 1 - eps)
        return torch.logit(q)

    def _constrain(self, name: str, raw: Tensor) -> Tensor:
        if name not in self.bounds:
            return raw
        lo, hi = self._bounds(name)
        if hi is None:
            return lo + F.softplus(raw)
        return lo + (hi - lo) * torch.sigmoid(raw)

    # -- access --------------------------------------------------------------
    def raw(self, name: str) -> Tensor:
        """The stored tensor: the ``nn.Parameter`` (unconstrained) or the fixed buffer."""
        if name in self._params:
            return self._params[name]
        try:
            return getattr(self, f"fixed_{name}")
        except AttributeError:
            raise KeyError(f"parameter {name!r} is not defined; known: {self.names}") from None

    def __getitem__(self, name: str) -> Tensor:
        return self._constrain(name, self.raw(name))

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def as_dict(self) -> dict[str, Tensor]:
        """All constrained values (time-varying ones with their time axis)."""
        return {n: self[n] for n in self.names}

    def at(self, t: int, values: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """The values in effect at step ``t``.

        Args:
            t (int): the step.
            values (Mapping, optional): constrained values to use instead of
                the stored ones, e.g. from :meth:`as_dict` computed once per
                run, or the output of a calibration network.
        """
        values = self.as_dict() if values is None else values
        out = dict(values)
        for name, period in self.time_varying.items():
            v = values[name]
            out[name] = v[min(t // period, v.size(0) - 1)]
        return out

    def values_dict(self) -> dict[str, float | list]:
        """Plain Python values, for JSON output."""
        return {n: self[n].detach().cpu().tolist() for n in self.names}

    def extra_repr(self) -> str:
        return (f"names={self.names}, learnable={self.learnable}, bounds={self.bounds}, "
                f"time_varying={self.time_varying}")
