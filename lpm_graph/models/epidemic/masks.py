r"""The epidemic's reading of a behaviour's mask decision.

:class:`MaskEffect` turns the decision field ``person.masks``
(:math:`m_i`, the probability of wearing a mask, :mod:`lpm_graph.behavior`)
into the factors the epidemic reads:

.. math::

    e^{\sigma}_i = 1 - \varepsilon_{\mathrm{in}}\, m_i, \qquad
    e^{\iota}_i = 1 - \varepsilon_{\mathrm{out}}\, m_i

on ``person.susceptibility_factor`` (read by :class:`~lpm_graph.models.epidemic.SEIR`)
and ``person.infectiousness_factor`` (read by
:class:`~lpm_graph.models.epidemic.Infectiousness`), each combined by product
with the other writers (vaccination, isolation).  A mask then acts in every
contact, the household's included: the factors are per person, not per
venue.  Parameters ``efficacy_in`` and ``efficacy_out`` (the reduction of
susceptibility and of infectiousness of a wearer).  Place it after the
behaviour that decides ``masks`` (``model.behavior``).
"""
from __future__ import annotations

from torch import Tensor

from lpm_graph.core.params import ParamSpec
from lpm_graph.core.process import Output, Process, StepContext
from lpm_graph.core.state import FieldSpec

__all__ = ["MaskEffect"]


class MaskEffect(Process):
    """Mask wearing as susceptibility and infectiousness factors (module docstring).

    Args:
        decision (str): the mask decision field. (default: ``"person.masks"``)
        efficacy_in (float), efficacy_out (float): defaults of the parameters. (default: 0.3, 0.5)
        name (str): the process name. (default: ``"mask_effect"``)
    """

    role = "emission"
    default_name = "mask_effect"

    def __init__(self, decision: str = "person.masks", efficacy_in: float = 0.3, efficacy_out: float = 0.5,
                 name: str | None = None):
        super().__init__(name)
        self.decision = decision
        self.node_type = decision.split(".", 1)[0]
        self.efficacy_in, self.efficacy_out = float(efficacy_in), float(efficacy_out)

    def param_specs(self):
        return [ParamSpec("efficacy_in", "probability", default=self.efficacy_in,
                          doc="reduction of a mask wearer's susceptibility"),
                ParamSpec("efficacy_out", "probability", default=self.efficacy_out,
                          doc="reduction of a mask wearer's infectiousness")]

    def reads(self):
        return [self.decision]

    def field_specs(self):
        return [FieldSpec(self.node_type, "susceptibility_factor", combine="product"),
                FieldSpec(self.node_type, "infectiousness_factor", combine="product")]

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        m = fields[self.decision]
        return Output(fields={f"{self.node_type}.susceptibility_factor": 1.0 - self.value(ctx, "efficacy_in") * m,
                              f"{self.node_type}.infectiousness_factor": 1.0 - self.value(ctx, "efficacy_out") * m})
