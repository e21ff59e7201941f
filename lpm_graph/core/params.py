r"""Named model parameters :math:`\theta`: declarations, values, bounds, transforms, time variation.

**Declared, namespaced.** Every process declares the parameters it reads
as :class:`ParamSpec` (name, domain, shape, unit, default), under its own
namespace: ``degroot.susceptibility``, ``market.wage_rigidity``.  Two
processes of the same kind (two pathogens, two markets) therefore never collide.  The
model checks every configured value against its declaration — domain,
shape, a default or a value present — before any simulation work.

A :class:`ParameterSet` holds the values by their dotted names:

* **Learnable or fixed.** Learnable entries are ``nn.Parameter`` (gradients
  flow to them through the whole unroll); fixed ones are buffers, so
  ``.to(device)`` and ``state_dict()`` carry both.
* **Bounds and transforms.** A learnable parameter with bounds ``[lo, hi]``
  is stored unconstrained and mapped by
  :math:`\theta = lo + (hi - lo)\,\sigma(\phi)`; with ``[lo, null]`` by
  :math:`\theta = lo + \operatorname{softplus}(\phi)`; without bounds
  :math:`\theta = \phi`.  An optimiser then never leaves the bounds.
* **Time variation.** ``time_varying={'transmission.beta_community': 7}``
  makes the value a list with one entry per 7 steps; step :math:`t` reads
  entry :math:`\min(\lfloor t/7 \rfloor, K-1)`.  Entries may themselves be
  per-group lists.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpm_graph.errors import ConfigError

__all__ = ["ParamSpec", "ParameterSet", "DOMAINS", "check_domain", "check_shape", "flatten_params", "GROUP"]

#: name -> (predicate, description) of the accepted values
DOMAINS: dict[str, tuple] = {
    "real": (lambda v: math.isfinite(v), "a finite number"),
    "nonnegative": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "positive": (lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    "probability": (lambda v: 0.0 <= v <= 1.0, "a probability in [0, 1]"),
    "count": (lambda v: math.isfinite(v) and v >= 0 and float(v).is_integer(), "a whole number >= 0"),
}

#: a dimension of a parameter's shape with one entry per group of the declaring process's grouping
GROUP = "group"


@dataclass(frozen=True)
class ParamSpec:
    """A parameter a process reads.

    Args:
        name (str): local name; the model knows it as ``<process name>.<name>``.
        domain (str): one of :data:`DOMAINS`. (default: ``"real"``)
        shape (tuple): dimensions, each an ``int`` or :data:`GROUP` (one entry
            per group of ``grouping``); ``()`` for a scalar. (default: ``()``)
        scalar_ok (bool): a single number is accepted for a non-scalar shape
            and broadcast. (default: ``True``)
        grouping (str, optional): the grouping (``Model(groupings=...)``) that
            :data:`GROUP` dimensions refer to.
        default (optional): value when the config gives none; ``None``: the
            config must give one.
        unit (str): e.g. ``"days"``, ``"1/day"``, ``"probability"``.
        doc (str): one line.
    """

    name: str
    domain: str = "real"
    shape: tuple = ()
    scalar_ok: bool = True
    grouping: str | None = None
    default: object = None
    unit: str = ""
    doc: str = ""

    def describe_shape(self, group_sizes: Mapping[str, int] | None = None) -> str:
        if not self.shape:
            return "scalar"
        dims = [str((group_sizes or {}).get(self.grouping, f"#{self.grouping}")) if d == GROUP else str(d)
                for d in self.shape]
        full = f"[{', '.join(dims)}]"
        if self.grouping and GROUP in self.shape:
            full += f" (one per {self.grouping} group)"
        return ("scalar or " + full) if self.scalar_ok else full


def flatten_params(values: Mapping | None, prefix: str = "") -> dict[str, object]:
    """``{'degroot': {'susceptibility': 0.3}}`` (and dotted keys) to ``{'degroot.susceptibility': 0.3}``.

    A namespace set to ``None`` is left out (a config's way to remove one it inherits).
    """
    out: dict[str, object] = {}
    for key, value in dict(values or {}).items():
        name = f"{prefix}{key}"
        if value is None and not prefix:
            continue
        if isinstance(value, Mapping):
            out.update(flatten_params(value, name + "."))
        else:
            out[name] = value
    return out


def _flatten(value) -> list[float]:
    if isinstance(value, Tensor):
        return [float(v) for v in value.detach().flatten().tolist()]
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [x for v in value for x in _flatten(v)]
    return [float(value)]


def check_domain(name: str, value, domain: str, where: str = "model.params") -> None:
    """Raise ``ConfigError`` naming ``where.name[i]`` if a value is outside ``domain``."""
    if domain not in DOMAINS:
        raise ConfigError(f"{where}.{name}: unknown domain {domain!r}; use one of {sorted(DOMAINS)}")
    accept, text = DOMAINS[domain]
    try:
        values = _flatten(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.{name} must be a number or a list of numbers, got {value!r}") from None
    if not values:
        raise ConfigError(f"{where}.{name} is empty; give a number or a list of numbers")
    for i, v in enumerate(values):
        if not accept(v):
            idx = f"[{i}]" if len(values) > 1 or isinstance(value, (list, tuple)) else ""
            raise ConfigError(f"{where}.{name}{idx} must be {text}, got {v}")


def _shape_of(value) -> tuple[int, ...]:
    if isinstance(value, Tensor):
        return tuple(value.shape)
    if isinstance(value, Sequence) and not isinstance(value, str):
        inner = {_shape_of(v) for v in value}
        if len(inner) > 1:
            raise ConfigError(f"a ragged list {value!r}: every entry must have the same length")
        return (len(value), *(inner.pop() if inner else ()))
    return ()


def check_shape(full_name: str, spec: ParamSpec, value, group_sizes: Mapping[str, int], process: str,
                time_varying: bool = False) -> None:
    """Raise ``ConfigError`` if ``value`` does not fit ``spec.shape`` (a leading time axis if time-varying).

    Group dimensions whose size is not known yet (the grouping is read from
    the graph) are checked when the graph is prepared.
    """
    try:
        shape = _shape_of(value)
    except ConfigError as e:
        raise ConfigError(f"model.params.{full_name} (read by process {process!r}) is {e}") from None
    if time_varying:
        if not shape:
            raise ConfigError(f"model.params.{full_name} is time-varying: give a list with one value per period")
        shape = shape[1:]
    expected = []
    for d in spec.shape:
        expected.append(group_sizes.get(spec.grouping) if d == GROUP else int(d))
    ok = shape == () and spec.scalar_ok or (len(shape) == len(expected)
                                              and all(e is None or e == s for e, s in zip(expected, shape)))
    if not ok:
        got = "a scalar" if shape == () else f"shape {list(shape)}"
        raise ConfigError(f"model.params.{full_name} is {got} but process {process!r} reads it as "
                          f"{spec.describe_shape(group_sizes)}" + (f" [{spec.unit}]" if spec.unit else "")
                          + "; give " + ("one number" if not spec.shape else spec.describe_shape(group_sizes)))


def _storage(name: str) -> str:
    """``nn.ParameterDict`` and buffer names cannot hold dots."""
    return name.replace(".", "__")


class ParameterSet(nn.Module):
    r"""Named scalar or vector parameters.

    Args:
        values (Mapping[str, float | list]): the parameter values; a list holds
            one value per group (or per period, for time-varying ones).
        learnable (Sequence[str], optional): names to optimise; the rest are
            fixed. (default: none)
        bounds (Mapping[str, [lo, hi]], optional): bounds of learnable
            parameters; ``hi`` may be ``None``. (default: none)
        time_varying (Mapping[str, int], optional): period in steps of each
            time-varying parameter. (default: none)
        dtype: floating type of the stored values. (default: float32)

    ``params['degroot.susceptibility']`` returns the constrained value (scalar ``[]``,
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
                raise ConfigError(f"{what} names {unknown}, which are not in model.params "
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
                    raise ConfigError(f"model.time_varying.{name} must be a period of >= 1 steps, "
                                        f"got {time_varying[name]}")
                if t.dim() == 0:
                    raise ConfigError(f"model.params.{name} is time-varying: give a list with one value per "
                                        f"{time_varying[name]} steps")
            if name in bounds:
                t = self._unconstrain(name, t)
            if name in self.learnable:
                self._params[_storage(name)] = nn.Parameter(t)
            else:
                self.register_buffer(f"fixed_{_storage(name)}", t)

    # -- transforms ----------------------------------------------------------
    def _bounds(self, name: str) -> tuple[float, float | None]:
        lo, hi = self.bounds[name]
        lo = float(lo)
        hi = None if hi is None else float(hi)
        if hi is not None and not hi > lo:
            raise ConfigError(f"model.bounds.{name} must be [lo, hi] with hi > lo, got {[lo, hi]}")
        return lo, hi

    def _unconstrain(self, name: str, value: Tensor) -> Tensor:
        lo, hi = self._bounds(name)
        if (value < lo).any() or (hi is not None and (value > hi).any()):
            raise ConfigError(f"model.params.{name} = {value.tolist()} is outside model.bounds.{name} = {[lo, hi]}")
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
        key = _storage(name)
        if key in self._params:
            return self._params[key]
        try:
            return getattr(self, f"fixed_{key}")
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
