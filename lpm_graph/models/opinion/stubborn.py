r"""Stubborn agents (Friedkin–Johnsen): DeGroot averaging anchored to each person's initial opinion.

.. math::

    x_i(t+1) = \gamma_i\, x_i(0) + (1 - \gamma_i)\,\Big[x_i(t) + \alpha_{a(i)}\, s(t)\,\big(m_i(t) - x_i(t)\big)\Big]

with :math:`\gamma_i \in [0, 1]` person :math:`i`'s stubbornness — the weight
they keep on their initial opinion (their *prejudice*) every step — and the
rest as in :class:`~lpm_graph.models.opinion.DeGroot` (:math:`m = Wx` the
neighbours' mean, :math:`\alpha` the susceptibility, :math:`s` the
influence scale).  With :math:`\alpha = s = 1` it is the model of
N. E. Friedkin and E. C. Johnsen (*Social influence and opinions*, Journal
of Mathematical Sociology 15(3-4), 1990; *Social influence networks and
opinion change*, Advances in Group Processes 16, 1999),
:math:`x(t+1) = \Lambda W x(t) + (I - \Lambda) x(0)` with their
susceptibilities :math:`\Lambda = I - \Gamma`.  In matrix form, with
:math:`P = (I - A) + A W` and :math:`\Gamma = \operatorname{diag}(\gamma_i)`,

.. math::

    x(t+1) = \Gamma x(0) + (I - \Gamma) P x(t) \;\longrightarrow\;
    x^* = \big(I - (I - \Gamma) P\big)^{-1} \Gamma\, x(0)

whenever every person is influenced, directly or through others, by someone
with :math:`\gamma > 0` (then the spectral radius of :math:`(I - \Gamma)P`
is below 1); :math:`\gamma = 0` everywhere is DeGroot.  A person with
:math:`\gamma_i = 1` never moves: a stubborn agent, who pulls everyone who
listens to them, directly or not, towards their opinion.

**Stubbornness per person**: :math:`\gamma_i = \gamma_{a(i)}\, c_i`, or 1:

* :math:`\gamma_{a(i)}` the parameter ``stubbornness`` (a probability; a
  scalar, or one value per group of the DeGroot ``grouping``);
* :math:`c_i` the node attribute ``stubborn_attribute`` (in :math:`[0, 1]`;
  1 without one), e.g. 1 for the stubborn and 0 for everyone else;
* each person is fully stubborn (:math:`\gamma_i = 1`) with probability
  ``stubborn_fraction``: the counter-based uniform of their uid at step
  :math:`-1` in the stream ``stubborn`` (so layout-invariant, the same in
  every step, its own draw per replicate column).

The initial opinion is kept as the state ``person.<state>_prejudice``
(constant, not observed).
"""
from __future__ import annotations

import torch
from torch import Tensor

from lpm_graph.core.graph import Requirements
from lpm_graph.core.params import GROUP, ParamSpec
from lpm_graph.core.process import Output, StepContext
from lpm_graph.core.state import StateSpec
from lpm_graph.errors import ConfigError, PopulationGraphError
from lpm_graph.models.opinion.degroot import DeGroot, _per_node

__all__ = ["FriedkinJohnsen"]


class FriedkinJohnsen(DeGroot):
    r"""DeGroot averaging anchored to the initial opinions with weights :math:`\gamma_i` (module docstring).

    Args:
        stubborn_attribute (str, optional): a node attribute :math:`c_i \in [0, 1]` multiplying the
            stubbornness. (default: ``None``: 1 for everyone)
        stubborn_fraction (float): probability that a person is fully stubborn, :math:`\gamma_i = 1`.
            (default: ``0.0``)
        name (str): the process name and parameter namespace. (default: ``"degroot"``)
        **kwargs: the arguments of :class:`~lpm_graph.models.opinion.DeGroot` (initial opinions,
            grouping, node type, state, fields read).

    Parameters (``model.params.<name>``): ``susceptibility`` :math:`\alpha` and ``stubbornness``
    :math:`\gamma` (probabilities; scalars or one value per group of ``grouping``).
    """

    default_name = "degroot"  # the same streams (initial opinions) as DeGroot: the two compare on common draws

    def __init__(self, stubborn_attribute: str | None = None, stubborn_fraction: float = 0.0,
                 name: str | None = None, **kwargs):
        super().__init__(name=name, **kwargs)
        if stubborn_attribute is not None and (not isinstance(stubborn_attribute, str) or not stubborn_attribute):
            raise ConfigError(f"FriedkinJohnsen ({self.name}).stubborn_attribute must be a node attribute name or "
                              f"null, got {stubborn_attribute!r}")
        if isinstance(stubborn_fraction, bool) or not isinstance(stubborn_fraction, (int, float)) or not (
                0.0 <= stubborn_fraction <= 1.0):
            raise ConfigError(f"FriedkinJohnsen ({self.name}).stubborn_fraction must be a probability in [0, 1], "
                              f"got {stubborn_fraction!r}")
        self.stubborn_attribute, self.stubborn_fraction = stubborn_attribute, float(stubborn_fraction)
        self.prejudice = f"{self.node_type}.{self.state}_prejudice"

    def state_specs(self):
        return [*super().state_specs(),
                StateSpec(self.node_type, f"{self.state}_prejudice", "continuous", init=None, unit="opinion",
                          doc="initial opinion, the anchor of the stubborn (constant)")]

    def param_specs(self):
        shape = (GROUP,) if self.grouping else ()
        return [*super().param_specs(),
                ParamSpec("stubbornness", "probability", shape, grouping=self.grouping, unit="weight per step",
                          doc="weight on one's initial opinion kept every step (0: DeGroot, 1: never moves)")]

    def streams(self):
        extra = [(self.node_type, self.stream("stubborn"))] if self.stubborn_fraction > 0 else []
        return [*super().streams(), *extra]

    def requirements(self) -> Requirements:
        req = super().requirements()
        if self.stubborn_attribute is not None:
            req.need(self.node_type, self.stubborn_attribute)
        return req

    def workspace(self) -> dict[str, float]:
        return {self.node_type: 5.0}  # the DeGroot step (2), gamma, x0 - y and its product

    def check_graph(self, graph) -> None:
        super().check_graph(graph)
        if self.stubborn_attribute is None:
            return
        c = graph.attribute(self.node_type, self.stubborn_attribute)
        n = graph.num_nodes[self.node_type]
        where = (f"FriedkinJohnsen ({self.name}) reads stubbornness factors from "
                 f"{self.node_type}.{self.stubborn_attribute}")
        if c.dim() == 2 and c.size(1) == 1:
            c = c.squeeze(1)
        if c.dim() != 1 or c.size(0) != n:
            raise PopulationGraphError(f"{where}, which must be one number per node (shape [{n}]), got "
                                       f"{tuple(c.shape)}")
        c = c.to(torch.float64)
        bad = ~((c >= 0) & (c <= 1))
        if bool(bad.any()):
            k = int(bad.nonzero()[0])
            raise PopulationGraphError(f"{where}; node {k} has {float(c[k])}, not in [0, 1]")

    def init(self, ctx: StepContext) -> Output:
        out = super().init(ctx)
        out.state[self.prejudice] = out.state[self.key]
        return out

    def stubbornness(self, ctx: StepContext, dtype: torch.dtype) -> Tensor:
        r""":math:`\gamma_i`: a scalar, or ``[N, 1]`` / ``[N, R]`` per person."""
        groups = ctx.graph.group_index(self.grouping) if self.grouping in ctx.graph.groupings else None
        gamma = _per_node(self.value(ctx, "stubbornness"), groups, dtype)
        if self.stubborn_attribute is not None:
            c = ctx.graph.attribute(self.node_type, self.stubborn_attribute).to(dtype).reshape(-1, 1)
            gamma = gamma * c
        if self.stubborn_fraction > 0:
            u = ctx.rng(self.node_type).uniform(-1, self.stream("stubborn"), dtype)
            gamma = torch.where(u < self.stubborn_fraction, torch.ones((), dtype=dtype, device=u.device), gamma)
        return gamma

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        y = super().forward(ctx, state, fields).state[self.key]
        x0 = state[self.prejudice]
        gamma = self.stubbornness(ctx, y.dtype)
        if not isinstance(gamma, Tensor) or gamma.dim() == 0:
            gamma = torch.as_tensor(gamma, dtype=y.dtype, device=y.device).expand(1, 1)
        # lerp: y + gamma (x0 - y), computed as x0 - (1 - gamma)(x0 - y) for gamma >= 1/2, so gamma = 1 is x0 exactly
        return Output(state={self.key: torch.lerp(y, x0, gamma.expand_as(y))})

    def extra_repr(self) -> str:
        extra = (f", stubborn_attribute={self.stubborn_attribute!r}" if self.stubborn_attribute else "") + (
            f", stubborn_fraction={self.stubborn_fraction:g}" if self.stubborn_fraction else "")
        return super().extra_repr() + extra
