r"""LLM archetypes: a behaviour whose decisions come from a language model asked once per group.

Agents are grouped by the variables of a prompt template — categorical or
binned node attributes (groupings of ``model.groupings``, built by the core:
:meth:`~lpm_graph.core.Graph.group_index`) and binned observed values (a
field another process writes, or a state, per node or reduced to its mean
over the population or within a grouping's groups).  Every ``every`` steps
(a *decision*), each group present is asked one question, the template
filled with the group's labels; the answer is broadcast to the group's
agents by one index gather.  Questions per decision = groups present, at
most the product of the variables' sizes, whatever the population's size.

The answer, a probability :math:`p_g` in ``[0, 1]`` (stated, or the value of
a chosen option, or the expected value of scored options:
:mod:`~lpm_graph.behavior.llm.answers`), is held as state
``<node type>.<decision>_stated`` until the next decision; every step the
process writes the decision field

.. math::

    d_i = \sigma\big(a \,\operatorname{logit}(p_{g(i)}) + b\big)

with the parameters ``<name>.slope`` :math:`a` (default 1) and
``<name>.offset`` :math:`b` (default 0): a logistic calibration of what the
model says to what agents do (at its default, ``d = p`` exactly).  **Answers
are constants to autograd**: gradients reach :math:`a`, :math:`b` and
whatever else the run depends on, never the language model, so a
calibration fits the mapping, not the model's words.

What the prompt sees is only the variables' labels of a group (``"40-50"``,
``"1-2%"``), never an individual's record; ``max_groups`` refuses a grouping so
fine that it would approach one question per agent.

A question the backend fails to answer (after the client's retries:
:mod:`~lpm_graph.behavior.llm.client`) is handled by ``on_failure``:

``prior``  the group's agents take ``<name>.prior``;
``rule``   they take ``rule.values[k]``, ``k`` the group's label of ``rule.variable``;
``error``  the run stops with :class:`LLMAnswerError` naming the group, the reason and the last reply.

Every failure is counted in :meth:`LLMArchetypes.report` (``processes.<name>``
of the run's summary) with the questions, calls, cache hits, retries, errors
by kind, latency, the model id and the prompt template's SHA-256.
"""
from __future__ import annotations

import hashlib
import string
import time
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from lpm_graph.behavior.llm.answers import AnswerContract, make_contract
from lpm_graph.behavior.llm.backends import Backend, Request, make_backend
from lpm_graph.behavior.llm.cache import AnswerCache, canonical
from lpm_graph.behavior.llm.client import LLMClient
from lpm_graph.core.graph import Grouping, Requirements, bin_index, bin_labels
from lpm_graph.core.observe import Observable
from lpm_graph.core.params import ParamSpec, check_domain
from lpm_graph.core.process import Output, Process, StepContext
from lpm_graph.core.state import FieldSpec, StateSpec
from lpm_graph.errors import ConfigError

__all__ = ["LLMArchetypes", "LLMAnswerError", "Variable", "POLICIES"]

POLICIES = ("prior", "rule", "error")
_EPS = 1e-6


class LLMAnswerError(ConfigError):
    """A question the language model did not answer validly, under ``on_failure: error``."""


class Variable:
    """One variable of the prompt: a grouping's label, or the bin of an observed value.

    Args:
        name (str): its placeholder in the template (``{age}``).
        grouping (str): a grouping of ``model.groupings`` (categorical codes or bins of an attribute); or
        source (str): a state or field key (``person.local_prevalence``) with
        bins (Sequence[float]): lower edges of its bins, strictly increasing (the last open),
        labels (Sequence[str], optional): the bins' labels (default ``"lo-hi"``, ``"hi+"``),
        reduce (str, optional): ``mean``: the mean over the node type (per replicate), or within each group
            of ``by``, instead of each node's own value.
        by (str, optional): the grouping of ``reduce: mean``.
    """

    def __init__(self, name: str, grouping: str | None = None, source: str | None = None,
                 bins: Sequence[float] | None = None, labels: Sequence[str] | None = None,
                 reduce: str | None = None, by: str | None = None):
        where = f"LLMArchetypes.variables.{name}"
        if (grouping is None) == (source is None):
            raise ConfigError(f"{where}: give either grouping (a model grouping) or source (a state or field key "
                              "with bins)")
        self.name, self.grouping, self.source, self.reduce, self.by = name, grouping, source, reduce, by
        self.labels = None if labels is None else [str(v) for v in labels]
        self.bins = None
        if source is not None:
            if "." not in str(source):
                raise ConfigError(f"{where}.source must be a key '<node type>.<name>', got {source!r}")
            if not bins:
                raise ConfigError(f"{where}: an observed source needs bins (lower edges), e.g. [0, 0.01, 0.05]")
            self.bins = tuple(Grouping(name, bins=tuple(bins)).bins)
            if self.labels is not None and len(self.labels) != len(self.bins):
                raise ConfigError(f"{where}: {len(self.labels)} labels for {len(self.bins)} bins")
            self.labels = self.labels or bin_labels(self.bins)
            if reduce not in (None, "mean"):
                raise ConfigError(f"{where}.reduce must be mean or null, got {reduce!r}")
            if by is not None and reduce != "mean":
                raise ConfigError(f"{where}.by groups a mean: set reduce: mean")
        elif bins is not None or reduce is not None or by is not None or labels is not None:
            raise ConfigError(f"{where}: a grouping variable takes its bins and labels from model.groupings."
                              f"{grouping}; bins, labels, reduce and by are for an observed source")

    def describe(self) -> dict:
        return {k: v for k, v in (("grouping", self.grouping), ("source", self.source), ("bins", self.bins),
                                  ("labels", self.labels), ("reduce", self.reduce), ("by", self.by)) if v is not None}

    def codes(self, ctx: StepContext, node_type: str, state: Mapping, fields: Mapping) -> tuple[Tensor, list[str]]:
        """Each node's code, broadcastable to ``[N, R]``, and the labels of the codes."""
        graph = ctx.graph
        if self.grouping is not None:
            return graph.group_index(self.grouping).unsqueeze(1), graph.group_labels(self.grouping)
        x = state.get(self.source)
        if x is None:
            x = fields.get(self.source)
        if x is None:
            raise ConfigError(f"LLMArchetypes.variables.{self.name}: {self.source} has no value at step {ctx.t} "
                              "(no process before the behaviour wrote it)")
        n = graph.num_nodes[node_type]
        x = torch.as_tensor(x, device=graph.device).detach().to(torch.float64)
        if x.dim() == 0:
            x = x.reshape(1, 1)
        elif x.dim() == 1:
            x = x.unsqueeze(0) if x.numel() == ctx.replicates and x.numel() != n else x.unsqueeze(1)
        if self.reduce == "mean":
            if x.size(0) != n:
                raise ConfigError(f"LLMArchetypes.variables.{self.name}: reduce: mean needs a per-node {self.source} "
                                  f"({n} {node_type} nodes), got shape {tuple(x.shape)}")
            if self.by is None:
                x = x.mean(0, keepdim=True)
            else:
                index = graph.group_index(self.by)
                groups = len(graph.group_labels(self.by))
                sums = torch.zeros(groups, x.size(1), dtype=x.dtype, device=x.device).index_add_(0, index, x)
                counts = graph.group_counts(self.by).to(x.dtype).clamp_min(1).unsqueeze(1)
                x = (sums / counts)[index]
        if not bool(torch.isfinite(x).all()):
            raise ConfigError(f"LLMArchetypes.variables.{self.name}: {self.source} holds values that are not finite "
                              f"at step {ctx.t}")
        return bin_index(x, self.bins), list(self.labels)


class LLMArchetypes(Process):
    r"""A behaviour: decisions of groups of agents, each group's from one question to a language model.

    (module docstring: :mod:`lpm_graph.behavior.llm.process`)

    Args:
        decision (str): the decision; the process writes the field ``<node_type>.<decision>``. (default:
            ``"stays_home"``)
        variables (Mapping[str, Mapping]): the template's variables by placeholder name, each
            ``{grouping: <name>}`` or ``{source: <key>, bins: [...], labels: [...], reduce: mean, by: <grouping>}``
            (:class:`Variable`); one set to null is removed (a model's form of the behaviour replacing the
            default's variables).
        prompt (Mapping): ``{system: <text>, user: <text>}``, placeholders ``{<variable>}``; every variable
            appears and nothing else. The answer's instruction is appended to the user text.
        answer (Mapping): the answer contract (:func:`~lpm_graph.behavior.llm.answers.make_contract`):
            ``{type: probability}`` or ``{type: choice, options: {<label>: <value>, ...}}``, with
            ``method: json`` or ``logprobs``. (default: a probability, as JSON)
        backend (Mapping | Backend): ``{kind: mock | openai | transformers | llama_cpp, ...}``
            (:mod:`~lpm_graph.behavior.llm.backends`). (default: the mock)
        node_type (str): the agents' node type. (default: ``"person"``)
        every (int): steps between decisions (the first at step 0). (default: 7)
        temperature (float), seed (int), max_tokens (int): of every request (part of its cache key; ``seed``
            is not the run's seed, so every run and calibration iteration asks the same questions).
        retries, backoff, max_backoff, timeout, concurrency: the client's
            (:class:`~lpm_graph.behavior.llm.client.LLMClient`).
        cache (str, optional): the SQLite answer cache (:mod:`~lpm_graph.behavior.llm.cache`); ``None``: in
            memory, for this process only.
        on_failure (str): ``prior``, ``rule`` or ``error``. (default: ``"prior"``)
        prior (float): default of the parameter ``<name>.prior``. (default: 0)
        rule (Mapping, optional): ``{variable: <name>, values: [one per label]}`` for ``on_failure: rule``.
        slope (float), offset (float): defaults of ``<name>.slope`` and ``<name>.offset``. (default: 1, 0)
        max_groups (int): the most groups one decision may ask about. (default: 10000)
        name (str): the process name. (default: ``"llm"``)
    """

    role = "behaviour"
    default_name = "llm"

    def __init__(self, variables: Mapping[str, Mapping], prompt: Mapping[str, str], decision: str = "stays_home",
                 answer: Mapping | AnswerContract | None = None, backend: Mapping | Backend | None = None,
                 node_type: str = "person", every: int = 7, temperature: float = 0.0, seed: int | None = 0,
                 max_tokens: int = 64, retries: int = 3, backoff: float = 0.5, max_backoff: float = 30.0,
                 timeout: float = 30.0, concurrency: int = 8, cache: str | None = None, on_failure: str = "prior",
                 prior: float = 0.0, rule: Mapping | None = None, slope: float = 1.0, offset: float = 0.0,
                 max_groups: int = 10000, name: str | None = None):
        super().__init__(name)
        if not isinstance(decision, str) or not decision.isidentifier():
            raise ConfigError(f"LLMArchetypes.decision must be an identifier (stays_home), got {decision!r}")
        self.decision, self.node_type = decision, str(node_type)
        if not isinstance(variables, Mapping) or not variables:
            raise ConfigError("LLMArchetypes.variables must map each placeholder of the prompt to a grouping or an "
                              "observed source")
        # a variable set to null is removed (a model's form of a behaviour replaces the default's variables,
        # as a null entry of model.behavior removes a process)
        self.variables = [Variable(str(k), **dict(v)) for k, v in variables.items() if v is not None]
        self.prompt = self._check_prompt(prompt)
        self.contract = make_contract(answer)
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(f"LLMArchetypes.every must be a whole number of steps >= 1, got {every!r}")
        if isinstance(max_groups, bool) or not isinstance(max_groups, int) or max_groups < 1:
            raise ConfigError(f"LLMArchetypes.max_groups must be a whole number >= 1, got {max_groups!r}")
        check_domain("temperature", temperature, "nonnegative", where="LLMArchetypes")
        self.every, self.max_groups = every, max_groups
        self.temperature, self.seed, self.max_tokens = float(temperature), seed, int(max_tokens)
        self.backend = make_backend(backend)
        if self.contract.method == "logprobs" and not self.backend.supports_logprobs:
            raise ConfigError(f"answer.method: logprobs, but the {self.backend.kind} backend gives no "
                              "log-probabilities; use answer.method: json")
        self.cache_path = cache
        self.client = LLMClient(self.backend, AnswerCache(cache), retries=retries, backoff=backoff,
                                max_backoff=max_backoff, timeout=timeout, concurrency=concurrency)
        if on_failure not in POLICIES:
            raise ConfigError(f"LLMArchetypes.on_failure must be one of {list(POLICIES)}, got {on_failure!r}")
        self.on_failure = on_failure
        check_domain("prior", prior, "probability", where="LLMArchetypes")
        check_domain("slope", slope, "positive", where="LLMArchetypes")
        check_domain("offset", offset, "real", where="LLMArchetypes")
        self.prior, self.slope, self.offset = float(prior), float(slope), float(offset)
        self.rule = self._check_rule(rule)
        self.template_sha256 = hashlib.sha256(canonical({
            "prompt": self.prompt, "variables": {v.name: v.describe() for v in self.variables},
            # a choice's option values change what an answer means, not what is asked (so not the cache key)
            "answer": {**self.contract.describe(), "option_values": getattr(self.contract, "options", None)},
        }).encode()).hexdigest()
        self._counts = {"decisions": 0, "groups_last": 0, "groups_max": 0, "fallbacks": 0, "seconds": 0.0}
        self._failed_examples: list[dict] = []

    # -- configuration checks ------------------------------------------------
    def _check_prompt(self, prompt) -> dict:
        if not isinstance(prompt, Mapping) or "user" not in prompt:
            raise ConfigError("LLMArchetypes.prompt must be {system: <text>, user: <text>} with {<variable>} "
                              "placeholders")
        unknown = set(prompt) - {"system", "user"}
        if unknown:
            raise ConfigError(f"LLMArchetypes.prompt: unknown keys {sorted(unknown)}; use system and user")
        names = {v.name for v in self.variables}
        used = set()
        for part, text in prompt.items():
            if not isinstance(text, str):
                raise ConfigError(f"LLMArchetypes.prompt.{part} must be text, got {type(text).__name__}")
            try:
                for _, field, spec, conv in string.Formatter().parse(text):
                    if field is not None:
                        if field not in names:
                            raise ConfigError(f"LLMArchetypes.prompt.{part} has the placeholder {{{field}}}, which "
                                              f"is not a variable (variables: {sorted(names)}); write a literal brace "
                                              "as {{ or }}")
                        used.add(field)
            except ValueError as exc:
                raise ConfigError(f"LLMArchetypes.prompt.{part}: {exc}") from None
        if used != names:
            raise ConfigError(f"LLMArchetypes.variables {sorted(names - used)} do not appear in the prompt; groups "
                              "that differ only by them would ask the same question: remove them or use them")
        return {k: str(v) for k, v in prompt.items()}

    def _check_rule(self, rule):
        if self.on_failure == "rule" and rule is None:
            raise ConfigError("LLMArchetypes.on_failure: rule needs rule: {variable: <name>, values: [...]}")
        if rule is None:
            return None
        rule = dict(rule)
        if set(rule) != {"variable", "values"}:
            raise ConfigError(f"LLMArchetypes.rule must be {{variable: <name>, values: [...]}}, got keys {sorted(rule)}")
        if rule["variable"] not in {v.name for v in self.variables}:
            raise ConfigError(f"LLMArchetypes.rule.variable {rule['variable']!r} is not a variable of the prompt")
        check_domain("values", list(rule["values"]), "probability", where="LLMArchetypes.rule")
        return {"variable": rule["variable"], "values": [float(v) for v in rule["values"]]}

    # -- declarations --------------------------------------------------------
    @property
    def key(self) -> str:
        return f"{self.node_type}.{self.decision}"

    @property
    def stated_key(self) -> str:
        return f"{self.node_type}.{self.decision}_stated"

    def state_specs(self):
        return [StateSpec(self.node_type, f"{self.decision}_stated", "continuous", init=None, unit="probability",
                          doc="the language model's answer for the agent's group at the last decision")]

    def field_specs(self):
        return [FieldSpec(self.node_type, self.decision, unit="probability",
                          doc="probability of the decision (the stated one through the logistic calibration)")]

    def param_specs(self):
        return [ParamSpec("slope", "positive", default=self.slope, doc="slope of the logistic calibration of the "
                          "stated probability (on the logit scale)"),
                ParamSpec("offset", "real", default=self.offset, doc="offset of the logistic calibration"),
                ParamSpec("prior", "probability", default=self.prior, unit="probability",
                          doc="the decision before the first answer, and of groups whose question failed "
                          "(on_failure: prior)")]

    def reads(self):
        return [v.source for v in self.variables if v.source is not None] + [self.stated_key]

    def requirements(self) -> Requirements:
        names = {v.grouping for v in self.variables if v.grouping} | {v.by for v in self.variables if v.by}
        req = Requirements(groupings={g: Grouping(g, self.node_type) for g in names})
        req.need(self.node_type)
        return req

    def observables(self):
        # named as Behavior names its decisions' observables: a node type other than person is a prefix
        name = f"{self.decision}_stated" if self.node_type == "person" else f"{self.node_type}_{self.decision}_stated"
        return [Observable(name, self.stated_key, "mean", panel="behaviour", unit="probability")]

    def workspace(self):
        return {self.node_type: 4.0}

    def saved(self):
        return {self.node_type: 2.0}

    def check_graph(self, graph) -> None:
        for g in {v.grouping for v in self.variables if v.grouping} | {v.by for v in self.variables if v.by}:
            if graph.groupings[g].node_type != self.node_type:
                raise ConfigError(f"LLMArchetypes {self.name!r}: grouping {g!r} groups "
                                  f"{graph.groupings[g].node_type} nodes, the decision is of {self.node_type}")
        if self.rule is not None:
            var = next(v for v in self.variables if v.name == self.rule["variable"])
            size = len(var.labels) if var.labels is not None else len(graph.group_labels(var.grouping))
            if len(self.rule["values"]) != size:
                raise ConfigError(f"LLMArchetypes.rule.values has {len(self.rule['values'])} values but variable "
                                  f"{var.name!r} has {size} labels")

    # -- running -------------------------------------------------------------
    def init(self, ctx: StepContext) -> Output:
        prior = self.value(ctx, "prior").detach().to(dtype=ctx.dtype, device=ctx.graph.device)
        return Output(state={self.stated_key: prior.expand(ctx.graph.num_nodes[self.node_type],
                                                             ctx.replicates).clone()})

    def messages(self, labels: Mapping[str, str]) -> tuple:
        user = self.prompt["user"].format(**labels) + "\n\n" + self.contract.instruction()
        out = [{"role": "user", "content": user}]
        if self.prompt.get("system"):
            out.insert(0, {"role": "system", "content": self.prompt["system"].format(**labels)})
        return tuple(out)

    def decide(self, ctx: StepContext, state: Mapping, fields: Mapping) -> Tensor:
        """The stated probability of every agent, ``[N, R]``: one question per group present."""
        n = ctx.graph.num_nodes[self.node_type]
        code, sizes, labels = None, [], []
        for v in self.variables:
            c, lab = v.codes(ctx, self.node_type, state, fields)
            code = c if code is None else code * len(lab) + c
            sizes.append(len(lab))
            labels.append(lab)
        shape = torch.broadcast_shapes(code.shape, (n, ctx.replicates))
        groups, inverse = torch.unique(code, return_inverse=True)
        if groups.numel() > self.max_groups:
            raise ConfigError(f"LLMArchetypes {self.name!r}: {groups.numel()} groups at step {ctx.t} exceed "
                              f"max_groups={self.max_groups}; coarsen the variables' bins (a question per agent "
                              "would see individuals' records)")
        requests, described = [], []
        for g in groups.tolist():
            parts, rest = {}, int(g)
            for v, size, lab in zip(reversed(self.variables), reversed(sizes), reversed(labels)):
                parts[v.name] = lab[rest % size]
                rest //= size
            parts = {v.name: parts[v.name] for v in self.variables}
            described.append(parts)
            requests.append(Request(self.messages(parts), self.contract.schema(), self.temperature, self.seed,
                                    self.max_tokens, tuple(self.contract.candidates())
                                    if self.contract.method == "logprobs" else None,
                                    label=", ".join(f"{k}={v}" for k, v in parts.items())))
        results = self.client.ask(requests, self.contract)
        values = []
        for parts, request, result in zip(described, requests, results):
            if result.value is not None:
                values.append(result.value)
                continue
            self._counts["fallbacks"] += 1
            if len(self._failed_examples) < 5:
                self._failed_examples.append({"group": parts, "reason": result.reason,
                                              "reply": None if result.reply is None else str(result.reply)[:200]})
            if self.on_failure == "error":
                raise LLMAnswerError(
                    f"LLMArchetypes {self.name!r}: no valid answer for the group {request.label} at step {ctx.t} "
                    f"after {result.tries} tries ({result.reason}); last reply: {str(result.reply)[:200]!r}. "
                    "Set on_failure: prior or rule to go on without it")
            if self.on_failure == "rule":
                k = next(i for i, v in enumerate(self.variables) if v.name == self.rule["variable"])
                values.append(self.rule["values"][labels[k].index(parts[self.rule["variable"]])])
            else:
                values.append(float(self.value(ctx, "prior").detach()))
        self._counts["decisions"] += 1
        self._counts["groups_last"] = len(values)
        self._counts["groups_max"] = max(self._counts["groups_max"], len(values))
        answers = torch.tensor(values, dtype=ctx.dtype, device=ctx.graph.device)
        return answers[inverse.reshape(code.shape)].expand(shape)

    def forward(self, ctx: StepContext, state: dict[str, Tensor], fields: dict[str, Tensor]) -> Output:
        t0 = time.perf_counter()
        out = Output()
        stated = state[self.stated_key]
        if ctx.t % self.every == 0:
            stated = self.decide(ctx, state, fields).contiguous()
            out.state[self.stated_key] = stated
        a = self.value(ctx, "slope").to(dtype=stated.dtype, device=stated.device)
        b = self.value(ctx, "offset").to(dtype=stated.dtype, device=stated.device)
        if not (a.requires_grad or b.requires_grad) and float(a) == 1.0 and float(b) == 0.0:
            out.fields[self.key] = stated
        else:
            z = torch.logit(stated.clamp(_EPS, 1.0 - _EPS))
            out.fields[self.key] = torch.sigmoid(a * z + b)
        self._counts["seconds"] += time.perf_counter() - t0
        return out

    # -- reporting -----------------------------------------------------------
    def report(self) -> dict:
        c = self._counts
        return {
            "decision": self.key, "model": self.backend.model_id, "backend": self.backend.describe(),
            "template_sha256": self.template_sha256, "answer": self.contract.kind, "method": self.contract.method,
            "every": self.every, "on_failure": self.on_failure, "cache": self.cache_path,
            "decisions": c["decisions"], "groups": {"last": c["groups_last"], "max": c["groups_max"]},
            "fallbacks": c["fallbacks"], **self.client.report(), "behaviour_seconds": round(c["seconds"], 6),
            "failed_examples": list(self._failed_examples),
        }

    def reset_report(self) -> None:
        """Zero the counts (a new run of the same model)."""
        self.client.reset_counts()
        self._counts = {"decisions": 0, "groups_last": 0, "groups_max": 0, "fallbacks": 0, "seconds": 0.0}
        self._failed_examples = []

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, decision={self.key!r}, backend={self.backend.kind!r}, "
                f"model={self.backend.model_id!r}, every={self.every}")
