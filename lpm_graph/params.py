r"""Named model parameters :math:`\theta`, learnable or fixed.

A :class:`ParameterSet` holds every number the step stack reads by name
(``beta_household``, ``infectious_period``, an age-specific ``fatality``
vector, ...).  Learnable entries are ``nn.Parameter`` (gradients flow to them
through the whole unroll); fixed ones are buffers, so ``.to(device)`` and
``state_dict()`` carry both.

Each module of the step stack declares the parameters it reads and their
domain in ``param_domains`` (e.g. ``{'fatality': 'probability'}``); the model
checks the values against the domains when it is built, before any simulation
work, and reports the offending config field.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
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
        return [float(v) for v in value]
    return [float(value)]


def check_domain(name: str, value, domain: str, where: str = "model.params") -> None:
    """Raise ``ValueError`` naming ``where.name[i]`` if a value is outside ``domain``."""
    from lpm_graph.data.validate import ConfigError

    if domain not in DOMAINS:
        raise ConfigError(f"{where}.{name}: unknown domain {domain!r}; use one of {sorted(DOMAINS)}")
    accept, text = DOMAINS[domain]
    try:
        values = _flatten(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.{name} must be a number or a list of numbers, got {value!r}") from None
    if not values:
        raise ConfigError(f"{where}.{name} is empty; give a number or one value per age group")
    for i, v in enumerate(values):
        if not accept(v):
            idx = f"[{i}]" if len(values) > 1 or isinstance(value, (list, tuple)) else ""
            raise ConfigError(f"{where}.{name}{idx} must be {text}, got {v}")


class ParameterSet(nn.Module):
    r"""Named scalar or vector parameters.

    Args:
        values (Mapping[str, float | list[float]]): the parameter values; a
            list holds one value per age group (or per any index the reading
            module documents).
        learnable (Sequence[str], optional): names to optimise; the rest are
            fixed. (default: none)
        dtype: floating type of the stored values. (default: float32)

    ``params['beta_household']`` returns the tensor (scalar ``[]`` or vector
    ``[G]``); ``params.as_dict()`` all of them.
    """

    def __init__(self, values: Mapping[str, object], learnable: Sequence[str] = (),
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        from lpm_graph.data.validate import ConfigError

        values = dict(values)
        unknown = sorted(set(learnable) - set(values))
        if unknown:
            raise ConfigError(f"model.learnable names {unknown}, which are not in model.params "
                              f"(known: {sorted(values)})")
        self.names = list(values)
        self.learnable = [n for n in self.names if n in set(learnable)]
        self._params = nn.ParameterDict()
        for name, value in values.items():
            check_domain(name, value, "real")
            t = torch.as_tensor(_flatten(value) if isinstance(value, (list, tuple)) else float(value), dtype=dtype)
            if name in self.learnable:
                self._params[name] = nn.Parameter(t)
            else:
                self.register_buffer(f"fixed_{name}", t)

    def __getitem__(self, name: str) -> Tensor:
        if name in self._params:
            return self._params[name]
        try:
            return getattr(self, f"fixed_{name}")
        except AttributeError:
            raise KeyError(f"parameter {name!r} is not defined; known: {self.names}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def as_dict(self) -> dict[str, Tensor]:
        return {n: self[n] for n in self.names}

    def values_dict(self) -> dict[str, float | list[float]]:
        """Plain Python values, for JSON output."""
        return {n: (self[n].tolist()) for n in self.names}

    def extra_repr(self) -> str:
        return f"names={self.names}, learnable={self.learnable}"
