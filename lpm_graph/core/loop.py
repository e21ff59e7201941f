r"""The time-unrolled model: processes in order, checked wiring, the loop, observables.

One step :math:`t \to t+1` is written once, here, and is the same for every
model — an epidemic, opinion dynamics, an economy, a supply chain:

0. **Parameters** :math:`\theta(t)`: time-varying parameters take their
   entry for step :math:`t` (:meth:`ParameterSet.at`).
1. **Processes**, in their order — ``environment`` entries first, then
   ``behavior``, then ``processes`` as configured.  Each reads the state at
   the start of the step and the fields written before it in this step,
   and returns the new values of the state it owns, the fields it writes and
   the events it emits (:mod:`lpm_graph.core.process`).  A process that owns
   state replaces it for the processes after it.
2. **Observe**: every declared observable is reduced to ``[R]`` (and
   ``[G, R]`` per grouping) on the fly.

:meth:`Model.plan` prints the order with each process's role, reads, writes,
state and parameters (``lpm-graph task=plan``).

**Wiring is checked when the model is built**, before any graph is loaded:
process names are unique; every state has one owner and every event one
emitter; a field is read only after every process that writes it (or, for
an optional read, not at all); a field with several writers says how they
combine; every parameter a process declares has a value (from config or
its default), inside its domain and of its shape, and every configured
parameter is read by some process; random streams are not shared; every
observable reads an existing state or event and every outcome an
observable.  A mistake is one :class:`~lpm_graph.errors.ConfigError`
naming the process and the fix.

``T`` steps unrolled form a GNN differentiable in every learnable parameter;
with ``checkpoint=True`` each step is recomputed in the backward pass
(``torch.utils.checkpoint``, non-reentrant), so memory holds ``O(T N)``
state, not every step's intermediates.  Replaying a step draws the same
random numbers because they are a function of (seed, step, stream, uid).
"""
from __future__ import annotations

import contextlib
import difflib
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from lpm_graph.core.graph import Graph, Grouping, Requirements
from lpm_graph.core.observe import Observable, Outcome, Trajectory
from lpm_graph.core.params import GROUP, ParameterSet, ParamSpec, check_domain, check_shape, flatten_params
from lpm_graph.core.process import ROLES, Output, Process, StepContext, canonical_role
from lpm_graph.core.sampling import Sampler
from lpm_graph.core.state import FieldSpec, Read, StateSpec
from lpm_graph.errors import ConfigError
from lpm_graph.memory import release_free_memory

__all__ = ["Model", "flush_denormals", "TRIM_EVERY", "RESERVED_NAMESPACES"]

#: steps between returns of freed heap memory to the system (CPU runs; see lpm_graph.memory)
TRIM_EVERY = 10
#: parameter namespaces read outside the step: ``observation.*`` by the observation model of ``task=calibrate``
RESERVED_NAMESPACES = ("observation",)


@contextlib.contextmanager
def flush_denormals():
    """Flush denormal floats to zero on the CPU inside the block, then restore the setting.

    Mean-field probabilities decay into denormal floats, which make every CPU
    elementwise op far slower.  :meth:`Model.forward` runs inside this; wrap
    a backward pass in it too when it is slow.
    """
    probe = torch.tensor([1e-30], dtype=torch.float32)
    was_on = float(probe * 1e-10) == 0.0  # 1e-40 is denormal in float32
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not was_on:
            torch.set_flush_denormal(False)


def _listed(items, what: str) -> list:
    """Processes from a list, or from a mapping whose keys name them."""
    if isinstance(items, Mapping):
        out = []
        for name, item in items.items():
            if item is None:  # a config's way to remove an entry it inherits
                continue
            if not isinstance(item, Process):
                raise ConfigError(f"model.{what}.{name} must be a process (a lpm_graph.core.Process, built with "
                                  f"_target_), got {type(item).__name__}")
            if not isinstance(name, str) or not name.isidentifier():
                raise ConfigError(f"model.{what}: the key {name!r} names a process and must be an identifier "
                                  "(letters, digits, _): it namespaces the process's parameters and streams")
            if item.explicit_name and item.name != name:
                raise ConfigError(f"model.{what}.{name} is named {item.name!r}; a mapping's key names its process, "
                                  f"so drop name: or use the key {item.name!r}")
            item.name = str(name)
            out.append(item)
        return out
    items = list(items or [])
    for i, item in enumerate(items):
        if not isinstance(item, Process):
            raise ConfigError(f"model.{what}[{i}] must be a process (a lpm_graph.core.Process, built with "
                              f"_target_), got {type(item).__name__}")
    return items


def _one_each(order: Sequence[Process], specs, message: str) -> dict[str, Process]:
    """Key -> the one process that declares it (``specs(process)``); ``message`` names two that both do."""
    found: dict[str, Process] = {}
    for p in order:
        for spec in specs(p):
            if spec.key in found:
                raise ConfigError(message.format(key=spec.key, a=found[spec.key].name, b=p.name))
            found[spec.key] = p
    return found


def _lagged(field: str) -> str:
    """``"<node type>.last_<decision>"``: the state in which a behaviour keeps its decision ``field``, which a
    process running before behaviours (the environment) reads as the previous step's decision."""
    node_type, _, name = field.partition(".")
    return f"{node_type}.last_{name}"


def _nearest(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class _BackwardProgress:
    """A progress bar of the backward pass through the steps, advanced by a gradient hook on each step's state.

    The backward pass reaches step ``t``'s state after every later step's; the bar opens at the first
    gradient that arrives and closes at step 0's (steps whose state the loss does not depend on never tick).
    """

    def __init__(self, steps: int):
        self.steps, self.bar, self.last = steps, None, None

    def watch(self, t: int, state: Mapping[str, Tensor]) -> None:
        x = next((v for v in state.values() if v.requires_grad), None)
        if x is None or x is self.last:
            return  # no gradient flows here, or a state carried over unchanged (hooked already)
        self.last = x
        x.register_hook(lambda grad, t=t: self._tick(t))

    def _tick(self, t: int) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(total=t + 1, desc="backward", unit="step", leave=False)
        self.bar.update(1)
        if t == 0:
            self.bar.close()


class Model(nn.Module):
    r"""A population model: processes in order over a graph, unrolled for ``T`` steps.

    Args:
        processes (Sequence[Process] | Mapping[str, Process]): the step's
            emissions, interactions and updates, in order; a mapping's keys
            name its processes.
        environment (Sequence | Mapping): environment processes (interventions,
            policies), run first, in order. (default: none)
        behavior (Sequence | Mapping): behaviour processes, run after the
            environment. (default: none)
        params (Mapping): parameter values by namespace,
            ``{'degroot': {'susceptibility': 0.3}}`` (or dotted names); a
            declared parameter without a value takes its default.
        learnable (Sequence[str]): dotted names of the parameters to optimise.
        bounds (Mapping[str, [lo, hi]]): bounds of learnable parameters
            (:class:`~lpm_graph.core.params.ParameterSet`), by dotted name or namespace.
        time_varying (Mapping[str, int]): period in steps of time-varying parameters, by dotted
            name or namespace.
        groupings (Mapping[str, Mapping]): groupings by name, e.g.
            ``{'age': {'node_type': 'person', 'attribute': 'age', 'bins': [0, 10, ...]}}``
            (:class:`~lpm_graph.core.graph.Grouping`).
        observables (Sequence): observables besides the processes' own
            (:class:`~lpm_graph.core.observe.Observable` or mappings).
        outcomes (Mapping): outcomes besides the processes' own, by name.
        mode (str): ``"stochastic"`` or ``"expected"`` (mean field). (default: ``"stochastic"``)
        surrogate (str): backward of discrete events, ``"straight_through"``
            or ``"gumbel"``. (default: ``"gumbel"``)
        temperature (float): temperature of the ``"gumbel"`` surrogate. (default: 0.1)
        dt (float): step length in days (or the model's time unit). (default: 1.0)
        checkpoint (bool): recompute each step in the backward pass. (default: ``False``)
        dtype: floating type the parameter values are stored in (from the
            config's numbers, so a float64 run holds 0.2, not float32's
            0.200000003). (default: ``torch.float32``)
        order (Sequence[str], optional): the keys of a ``processes`` mapping in
            step order, when it differs from the mapping's (a config that
            inherits another adds its keys at the end). (default: the mapping's order)
        compile (bool): run the processes' elementwise kernels through
            ``torch.compile`` (those that have one); the first step of each
            population size compiles (seconds to tens of seconds on a CPU).
            (default: ``False``)
        main_observable (str, optional): the series a plain data column of
            counts is compared with when nothing else is said (an observation
            file with one unnamed column, :mod:`lpm_graph.observation`).
            (default: the first observable of kind ``sum`` (events per step,
            what surveillance reports), else the first observable)
    """

    def __init__(self, processes: Sequence[Process] = (), environment: Sequence[Process] = (),
                 behavior: Sequence[Process] = (), params: Mapping | None = None, learnable: Sequence[str] = (),
                 bounds: Mapping[str, Sequence] | None = None, time_varying: Mapping[str, int] | None = None,
                 groupings: Mapping | None = None, observables: Sequence = (), outcomes: Mapping | None = None,
                 mode: str = "stochastic", surrogate: str = "gumbel", temperature: float = 0.1, dt: float = 1.0,
                 checkpoint: bool = False, compile: bool = False, order: Sequence[str] | None = None,
                 dtype: torch.dtype | str = torch.float32, main_observable: str | None = None):
        super().__init__()
        if order is not None:
            if not isinstance(processes, Mapping):
                raise ConfigError("model.order names the keys of model.processes; give processes as a mapping")
            present = [k for k, v in processes.items() if v is not None]
            if sorted(order) != sorted(present):
                raise ConfigError(f"model.order must list every process of model.processes once: it lists "
                                  f"{list(order)}, the processes are {present}")
            processes = {k: processes[k] for k in order}
        self.environment = nn.ModuleList(_listed(environment, "environment"))
        self.behavior = nn.ModuleList(_listed(behavior, "behavior"))
        self.processes = nn.ModuleList(_listed(processes, "processes"))
        self.sampler = Sampler(mode, surrogate, temperature)
        if not (isinstance(dt, (int, float)) and not isinstance(dt, bool) and dt > 0):
            raise ConfigError(f"model.dt must be a positive number of days, got {dt}")
        self.dt, self.use_checkpoint = float(dt), bool(checkpoint)
        self.groupings = {n: Grouping.from_config(n, g) for n, g in dict(groupings or {}).items()}
        self._check_wiring()
        self.observables = self._collect_observables(observables)
        self.outcomes = self._collect_outcomes(outcomes)
        self.main_observable = self._main_observable(main_observable)
        time_varying = flatten_params(time_varying)
        values = self._check_params(flatten_params(params), time_varying)
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        if dtype not in (torch.float32, torch.float64):
            raise ConfigError(f"model dtype must be float32 or float64, got {dtype}")
        self.params = ParameterSet(values, learnable, flatten_params(bounds), time_varying, dtype=dtype)
        self.compiled = bool(compile)
        for p in self.order:
            p.compile_kernel(self.compiled)

    # -- structure -----------------------------------------------------------
    @property
    def order(self) -> list[Process]:
        """Every process in the order a step runs them."""
        return [*self.environment, *self.behavior, *self.processes]

    def process(self, name: str) -> Process:
        for p in self.order:
            if p.name == name:
                return p
        raise KeyError(f"no process named {name!r}; processes: {[p.name for p in self.order]}")

    @property
    def state_specs(self) -> dict[str, StateSpec]:
        return {s.key: s for p in self.order for s in p.state_specs()}

    @property
    def field_specs(self) -> dict[str, FieldSpec]:
        return {f.key: f for p in self.order for f in p.field_specs()}

    @property
    def event_keys(self) -> list[str]:
        return [e.key for p in self.order for e in p.event_specs()]

    @property
    def param_specs(self) -> dict[str, tuple[Process, ParamSpec]]:
        """Every declared parameter by dotted name, with its process."""
        return {p.param(s.name): (p, s) for p in self.order for s in p.param_specs()}

    # -- construction-time checks --------------------------------------------
    def _check_wiring(self) -> None:
        order = self.order
        seen: dict[str, Process] = {}
        for p in order:
            if canonical_role(p.role) not in ROLES:
                raise ConfigError(f"process {p.name!r} ({type(p).__name__}) has role {p.role!r}; roles: {list(ROLES)}")
            if p.name in seen:
                raise ConfigError(f"two processes are named {p.name!r} ({type(seen[p.name]).__name__} and "
                                  f"{type(p).__name__}); give one another name (name: ...), which also "
                                  "namespaces its parameters")
            seen[p.name] = p
        owners = _one_each(order, lambda p: p.state_specs(), "state {key} is owned by both {a!r} and {b!r}; a state "
                           "has one owner: remove one of them, or rename the state of one")
        _one_each(order, lambda p: p.event_specs(), "event {key} is emitted by both {a!r} and {b!r}; rename the "
                  "event of one of them")
        writers: dict[str, list[int]] = {}
        specs: dict[str, FieldSpec] = {}
        for i, p in enumerate(order):
            for f in p.field_specs():
                if f.key in owners:
                    raise ConfigError(f"process {p.name!r} writes field {f.key}, which is also a state "
                                      f"(owned by {owners[f.key].name!r}); give the field another name")
                if f.key in specs and (f.combine is None or specs[f.key].combine != f.combine):
                    first = order[writers[f.key][0]].name
                    raise ConfigError(f"field {f.key} is written by both {first!r} and {p.name!r} but does not say "
                                      f"how they combine (combine: sum or product, the same for every writer)")
                specs.setdefault(f.key, f)
                writers.setdefault(f.key, []).append(i)
        streams: dict[tuple[str, str], Process] = {}
        for p in order:
            for s in p.streams():
                s = tuple(s)
                if s in streams:
                    raise ConfigError(f"random stream {s[1]!r} of node type {s[0]!r} is drawn by both "
                                      f"{streams[s].name!r} and {p.name!r}; their draws would be the same numbers. "
                                      "Rename one process (its streams are prefixed by its name)")
                streams[s] = p
        readers: dict[str, list[int]] = {}
        for i, p in enumerate(order):
            for r in map(Read.of, p.reads()):
                readers.setdefault(r.key, []).append(i)
        for i, p in enumerate(order):
            for r in map(Read.of, p.reads()):
                if r.key in owners:
                    continue
                if r.key in writers:
                    late = [order[j].name for j in writers[r.key] if j >= i]
                    if late:
                        raise ConfigError(f"process {p.name!r} reads field {r.key} before {late[0]!r} writes it; "
                                          f"move {late[0]!r} before {p.name!r} in the model's processes")
                    continue
                if r.optional:
                    continue
                fields = sorted(writers)
                states = sorted(owners)
                if any(p is b for b in self.behavior):
                    others = ", ".join(f"{q.name} ({type(q).__name__})" for q in self.processes)
                    raise ConfigError(f"behaviour {p.name!r} ({type(p).__name__}) reads {r.key}, which no process of "
                                      f"the model writes or owns: this behaviour does not fit this model (its "
                                      f"processes: {others}; state: {states})")
                raise ConfigError(f"process {p.name!r} reads {r.key}, which no process before it writes or owns"
                                  f"{_nearest(r.key, fields + states)} (fields written: {fields}; state: {states}). "
                                  "Add the process that produces it, earlier in the step")
        behaviour = {id(b) for b in self.behavior}
        for key, ws in writers.items():
            if not any(j > ws[0] for j in readers.get(key, [])):
                p = order[ws[0]]
                if id(p) in behaviour and _lagged(key) in readers and owners.get(_lagged(key)) is p:
                    continue   # read with a one-step lag, as the last decision (e.g. by an environment process)
                read = sorted(k for k in readers if k not in owners)
                if id(p) in behaviour:
                    others = ", ".join(f"{q.name} ({type(q).__name__})" for q in order if id(q) not in behaviour)
                    raise ConfigError(f"behaviour {p.name!r} ({type(p).__name__}) writes {key}, which no process of "
                                      f"the model reads: this behaviour does not fit this model (its processes: "
                                      f"{others}; fields they read: {read}). Choose a model whose processes read "
                                      f"{key}, or drop that decision from the behaviour")
                raise ConfigError(f"process {p.name!r} writes field {key}, which no later process reads, so it would "
                                  f"change nothing{_nearest(key, read)} (fields read: {read}); fix the name, or "
                                  "add the process that reads it")
        for p in order:
            req = p.requirements()
            for name in req.groupings:
                if name not in self.groupings:
                    raise ConfigError(f"process {p.name!r} groups by {name!r}, which model.groupings does not "
                                      f"define (defined: {sorted(self.groupings)}); add "
                                      f"model.groupings.{name}: {{node_type: ..., attribute: ..., bins: ...}}")
            for s in p.param_specs():
                if GROUP in s.shape and s.grouping not in self.groupings:
                    raise ConfigError(f"parameter {p.param(s.name)} has one value per {s.grouping!r} group, but "
                                      f"model.groupings does not define {s.grouping!r} (defined: "
                                      f"{sorted(self.groupings)})")

    def _main_observable(self, name: str | None) -> str:
        if name is None:
            sums = [n for n, o in self.observables.items() if o.kind == "sum"]
            return (sums or list(self.observables))[0]
        if name not in self.observables:
            raise ConfigError(f"model.main_observable = {name!r} is not observed by the model"
                              f"{_nearest(name, list(self.observables))}; observables: {sorted(self.observables)}")
        return name

    def _collect_observables(self, extra: Sequence) -> dict[str, Observable]:
        out: dict[str, Observable] = {}
        states, events = self.state_specs, set(self.event_keys)
        for o in [*(o for p in self.order for o in p.observables()), *map(Observable.from_config, extra or ())]:
            if o.name in out:
                if out[o.name] == o:
                    continue
                raise ConfigError(f"two observables are named {o.name!r} ({out[o.name].source} and {o.source}); "
                                  "rename one")
            if o.source not in states and o.source not in events:
                raise ConfigError(f"observable {o.name!r} reads {o.source}, which is neither a state nor an event "
                                  f"of the model{_nearest(o.source, [*states, *events])}; state: {sorted(states)}, "
                                  f"events: {sorted(events)}")
            if o.source in states:
                spec = states[o.source]
                if spec.shape:
                    raise ConfigError(f"observable {o.name!r}: {o.source} has shape {list(spec.shape)} per node; "
                                      "observe a state of one value per node (declare one per element)")
                if o.kind in ("mean", "var") and spec.kind != "continuous" or (
                        o.kind == "count" and spec.kind == "continuous"):
                    raise ConfigError(f"observable {o.name!r}: a {spec.kind} state ({o.source}) is not observed as "
                                      f"{o.kind!r}; count indicator, categorical and count states, mean or var "
                                      "continuous ones")
                if (spec.kind == "categorical") != (o.category is not None) or (
                        o.category is not None and o.category not in spec.categories):
                    raise ConfigError(f"observable {o.name!r}: category {o.category!r} for the {spec.kind} state "
                                      f"{o.source}" + (f" (categories {list(spec.categories)})" if spec.categories
                                                       else ""))
            elif o.kind != "sum":
                raise ConfigError(f"observable {o.name!r}: an event ({o.source}) is observed as 'sum', "
                                  f"got {o.kind!r}")
            for g in o.by:
                if g not in self.groupings:
                    raise ConfigError(f"observable {o.name!r} is grouped by {g!r}, which model.groupings does not "
                                      f"define (defined: {sorted(self.groupings)})")
                if self.groupings[g].node_type != o.node_type:
                    raise ConfigError(f"observable {o.name!r} (on {o.node_type}) cannot be grouped by {g!r}, a "
                                      f"grouping of {self.groupings[g].node_type}")
            out[o.name] = o
        if not out:
            raise ConfigError("the model observes nothing: no process declares observables and "
                              "model.observables is empty")
        return out

    def _collect_outcomes(self, extra: Mapping | None) -> dict[str, Outcome]:
        out: dict[str, Outcome] = {}
        for o in [*(o for p in self.order for o in p.outcomes()),
                  *(Outcome.from_config(n, s) for n, s in dict(extra or {}).items())]:
            if o.series not in self.observables:
                raise ConfigError(f"outcome {o.name!r} reduces series {o.series!r}, which the model does not "
                                  f"observe{_nearest(o.series, list(self.observables))}; observed: "
                                  f"{sorted(self.observables)}")
            out[o.name] = o
        return out

    def group_sizes(self) -> dict[str, int]:
        """Sizes of the groupings known without a graph (binned or labelled)."""
        return {n: g.size for n, g in self.groupings.items() if g.size is not None}

    def _check_params(self, given: dict, time_varying: dict) -> dict:
        specs = self.param_specs
        unknown = sorted(n for n in given if n not in specs and n.split(".", 1)[0] not in RESERVED_NAMESPACES)
        if unknown:
            name = unknown[0]
            raise ConfigError(f"model.params.{name} is not read by any process of the model"
                              f"{_nearest(name, list(specs))} (parameters read: {sorted(specs)})")
        values: dict[str, object] = {}
        sizes = self.group_sizes()
        for full, (p, spec) in specs.items():
            if full in given:
                value = given[full]
            elif spec.default is not None:
                value = spec.default
                if not spec.scalar_ok and spec.shape and not isinstance(value, (list, tuple)):
                    dims = [sizes.get(spec.grouping) if d == GROUP else int(d) for d in spec.shape]
                    if None not in dims:  # one value per element, each the default
                        value = torch.full(dims, float(value)).tolist()
            else:
                raise ConfigError(f"model.params.{full} is missing: process {p.name!r} ({type(p).__name__}) reads "
                                  f"it ({spec.doc or spec.domain}" + (f", {spec.unit}" if spec.unit else "")
                                  + f"); set model.params.{p.name}.{spec.name}")
            check_domain(full, value, spec.domain)
            check_shape(full, spec, value, sizes, p.name, time_varying=full in time_varying)
            values[full] = value
        for name, value in given.items():
            if name not in values:
                check_domain(name, value, "real")
                values[name] = value
        return values

    def _check_param_shapes(self, graph: Graph) -> None:
        sizes = graph.group_sizes()
        for full, (p, spec) in self.param_specs.items():
            if GROUP in spec.shape:
                check_shape(full, spec, self.params[full].detach(), sizes, p.name,
                            time_varying=full in self.params.time_varying)

    # -- the plan ------------------------------------------------------------
    def plan(self) -> list[dict]:
        """One row per process in step order: role, class, reads, writes, state, events, parameters."""
        rows = []
        for i, p in enumerate(self.order):
            rows.append({
                "order": i + 1, "name": p.name, "role": p.role, "class": type(p).__name__,
                "reads": [r.key + ("?" if r.optional else "") for r in map(Read.of, p.reads())],
                "writes": [f.key + (f" ({f.combine})" if f.combine else "") for f in p.field_specs()],
                "owns": [s.key for s in p.state_specs()],
                "events": [e.key for e in p.event_specs()],
                "params": [p.param(s.name) for s in p.param_specs()],
            })
        return rows

    def describe(self) -> str:
        """The plan as text: the step order, then parameters, observables and outcomes."""
        lines = [f"step (mode={self.sampler.mode}, dt={self.dt:g}):"]
        for row in self.plan():
            lines.append(f"  {row['order']}. {row['name']} [{row['role']}] {row['class']}")
            for label in ("reads", "writes", "owns", "events", "params"):
                if row[label]:
                    lines.append(f"       {label:7s} {', '.join(row[label])}")
        lines.append("  then: observe " + ", ".join(self.observables))
        lines.append("parameters:")
        specs = self.param_specs
        for name in self.params.names:
            value = self.params[name].detach()
            shown = f"{float(value):g}" if value.dim() == 0 else f"{[round(v, 6) for v in value.flatten().tolist()]}"
            p, spec = specs.get(name, (None, None))
            extra = "" if spec is None else f"  {spec.domain}, {spec.describe_shape(self.group_sizes())}" + (
                f", {spec.unit}" if spec.unit else "")
            flags = " (learnable)" if name in self.params.learnable else ""
            lines.append(f"  {name} = {shown}{flags}{extra}")
        lines.append("observables:")
        for o in self.observables.values():
            by = f" by {', '.join(o.by)}" if o.by else ""
            main = " (main)" if o.name == self.main_observable else ""
            lines.append(f"  {o.name}: {o.kind} of {o.source}{by}{main}")
        if self.outcomes:
            lines.append("outcomes:")
            for o in self.outcomes.values():
                lines.append(f"  {o.name}: {o.description}")
        return "\n".join(lines)

    # -- the graph -----------------------------------------------------------
    def requirements(self) -> Requirements:
        req = Requirements()
        for p in self.order:
            req.merge(p.requirements())
            for s in p.state_specs():
                req.need(s.node_type)
            for nt, _ in p.streams():
                req.need(nt)
        for name in req.groupings:  # a process names a grouping; model.groupings defines it (_check_wiring)
            req.groupings[name] = self.groupings[name]
        for o in self.observables.values():
            req.need(o.node_type)
            for g in o.by:
                req.groupings[g] = self.groupings[g]
        for full, (p, spec) in self.param_specs.items():
            if GROUP in spec.shape and self._per_group(full):  # one number for every group needs no grouping
                req.groupings[spec.grouping] = self.groupings[spec.grouping]
        for name, g in list(req.groupings.items()):
            if g is None:  # a process named a grouping it reads: the model's definition of it
                req.groupings[name] = self.groupings[name]
        return req

    def _per_group(self, full: str) -> bool:
        """Whether a parameter declared per group holds values per group (not one number for all, which reads
        neither the grouping nor its attribute)."""
        scalar_dims = 1 if full in self.params.time_varying else 0  # a time-varying value: [periods, *shape]
        return self.params.raw(full).dim() > scalar_dims

    def prepare(self, data, dtype: torch.dtype | None = None) -> Graph:
        """Validate a ``HeteroData`` graph and build what the processes read (once per graph)."""
        if isinstance(data, Graph):
            graph = data
        else:
            graph = Graph(data, self.requirements(), dtype or self._dtype())
            release_free_memory()  # the layouts' build transient goes back to the system (lpm_graph.memory)
        for p in self.order:
            p.check_graph(graph)
        self._check_param_shapes(graph)
        return graph

    def _dtype(self) -> torch.dtype:
        return self.params.raw(self.params.names[0]).dtype if self.params.names else torch.get_default_dtype()

    # -- the step ------------------------------------------------------------
    def step(self, t: int, state: dict[str, Tensor], values: dict[str, Tensor],
             ctx: StepContext) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, dict[str, Tensor]]]:
        """One step in the documented order; returns (new state, series, grouped series)."""
        if t % TRIM_EVERY == 0 and ctx.graph.device.type == "cpu":
            release_free_memory()  # keeps glibc's heap from growing over an unroll (lpm_graph.memory)
        c = ctx.at(t, self.params.at(t, values))
        fields: dict[str, Tensor] = {}
        events: dict[str, Tensor] = {}
        specs = self._field_specs
        for p in self.order:
            out = p(c, state, fields)
            self._check_output(p, out)
            if out.state:
                state = {**state, **out.state}
            for k, v in out.fields.items():
                if k in fields:
                    fields[k] = fields[k] + v if specs[k].combine == "sum" else fields[k] * v
                else:
                    fields[k] = v
            events.update(out.events)
        series, grouped = self._observe(state, events, ctx.graph, c.replicates, c.dtype)
        return state, series, grouped

    def _check_output(self, p: Process, out: Output) -> None:
        """A process returns only the state it owns, the fields it writes and the events it emits."""
        declared = self._declared[p.name]
        for kind, keys, allowed in (("state", out.state, declared[0]), ("fields", out.fields, declared[1]),
                                    ("events", out.events, declared[2])):
            if not allowed.issuperset(keys):
                extra = sorted(set(keys) - allowed)
                raise ConfigError(f"process {p.name!r} ({type(p).__name__}) returned {kind} {extra}, which it does "
                                  f"not declare ({kind}: {sorted(allowed)}); declare them in its "
                                  f"{ {'state': 'state_specs', 'fields': 'field_specs', 'events': 'event_specs'}[kind]}()")

    def _observe(self, state: dict[str, Tensor], events: dict[str, Tensor], graph: Graph, replicates: int,
                 dtype: torch.dtype) -> tuple[dict[str, Tensor], dict[str, dict[str, Tensor]]]:
        if graph.partition is not None:  # a part of a partitioned graph: sums over every part (lpm_graph.distributed)
            return graph.partition.observe(self.observables, self._state_specs, state, events, graph, replicates,
                                           dtype)
        series: dict[str, Tensor] = {}
        grouped: dict[str, dict[str, Tensor]] = {}
        specs = self._state_specs
        for name, o in self.observables.items():
            x = state.get(o.source)
            if x is None:
                x = events.get(o.source)
            categories = specs[o.source].categories if o.source in specs else ()
            if x is None:  # an event not emitted this step (e.g. at step 0) happened to nobody
                series[name] = torch.zeros(replicates, dtype=dtype, device=graph.device)
                for g in o.by:
                    grouped.setdefault(g, {})[name] = torch.zeros(len(graph.group_labels(g)), replicates, dtype=dtype,
                                                                  device=graph.device)
                continue
            series[name] = o.reduce(x, categories)
            for g in o.by:
                grouped.setdefault(g, {})[name] = o.reduce_groups(x, graph.group_adjacency(g), graph.group_counts(g),
                                                                  categories)
        return series, grouped

    # -- running -------------------------------------------------------------
    def forward(self, graph, steps: int, seed: int = 0, replicates: int = 1, progress: bool = False,
                dtype: torch.dtype | None = None, overrides: Mapping[str, Tensor] | None = None) -> Trajectory:
        """Run ``steps`` steps from the seeded initial state.

        Args:
            graph: a ``HeteroData`` graph or a prepared :class:`Graph`
                (prepare once with :meth:`prepare` to reuse across runs).
            steps (int): number of steps ``T`` (> 0).
            seed (int): keys every random draw (with step, stream, node type and uid).
            replicates (int): replicate columns ``R`` run side by side (one in
                expected mode, whose replicates would all be the same).
            progress (bool): show a progress bar.
            dtype: floating type of the state; defaults to the parameters' dtype.
            overrides (Mapping[str, Tensor], optional): constrained parameter
                values to use instead of the stored ones (e.g. the time series
                a calibration network produces); gradients flow into them.
        """
        if not isinstance(steps, int) or isinstance(steps, bool) or steps <= 0:
            raise ConfigError(f"steps must be a positive integer, got {steps!r}")
        if not isinstance(replicates, int) or isinstance(replicates, bool) or replicates < 1:
            raise ConfigError(f"replicates must be a positive integer, got {replicates!r}")
        with flush_denormals():
            return self._run(graph, steps, seed, replicates, progress, dtype, overrides)

    def _run(self, graph, steps, seed, replicates, progress, dtype, overrides) -> Trajectory:
        graph = self.prepare(graph)
        values = self.params.as_dict()
        if overrides:
            unknown = sorted(set(overrides) - set(values))
            if unknown:
                raise ConfigError(f"overrides name {unknown}, which are not in model.params")
            values.update(overrides)
        dtype = dtype or self._dtype()
        if not self.sampler.stochastic:
            replicates = 1  # the mean field is deterministic: replicates would be identical columns
        if self.params.names and graph.device != self.params.raw(self.params.names[0]).device:
            raise ConfigError(f"the graph is on {graph.device} but the model on "
                              f"{self.params.raw(self.params.names[0]).device}; move both with .to(device)")
        self._state_specs = self.state_specs
        self._field_specs = self.field_specs
        self._declared = {p.name: ({s.key for s in p.state_specs()}, {f.key for f in p.field_specs()},
                                   {e.key for e in p.event_specs()}) for p in self.order}
        ctx = StepContext(t=0, graph=graph, params=self.params.at(0, values), sampler=self.sampler, dt=self.dt,
                          replicates=replicates, dtype=dtype, seed=int(seed))
        state, events0 = self.initial_state(ctx)
        series0, grouped0 = self._observe(state, events0, graph, replicates, dtype)
        series = {k: [v] for k, v in series0.items()}
        grouped = {g: {k: [v] for k, v in named.items()} for g, named in grouped0.items()}

        from tqdm.auto import tqdm

        backward = _BackwardProgress(steps) if progress and torch.is_grad_enabled() else None
        for t in tqdm(range(steps), desc="simulate", unit="step", disable=not progress, leave=False):
            if self.use_checkpoint and torch.is_grad_enabled():
                state, s, a = _checkpoint(self.step, t, state, values, ctx, use_reentrant=False,
                                          preserve_rng_state=False)
            else:
                state, s, a = self.step(t, state, values, ctx)
            if backward is not None:
                backward.watch(t, state)
            for k, v in s.items():
                series[k].append(v)
            for g, named in a.items():
                for k, v in named.items():
                    grouped[g][k].append(v)
        return Trajectory(series={k: torch.stack(v) for k, v in series.items()},
                          grouped={g: {k: torch.stack(v) for k, v in named.items()} for g, named in grouped.items()},
                          labels={g: graph.group_labels(g) for g in grouped},
                          observables=dict(self.observables), num_nodes=graph.total_nodes(),
                          final_state=dict(state))

    def initial_state(self, ctx: StepContext) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Every process's initial state and step-0 events, in step order."""
        state: dict[str, Tensor] = {}
        events: dict[str, Tensor] = {}
        specs = self.state_specs
        for p in self.order:
            out: Output = p.init(ctx)
            owned = {s.key for s in p.state_specs()}
            extra = sorted(set(out.state) - owned)
            missing = sorted(owned - set(out.state))
            if extra or missing:
                raise ConfigError(f"process {p.name!r}: init() returned state {sorted(out.state)} but the process "
                                  f"owns {sorted(owned)}")
            for k, v in out.state.items():
                n = ctx.graph.num_nodes[specs[k].node_type]
                if tuple(v.shape[:2]) != (n, ctx.replicates):
                    raise ConfigError(f"process {p.name!r}: initial {k} has shape {tuple(v.shape)}, expected "
                                      f"[{n}, {ctx.replicates}, ...]")
            state.update(out.state)
            events.update(out.events)
        return state, events
