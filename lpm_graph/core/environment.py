r"""Generic environment processes: factors that act over a window of steps.

:class:`Scale` multiplies a field by a factor :math:`f` while
:math:`t_0 \le t < t_1`:

.. math::

    e(t) \leftarrow e(t)\cdot
    \begin{cases} f & t_0 \le t < t_1 \\ 1 & \text{otherwise} \end{cases}

Any process that reads the field as optional with neutral value 1 sees the
factor: a venue type's contact (a closure), the influence agents take from
their neighbours (a platform shutdown), a firm's capacity (a disruption).
The factor is a parameter (``<name>.factor``), so it can be calibrated,
differentiated and optimised.
"""
from __future__ import annotations

from torch import Tensor

from lpm_graph.core.params import ParamSpec
from lpm_graph.core.process import Output, Process, StepContext
from lpm_graph.core.state import FieldSpec
from lpm_graph.errors import ConfigError

__all__ = ["Window", "Scale"]


class Window(Process):
    """Base of environment processes active over ``[start, end)``."""

    role = "environment"

    def __init__(self, start: int = 0, end: int | None = None, name: str | None = None):
        super().__init__(name)
        if not isinstance(start, int) or isinstance(start, bool) or start < 0 or (
                end is not None and (not isinstance(end, int) or end < start)):
            raise ConfigError(f"{type(self).__name__} ({self.name}) needs integer 0 <= start <= end, got "
                              f"start={start!r}, end={end!r}")
        self.start, self.end = start, end

    def active(self, t: int) -> bool:
        return self.start <= t and (self.end is None or t < self.end)


class Scale(Window):
    """Multiply field ``field`` by the parameter ``factor`` while active (module docstring).

    Args:
        field (str): the field, ``"<scope>.<name>"`` (a scalar field, combined by product).
        start (int): first step, inclusive. (default: 0)
        end (int, optional): step at which it ends, exclusive; ``None``: never.
        factor (float): the factor's default value. (default: ``0.0``)
        domain (str): the factor's domain. (default: ``"nonnegative"``)
        name (str): the process name. (default: ``"scale"``)
    """

    default_name = "scale"
    partitionable = True  # a scalar factor

    def __init__(self, field: str, start: int = 0, end: int | None = None, factor: float = 0.0,
                 domain: str = "nonnegative", name: str | None = None):
        super().__init__(start, end, name)
        if not isinstance(field, str) or field.count(".") != 1:
            raise ConfigError(f"{type(self).__name__} ({self.name}).field must be '<scope>.<name>', got {field!r}")
        self.field, self.factor, self.domain = field, factor, domain

    def param_specs(self):
        return [ParamSpec("factor", self.domain, default=self.factor, doc=f"factor on {self.field} while active")]

    def field_specs(self):
        scope, name = self.field.split(".")
        return [FieldSpec(scope, name, per_node=False, combine="product")]

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        if not self.active(ctx.t):
            return Output()
        return Output(fields={self.field: self.value(ctx, "factor")})

    def extra_repr(self) -> str:
        return f"name={self.name!r}, field={self.field!r}, start={self.start}, end={self.end}"
