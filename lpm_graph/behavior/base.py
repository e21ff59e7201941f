r"""The decision-field contract: what a behaviour writes and how later processes read it.

A **behaviour** is a :class:`~lpm_graph.core.Process` of role ``"behavior"``
that runs after the environment and before the model's own processes
(``model.behavior``) and writes *decision fields*

.. code-block:: text

    <node type>.<decision>      float probabilities in [0, 1], shape [N, R]

(``[N, 1]`` or a number where every replicate decides alike), e.g.
``person.stays_home``, ``person.avoids_<venue type>``, ``person.masks``,
``person.vaccinates``.  A decision is a probability, not a draw: the
processes that read it use it as the expected share (a person who stays home
with probability :math:`h` is present :math:`1 - h`), so a behaviour draws no
random numbers and a scenario with and without it keeps common random
numbers.  Readers read decision fields as optional with default 0, so a
model without a behaviour is unchanged; a decision no process of the model
reads is refused when the model is built (the behaviour does not fit that
model).  Each decision field has one writer.

:class:`Behavior` implements the contract: subclasses return the
probabilities of their decisions from :meth:`Behavior.decide`; the base
writes the fields, keeps the last decision as the continuous state
``<node type>.last_<decision>`` (0 before the first step) and declares its
observable ``<decision>``, the mean over nodes (by the configured grouping,
in the plot panel ``decisions``), which is what a mobility series is
compared with.
"""
from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
from torch import Tensor

from lpm_graph.core.graph import Requirements
from lpm_graph.core.observe import Observable
from lpm_graph.core.process import Output, Process, StepContext
from lpm_graph.core.state import FieldSpec, StateSpec, key
from lpm_graph.errors import ConfigError

__all__ = ["Behavior", "decision_key", "last_key", "check_decisions"]


def decision_key(node_type: str, decision: str) -> str:
    """``"<node type>.<decision>"``: the field a decision is written to."""
    return key(node_type, decision)


def last_key(node_type: str, decision: str) -> str:
    """``"<node type>.last_<decision>"``: the state holding the last step's decision (observed)."""
    return key(node_type, f"last_{decision}")


def check_decisions(where: str, decisions) -> list[str]:
    """Decision names as a list of distinct identifiers (``stays_home``, ``avoids_school``)."""
    if isinstance(decisions, str) or not isinstance(decisions, Sequence) or not decisions:
        raise ConfigError(f"{where}.decisions must be a non-empty list of decision names, e.g. [stays_home], "
                          f"got {decisions!r}")
    out = [str(d) for d in decisions]
    bad = [d for d in out if not d.isidentifier()]
    if bad or len(set(out)) != len(out):
        raise ConfigError(f"{where}.decisions must be distinct identifiers (letters, digits, _), got {out}")
    return out


class Behavior(Process):
    """Base of behaviours: writes the decision fields and keeps and observes the last decisions.

    Args:
        decisions (Sequence[str]): the decisions, e.g. ``["stays_home", "masks"]``.
        node_type (str): the deciding node type. (default: ``"person"``)
        grouping (str, optional): the grouping the decision shares are observed by (``model.groupings``);
            ``None``: the total only. (default: ``"age"``)
        name (str): the process name.
    """

    role = "behavior"
    default_name = "behavior"

    def __init__(self, decisions: Sequence[str], node_type: str = "person", grouping: str | None = "age",
                 name: str | None = None):
        super().__init__(name)
        self.decisions = check_decisions(type(self).__name__, decisions)
        self.node_type, self.grouping = str(node_type), grouping

    # -- declarations --------------------------------------------------------
    def field_specs(self):
        return [FieldSpec(self.node_type, d, unit="probability", doc=f"decision: {d}") for d in self.decisions]

    def state_specs(self):
        return [StateSpec(self.node_type, f"last_{d}", "continuous", init=0.0, unit="probability",
                          doc=f"the last step's decision {d} (0 before the first step)") for d in self.decisions]

    def observable_name(self, decision: str) -> str:
        """The observable of a decision: ``<decision>`` for people, ``<node type>_<decision>`` for other node
        types (so that two node types deciding alike, a warehouse's and a retailer's ``reorders``, differ)."""
        return decision if self.node_type == "person" else f"{self.node_type}_{decision}"

    def observables(self):
        by = (self.grouping,) if self.grouping else ()
        return [Observable(self.observable_name(d), last_key(self.node_type, d), "mean", by=by, panel="decisions", unit="share",
                           doc=f"mean probability of {d} over {self.node_type} nodes") for d in self.decisions]

    def requirements(self) -> Requirements:
        req = Requirements()
        req.need(self.node_type)
        return req

    def workspace(self):
        return {self.node_type: float(len(self.decisions))}

    # -- running -------------------------------------------------------------
    @abc.abstractmethod
    def decide(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> dict[str, Tensor]:
        """The probability of every decision, ``[N, R]`` (or ``[N, 1]``) each, by decision name."""

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        probs = self.decide(ctx, state, fields)
        missing = [d for d in self.decisions if d not in probs]
        if missing:
            raise ConfigError(f"behaviour {self.name!r} ({type(self).__name__}) decided {sorted(probs)} but declares "
                              f"{self.decisions}; missing {missing}")
        out = Output()
        n = ctx.graph.num_nodes[self.node_type]
        for d in self.decisions:
            p = probs[d]
            out.fields[decision_key(self.node_type, d)] = p
            out.state[last_key(self.node_type, d)] = p.expand(n, ctx.replicates) if p.dim() == 2 else \
                torch.as_tensor(p, dtype=ctx.dtype, device=ctx.graph.device).expand(n, ctx.replicates)
        return out

    def extra_repr(self) -> str:
        return f"name={self.name!r}, decisions={self.decisions}"
