r"""Given decisions: each decision's probability is a parameter, the same for every node.

:math:`p_{d,i}(t) = \bar p_d(t)`, the parameter ``<name>.<decision>`` (a
scalar, or one value per period with ``model.time_varying``): a scenario of
imposed behaviour, or a mobility series fed in as it was observed.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from lpm_graph.behavior.base import Behavior
from lpm_graph.core.params import ParamSpec
from lpm_graph.core.process import StepContext

__all__ = ["FixedDecisions"]


class FixedDecisions(Behavior):
    """Every node decides with the probability the parameter ``<name>.<decision>`` gives (module docstring).

    Args:
        decisions (Sequence[str] | Mapping[str, float]): the decisions, or decision -> default probability.
        node_type (str), grouping (str), name (str): as :class:`~lpm_graph.behavior.Behavior`. (default name
            ``"fixed"``)
    """

    default_name = "fixed"

    def __init__(self, decisions: Sequence[str] | Mapping[str, float] = ("stays_home",), node_type: str = "person",
                 grouping: str | None = "age", name: str | None = None):
        defaults = dict(decisions) if isinstance(decisions, Mapping) else {d: 0.0 for d in decisions}
        super().__init__(list(defaults), node_type, grouping, name)
        self.defaults = {d: float(v) for d, v in defaults.items()}

    def param_specs(self):
        return [ParamSpec(d, "probability", default=self.defaults[d], unit="probability",
                          doc=f"probability of {d}, every node alike") for d in self.decisions]

    def decide(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> dict[str, Tensor]:
        n = ctx.graph.num_nodes[self.node_type]
        return {d: self.value(ctx, d).to(ctx.dtype).expand(n, 1) for d in self.decisions}
