r"""Processes: the parts of a step, with one calling convention and one role each.

A model's step is an ordered list of processes.  Every process is an
``nn.Module`` that declares what it owns, reads, writes and emits, and
implements one function

.. code-block:: python

    def forward(self, ctx: StepContext, state: dict, fields: dict) -> Output: ...

returning new values of the state it owns, the fields it writes and the
events it emits.  Its role says what kind of part it is:

``environment``  :math:`e(t+1) = g(s, e, \theta)`: interventions, policies,
                 prices, supply — factors later processes read.
``behavior``     :math:`\ell(\cdot \mid s_i)`: decisions of agents
                 (rules, networks, LLM archetypes); the British spelling
                 ``behaviour`` is accepted as the same role.
``emission``     what nodes send: per-node source values of interactions
                 (what a node sends, computed from its state).
``interaction``  :math:`\sum_j m_{ij}`: a ``MessagePassing`` layer over one
                 edge type (or a stack), source values to a destination field.
``update``       :math:`f`: new state from state and fields, with random
                 draws from its own named streams, and events.

Declarations (each a method returning a sequence, empty by default):
:meth:`Process.state_specs`, :meth:`Process.field_specs`,
:meth:`Process.event_specs`, :meth:`Process.param_specs`,
:meth:`Process.reads`, :meth:`Process.streams`,
:meth:`Process.requirements` (graph edges, attributes, groupings),
:meth:`Process.observables`, :meth:`Process.outcomes`.  The model checks
them all when it is built (:mod:`lpm_graph.core.loop`).  After a run,
:meth:`Process.report` says what a process did (summaries, ``processes.<name>``).

Parameters are namespaced by the process's ``name``: a process named
``degroot`` reads ``degroot.susceptibility``.  Two processes of one class
therefore need different names.
"""
from __future__ import annotations

import abc
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from lpm_graph.core.graph import Graph, Requirements
from lpm_graph.core.params import ParamSpec
from lpm_graph.core.random import CounterRNG
from lpm_graph.core.sampling import Sampler
from lpm_graph.core.state import EventSpec, FieldSpec, Read, StateSpec
from lpm_graph.errors import ConfigError

__all__ = ["Process", "Output", "StepContext", "ROLES", "ROLE_ALIASES", "canonical_role"]

ROLES = ("environment", "behavior", "emission", "interaction", "update")
#: other spellings of a role, accepted as it (``model.behavior`` is the config key, the docs spell the role so)
ROLE_ALIASES = {"behaviour": "behavior"}


def canonical_role(role: str) -> str:
    """A role as :data:`ROLES` spells it (an alias of :data:`ROLE_ALIASES` mapped to its role)."""
    return ROLE_ALIASES.get(role, role)


@dataclass
class Output:
    """What a process returns: new state it owns, fields it writes, events it emits (all by key)."""

    state: dict[str, Tensor] = field(default_factory=dict)
    fields: dict[str, Tensor | float] = field(default_factory=dict)
    events: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class StepContext:
    """What a process may read besides state and fields.

    Attributes:
        t (int): the step (``-1`` while initialising).
        graph (Graph): the prepared graph.
        params (dict): every parameter's value in effect at step ``t`` by dotted name.
        sampler (Sampler): draws events (mode, surrogate).
        dt (float): step length.
        replicates (int): replicate columns ``R``.
        dtype: floating type of the state.
        seed (int): the run's seed.
    """

    t: int
    graph: Graph
    params: Mapping[str, Tensor]
    sampler: Sampler
    dt: float
    replicates: int
    dtype: torch.dtype
    seed: int = 0
    _rngs: dict[str, CounterRNG] = field(default_factory=dict)

    def rng(self, node_type: str) -> CounterRNG:
        """The counter-based generator of a node type's uids (built once per run)."""
        g = self._rngs.get(node_type)
        if g is None:
            g = CounterRNG(self.graph.uid[node_type], self.seed, self.replicates, node_type)
            self._rngs[node_type] = g
        return g

    @property
    def stochastic(self) -> bool:
        return self.sampler.stochastic

    def at(self, t: int, params: Mapping[str, Tensor]) -> "StepContext":
        """The same run's context at step ``t`` (generators shared)."""
        return StepContext(t, self.graph, params, self.sampler, self.dt, self.replicates, self.dtype, self.seed,
                           self._rngs)

    def zeros(self, node_type: str, *shape: int) -> Tensor:
        """A fresh ``[N, R, *shape]`` zero tensor of the state's dtype on the graph's device."""
        return torch.zeros(self.graph.num_nodes[node_type], self.replicates, *shape, dtype=self.dtype,
                           device=self.graph.device)


class Process(nn.Module, abc.ABC):
    """Base of every part of a step (module docstring).

    Args:
        name (str, optional): the process's name: unique in a model, the
            namespace of its parameters, the prefix of its random streams.
            (default: the class's ``default_name``)
    """

    role: str = "update"
    default_name: str = "process"
    #: the step is correct on one part of a graph split across processes (lpm_graph.distributed): per-node work,
    #: random draws keyed by uid, and sums over nodes only through the graph's layouts (spmm) or Graph.all_sum;
    #: a partitioned run refuses a model with a process that does not declare it
    partitionable: bool = False

    def __init__(self, name: str | None = None):
        super().__init__()
        self.explicit_name = name is not None
        name = self.default_name if name is None else name
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"{type(self).__name__}: name must be an identifier (letters, digits, _), got {name!r}")
        self.name = name

    # -- declarations --------------------------------------------------------
    def state_specs(self) -> Sequence[StateSpec]:
        """The state this process owns."""
        return ()

    def field_specs(self) -> Sequence[FieldSpec]:
        """The fields this process writes."""
        return ()

    def event_specs(self) -> Sequence[EventSpec]:
        """The events this process emits."""
        return ()

    def param_specs(self) -> Sequence[ParamSpec]:
        """The parameters this process reads (local names; known to the model as ``<name>.<local>``)."""
        return ()

    def reads(self) -> Sequence[str | Read]:
        """State and field keys this process reads (fields must be written earlier in the step)."""
        return ()

    def streams(self) -> Sequence[tuple[str, str]]:
        """``(node type, stream)`` of every random stream this process draws from (:meth:`stream`)."""
        return ()

    def requirements(self) -> Requirements:
        """What this process reads from the graph: edge types, stacks, node attributes, groupings."""
        return Requirements()

    def observables(self) -> Sequence:
        """Default observables (:class:`~lpm_graph.core.observe.Observable`) of what this process owns."""
        return ()

    def outcomes(self) -> Sequence:
        """Default outcomes (:class:`~lpm_graph.core.observe.Outcome`)."""
        return ()

    def workspace(self) -> dict[str, float]:
        """Temporaries of :meth:`forward` alive at once, in ``[N, R]`` tensors per node type, beyond the
        state, fields and events it returns (the memory estimate reads it: :mod:`lpm_graph.memory`).
        A key may also be an edge type ``(src, relation, dst)``: that many ``[E, R]`` tensors of its
        edges (a message that is not a sparse product, e.g. one non-linear in ``x_j``)."""
        return {}

    def saved(self) -> dict[str, float]:
        """Tensors of :meth:`forward` that autograd keeps for the backward, in ``[N, R]`` tensors per node
        type (or ``[E, R]`` per edge type, as in :meth:`workspace`), beyond the state it returns (the
        memory estimate of a run without checkpointing)."""
        return {}

    def layout_copies(self, written: Collection[str]) -> dict:
        """Layouts this process builds from the graph's and keeps through the run, given the keys of the fields
        the model writes (``written``; a copy may be made only when an optional read is written): an edge type
        ``(src, relation, dst)``, or a stack (a ``frozenset`` of edge types), -> how many copies of its layout
        and transpose, each with the int64 row index it is cut from (the memory estimate counts them with the
        layouts: :mod:`lpm_graph.memory`)."""
        return {}

    def check_graph(self, graph: Graph) -> None:
        """Checks of the prepared graph beyond the declared requirements (raise ``PopulationGraphError``)."""

    def report(self) -> dict:
        """What this process did in the runs so far, as plain JSON values (calls made, cache hits, the
        versions of what it consulted); the task summaries hold it under ``processes.<name>``. Default: nothing."""
        return {}

    # -- names ---------------------------------------------------------------
    def param(self, local: str) -> str:
        """The dotted name of one of this process's parameters."""
        return f"{self.name}.{local}"

    def value(self, ctx: StepContext, local: str) -> Tensor:
        """The value of one of this process's parameters at the context's step."""
        return ctx.params[self.param(local)]

    def stream(self, local: str) -> str:
        """The name of one of this process's random streams: ``<name>.<local>``, or ``local`` alone under
        the class's default name (the stream names of version 0.1, kept so its numbers stay the same)."""
        return local if self.name == self.default_name else f"{self.name}.{local}"

    # -- running -------------------------------------------------------------
    def init(self, ctx: StepContext) -> Output:
        """Initial state (and step-0 events) of what this process owns; default: each spec's ``init``."""
        out = Output()
        for spec in self.state_specs():
            if spec.init is None:
                raise ConfigError(f"{type(self).__name__} declares {spec.key} with init=None (set by the owner) "
                                  "but does not override init(); give the spec an init value or override init()")
            out.state[spec.key] = torch.full((ctx.graph.num_nodes[spec.node_type], ctx.replicates, *spec.shape),
                                             float(spec.init), dtype=ctx.dtype, device=ctx.graph.device)
        return out

    @abc.abstractmethod
    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        """One step: new owned state, written fields, emitted events."""

    def compile_kernel(self, enabled: bool = True) -> None:
        """Run this process's elementwise kernel through ``torch.compile`` (processes that have one)."""

    def extra_repr(self) -> str:
        return f"name={self.name!r}, role={self.role!r}"
