r"""DeGroot opinion dynamics: each person moves part of the way towards their neighbours' mean opinion.

Every person :math:`i` holds an opinion :math:`x_i(t)`, a real number on the
scale of the initial opinions (e.g. :math:`[0, 1]`), owned by
:class:`DeGroot` as the continuous state ``person.opinion``.  One step:

.. math::

    x_i(t+1) = x_i(t) + \alpha_{a(i)}\, s(t)\,\big(m_i(t) - x_i(t)\big)

with :math:`m_i(t)` the neighbours' weighted mean opinion (field
``person.neighbour_opinion``, from
:class:`~lpm_graph.models.opinion.NeighbourMean`; a person's own opinion
where they have no neighbours), :math:`\alpha_{a(i)} \in [0, 1]` the
susceptibility to influence (parameter ``susceptibility``: a scalar, or one
value per group :math:`a(i)` of an optional grouping) and :math:`s(t) \ge 0`
the environment's influence scale (field ``person.influence_scale``; 1
without a writer — :class:`lpm_graph.core.Scale` writes it, e.g. 0 while a
platform is shut down).

**Decision** (:mod:`lpm_graph.behavior`).  A behaviour's decision field
``person.tunes_out`` (:math:`o_i`, read as optional, 0 without a writer) is
the probability that person :math:`i` tunes out of this round of
discussion: it takes in none of its neighbours' opinions and keeps its own
(it is still heard: its opinion still reaches its neighbours' means).  The
expected update scales the gap closed,

.. math::

    x_i(t+1) = x_i(t) + (1 - o_i)\,\alpha_{a(i)}\, s(t)\,\big(m_i(t) - x_i(t)\big),

in every model built on this update (the neighbours' mean of DeGroot, the
confidence-bounded mean of Hegselmann–Krause, the partner of a
Deffuant–Weisbuch pair, the Friedkin–Johnsen step before its pull to the
initial opinion), so :math:`o_i = 1` freezes a person's opinion and
:math:`o_i` in :math:`[0, 1]` keeps :math:`(I - A) + AW` row-stochastic with
:math:`A = \operatorname{diag}((1 - o_i)\,\alpha_{a(i)}\, s(t))`.

In matrix form, with the row-stochastic
:math:`W_{ij} = w_{ji} / \sum_{k} w_{ki}` and :math:`A = \operatorname{diag}(\alpha_{a(i)} s(t))`,

.. math::

    x(t+1) = \big((I - A) + A W\big)\, x(t).

For :math:`0 < \alpha s \le 1` the matrix :math:`(I - A) + AW` is row-stochastic:
opinions stay within the range of their initial values.  With one scalar
:math:`\alpha` and :math:`s = 1` it is the lazy chain :math:`(1-\alpha)I +
\alpha W`, whose stationary distribution :math:`\pi` (:math:`\pi^\top W =
\pi^\top`) is that of :math:`W`: on a connected, aperiodic graph opinions
reach the consensus :math:`\pi^\top x(0)`, and the deviation from it decays
as :math:`|\lambda_2|^t`, the second-largest eigenvalue modulus of
:math:`(1-\alpha) I + \alpha W`.  Steps are rounds of discussion;
``model.dt`` is not read.

**Initial opinions** (``initial``):

* ``uniform``: :math:`x_i(0) = \ell + (h - \ell)\,u_i` with :math:`u_i` the
  counter-based uniform (:class:`~lpm_graph.core.random.CounterRNG`) of
  person :math:`i`'s uid at step :math:`-1` in the stream
  ``initial_opinion`` (``<name>.initial_opinion`` under another process
  name).  They are drawn in expected mode too: the initial condition is
  part of the model, not an event whose mean the mean field would take
  (the mean, :math:`(\ell + h)/2` everywhere, has no disagreement to
  resolve).  So an expected-mode run and replicate 0 of a stochastic run
  with the same seed are the same trajectory, and replicate columns of a
  stochastic run are independent draws of the initial opinions.  Keyed by
  uid, the opinions do not depend on the node order.
* ``attribute``: :math:`x_i(0)` is the node attribute ``attribute`` (a
  number per person), the same in every replicate; a graph without it is a
  :class:`~lpm_graph.errors.PopulationGraphError` naming it.

Observables: the mean (``opinion_mean``) and the variance
(``opinion_var``, :math:`\frac1N \sum_i (x_i - \bar x)^2`) of the opinions,
per replicate and per group of the grouping if there is one.  Outcomes:
``final_variance`` (disagreement left at the end), ``final_mean``, and
``total_variance`` (:math:`\sum_{t=0}^{T} \operatorname{Var}_t`, the
disagreement summed over the run).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from lpm_graph.core.graph import Requirements
from lpm_graph.core.observe import Observable, Outcome
from lpm_graph.core.params import GROUP, ParamSpec
from lpm_graph.core.process import Output, Process, StepContext
from lpm_graph.core.state import Read, StateSpec
from lpm_graph.errors import ConfigError, PopulationGraphError

__all__ = ["DeGroot", "INITIAL"]

#: how initial opinions are set
INITIAL = ("uniform", "attribute")


def _per_node(value: Tensor, group: Tensor | None, dtype: torch.dtype) -> Tensor:
    """A scalar stays a scalar; a per-group vector becomes ``[N, 1]``."""
    value = value.to(dtype)
    return value if value.dim() == 0 else value.index_select(0, group).unsqueeze(1)


class DeGroot(Process):
    r"""DeGroot averaging of opinions (module docstring).

    Args:
        initial (str): ``"uniform"`` (on ``[low, high]`` from the counter-based
            generator) or ``"attribute"`` (a node attribute). (default: ``"uniform"``)
        low (float): lower end of the uniform initial opinions. (default: ``0.0``)
        high (float): upper end, ``> low``. (default: ``1.0``)
        attribute (str): the node attribute read with ``initial="attribute"``.
            (default: ``"opinion"``)
        grouping (str, optional): the grouping (``model.groupings``) of a
            per-group susceptibility and of grouped observables; ``None``: a
            scalar susceptibility. (default: ``None``)
        node_type (str): the node type holding opinions. (default: ``"person"``)
        state (str): the name of the opinion state; observables are
            ``<state>_mean`` and ``<state>_var``, and outcomes other than of
            ``opinion`` are prefixed ``<state>_``. (default: ``"opinion"``)
        neighbours (str): the field read as the neighbours' mean :math:`m_i`.
            (default: ``"person.neighbour_opinion"``)
        influence_scale (str): the field read as the influence scale
            :math:`s(t)`, optional (1 without a writer). (default: ``"person.influence_scale"``)
        tunes_out (str): the decision field read as the probability :math:`o_i` of tuning out, optional (0
            without a writer). (default: ``"person.tunes_out"``)
        name (str): the process name and parameter namespace. (default: ``"degroot"``)

    Parameters (``model.params.<name>``): ``susceptibility`` :math:`\alpha`,
    the fraction of the gap to the neighbours' mean closed per step (a
    probability; scalar or one value per group of ``grouping``).
    """

    role = "update"
    default_name = "degroot"
    partitionable = True  # per person; initial opinions drawn by uid (or read from the person's attribute)

    def __init__(self, initial: str = "uniform", low: float = 0.0, high: float = 1.0, attribute: str = "opinion",
                 grouping: str | None = None, node_type: str = "person", state: str = "opinion",
                 neighbours: str = "person.neighbour_opinion", influence_scale: str = "person.influence_scale",
                 tunes_out: str = "person.tunes_out", name: str | None = None):
        super().__init__(name)
        if initial not in INITIAL:
            raise ConfigError(f"DeGroot ({self.name}).initial must be one of {list(INITIAL)}, got {initial!r}")
        for label, v in (("low", low), ("high", high)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"DeGroot ({self.name}).{label} must be a finite number, got {v!r}")
        if initial == "uniform" and not high > low:
            raise ConfigError(f"DeGroot ({self.name}): initial opinions are uniform on [low, high], so high must be "
                              f"> low; got low={low}, high={high}")
        if not isinstance(attribute, str) or not attribute:
            raise ConfigError(f"DeGroot ({self.name}).attribute must be a node attribute name, got {attribute!r}")
        for label, key in (("neighbours", neighbours), ("influence_scale", influence_scale), ("tunes_out", tunes_out)):
            if not isinstance(key, str) or key.split(".", 1)[0] != node_type or key.count(".") != 1:
                raise ConfigError(f"DeGroot ({self.name}).{label} must be a field '{node_type}.<name>', got {key!r}")
        self.initial, self.low, self.high, self.attribute = initial, float(low), float(high), attribute
        self.grouping, self.node_type, self.state = grouping, node_type, state
        self.neighbours, self.influence_scale, self.tunes_out = neighbours, influence_scale, tunes_out
        self.key = f"{node_type}.{state}"
        self.prefix = "" if state == "opinion" else f"{state}_"

    # -- declarations --------------------------------------------------------
    def state_specs(self):
        return [StateSpec(self.node_type, self.state, "continuous", init=None, unit="opinion",
                          doc="opinion (on the scale of the initial opinions)")]

    def param_specs(self):
        shape = (GROUP,) if self.grouping else ()
        return [ParamSpec("susceptibility", "probability", shape, grouping=self.grouping,
                          unit="fraction of the gap per step",
                          doc="susceptibility to influence: share of the gap to the neighbours' mean closed per step")]

    def reads(self):
        return [self.key, self.neighbours, Read(self.influence_scale, optional=True, default=1.0),
                Read(self.tunes_out, optional=True, default=0.0)]

    def streams(self):
        return [(self.node_type, self.stream("initial_opinion"))] if self.initial == "uniform" else []

    def requirements(self) -> Requirements:
        req = Requirements()
        if self.initial == "attribute":
            req.need(self.node_type, self.attribute)
        return req

    def workspace(self) -> dict[str, float]:
        return {self.node_type: 2.0}  # m - x and its scaled copy

    def observables(self):
        by = (self.grouping,) if self.grouping else ()
        return [Observable(f"{self.state}_var", self.key, "var", by=by, panel="opinion variance", unit="opinion^2",
                           doc="variance of the opinions"),
                Observable(f"{self.state}_mean", self.key, "mean", by=by, panel="mean opinion", unit="opinion",
                           doc="mean opinion")]

    def outcomes(self):
        p, var, mean = self.prefix, f"{self.state}_var", f"{self.state}_mean"
        return [Outcome(f"{p}final_variance", var, "final", unit="opinion^2",
                        doc=f"Var_i x_i(T): disagreement left at the end ({var} at the last step)"),
                Outcome(f"{p}final_mean", mean, "final", unit="opinion",
                        doc=f"mean_i x_i(T) ({mean} at the last step)"),
                Outcome(f"{p}total_variance", var, "total", unit="opinion^2 x steps",
                        doc=f"sum_t Var_i x_i(t), t = 0..T: disagreement over the run (total of {var})")]

    def check_graph(self, graph) -> None:
        if self.initial != "attribute":
            return
        values = graph.attribute(self.node_type, self.attribute)
        n = graph.num_nodes[self.node_type]
        where = f"DeGroot ({self.name}) reads initial opinions from {self.node_type}.{self.attribute}"
        if values.dim() == 2 and values.size(1) == 1:
            values = values.squeeze(1)
        if values.dim() != 1 or values.size(0) != n or values.dtype == torch.bool:
            raise PopulationGraphError(f"{where}, which must be one number per node (shape [{n}]), got "
                                       f"{values.dtype} {tuple(values.shape)}")
        if values.is_floating_point() and not bool(torch.isfinite(values).all()):
            bad = int((~torch.isfinite(values)).nonzero()[0])
            raise PopulationGraphError(f"{where}; node {bad} has {float(values[bad])}, not a finite number")

    # -- running -------------------------------------------------------------
    def init(self, ctx: StepContext) -> Output:
        """Initial opinions ``[N, R]``: uniform draws (stream ``initial_opinion``, step -1), or the attribute."""
        n, r, dtype = ctx.graph.num_nodes[self.node_type], ctx.replicates, ctx.dtype
        if self.initial == "uniform":
            u = ctx.rng(self.node_type).uniform(-1, self.stream("initial_opinion"), dtype)
            x = u * (self.high - self.low) + self.low
        else:
            x = ctx.graph.attribute(self.node_type, self.attribute).to(dtype).reshape(n, 1).repeat(1, r)
        return Output(state={self.key: x})

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        x = state[self.key]
        groups = ctx.graph.group_index(self.grouping) if self.grouping in ctx.graph.groupings else None
        rate = _per_node(self.value(ctx, "susceptibility"), groups, x.dtype)
        s = fields.get(self.influence_scale, 1.0)
        if not (isinstance(s, (int, float)) and s == 1):
            rate = rate * s
        tuned_out = fields.get(self.tunes_out)
        if tuned_out is not None:
            rate = rate * (1.0 - tuned_out)
        return Output(state={self.key: x + rate * (fields[self.neighbours] - x)})

    def extra_repr(self) -> str:
        init = (f"uniform [{self.low:g}, {self.high:g}]" if self.initial == "uniform"
                else f"attribute {self.attribute!r}")
        return f"name={self.name!r}, state={self.key!r}, initial={init}, grouping={self.grouping!r}"
