"""Answer contracts: what a language model must answer, checked strictly.

A contract turns the model's reply into one number in ``[0, 1]`` (the
decision's probability) or refuses it with :class:`AnswerError`; nothing
else becomes a number.  Two kinds:

``probability``  ``{"probability": <number in [0, 1]>}`` and nothing else.
``choice``       ``{"choice": "<one of the options>"}``; each option has a
                 value in ``[0, 1]`` (``stay home: 1.0``, ``go out: 0.0``).

Either is asked for as JSON (``method: json``: the reply is parsed and
validated against :meth:`AnswerContract.schema`) or scored (``method:
logprobs``): the backend gives the log-probability of each candidate answer
(:meth:`AnswerContract.candidates`: the options, or the probabilities
``0, 0.1, ..., 1``) and the answer is their expected value under the
softmax of those log-probabilities.
"""
from __future__ import annotations

import abc

import json
import math
from collections.abc import Mapping, Sequence

from lpm_graph.errors import ConfigError

__all__ = ["AnswerError", "AnswerContract", "ProbabilityAnswer", "ChoiceAnswer", "make_contract", "METHODS"]

METHODS = ("json", "logprobs")


class AnswerError(ValueError):
    """A reply that breaks the answer contract; ``reply`` is what was received."""

    def __init__(self, reason: str, reply: object = None):
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _load_object(text: object) -> dict:
    if not isinstance(text, str):
        raise AnswerError(f"the reply is not text but {type(text).__name__}", text)
    try:
        value = json.loads(text.strip(), parse_constant=_reject_constant)
    except ValueError as exc:
        raise AnswerError(f"the reply is not valid JSON ({exc})", text) from None
    if not isinstance(value, dict):
        raise AnswerError(f"the reply is JSON {type(value).__name__}, not an object", text)
    return value


class AnswerContract(abc.ABC):
    """Base of the answer contracts (module docstring)."""

    kind: str = ""
    key: str = ""

    def __init__(self, method: str = "json"):
        if method not in METHODS:
            raise ConfigError(f"answer.method must be one of {list(METHODS)}, got {method!r}")
        self.method = method

    @abc.abstractmethod
    def schema(self) -> dict:
        """The JSON schema of a valid reply."""

    @abc.abstractmethod
    def value(self, field, reply=None) -> float:
        """The number of a valid ``field`` (the one property of the reply)."""

    def parse(self, text: object) -> float:
        """The answer's number, or :class:`AnswerError`: exactly one property, ``key``, of the right kind."""
        obj = _load_object(text)
        if set(obj) != {self.key}:
            raise AnswerError(f"the reply must have exactly the property {self.key!r}, got {sorted(obj)}", text)
        return self.value(obj[self.key], text)

    @abc.abstractmethod
    def candidates(self) -> list[str]:
        """The answers scored by log-probability."""

    @abc.abstractmethod
    def candidate_values(self) -> list[float]:
        """The value of each of :meth:`candidates`, in their order."""

    def from_scores(self, logprobs: Sequence[float | None], reply: object = None) -> float:
        """The expected value of the candidates under the softmax of their log-probabilities (``None``: the
        backend did not score that candidate, weight 0); every one unscored or not finite is an
        :class:`AnswerError`."""
        values = self.candidate_values()
        if len(logprobs) != len(values):
            raise AnswerError(f"{len(logprobs)} scores for {len(values)} candidates", reply)
        scored = [(lp, v) for lp, v in zip(logprobs, values) if lp is not None]
        if not scored or any(not isinstance(lp, (int, float)) or math.isnan(lp) or lp == math.inf
                             for lp, _ in scored):
            raise AnswerError(f"no usable log-probability among {list(logprobs)} for candidates {self.candidates()}",
                              reply)
        top = max(lp for lp, _ in scored)
        if top == -math.inf:
            raise AnswerError(f"every candidate has log-probability -inf ({self.candidates()})", reply)
        weights = [math.exp(lp - top) for lp, _ in scored]
        return sum(w * v for w, (_, v) in zip(weights, scored)) / sum(weights)

    def instruction(self) -> str:
        """What the prompt appends so the model knows the contract."""
        if self.method == "logprobs":
            return "Answer with one of: " + ", ".join(self.candidates()) + "."
        return "Answer with a JSON object only, matching this JSON schema: " + json.dumps(self.schema(),
                                                                                           sort_keys=True)

    def describe(self) -> dict:
        """The contract as plain JSON (part of every request's cache key and of the template's hash)."""
        return {"kind": self.kind, "method": self.method, "schema": self.schema(),
                "candidates": self.candidates() if self.method == "logprobs" else None,
                "values": self.candidate_values() if self.method == "logprobs" else None}


class ProbabilityAnswer(AnswerContract):
    """``{"probability": p}`` with ``0 <= p <= 1``; scored over ``grid`` (default 0, 0.1, ..., 1)."""

    kind = "probability"
    key = "probability"

    def __init__(self, method: str = "json", grid: Sequence[float] | None = None):
        super().__init__(method)
        grid = [round(i / 10, 1) for i in range(11)] if grid is None else [float(g) for g in grid]
        if not grid or any(not 0.0 <= g <= 1.0 for g in grid):
            raise ConfigError(f"answer.grid must be probabilities in [0, 1], got {grid}")
        self.grid = grid

    def schema(self) -> dict:
        return {"type": "object", "properties": {"probability": {"type": "number", "minimum": 0, "maximum": 1}},
                "required": ["probability"], "additionalProperties": False}

    def value(self, field, reply=None) -> float:
        if isinstance(field, bool) or not isinstance(field, (int, float)):
            raise AnswerError(f"probability must be a number, got {field!r}", reply)
        if not math.isfinite(field) or not 0.0 <= field <= 1.0:
            raise AnswerError(f"probability must be in [0, 1], got {field!r}", reply)
        return float(field)

    def candidates(self) -> list[str]:
        return [f"{g:g}" for g in self.grid]

    def candidate_values(self) -> list[float]:
        return list(self.grid)


class ChoiceAnswer(AnswerContract):
    """``{"choice": option}`` with ``option`` one of ``options`` (label -> its value in ``[0, 1]``)."""

    kind = "choice"
    key = "choice"

    def __init__(self, options: Mapping[str, float], method: str = "json"):
        super().__init__(method)
        if not isinstance(options, Mapping) or len(options) < 2:
            raise ConfigError(f"answer.options must map at least two option labels to values in [0, 1], "
                              f"got {options!r}")
        self.options = {}
        for label, v in options.items():
            if not isinstance(label, str) or not label.strip():
                raise ConfigError(f"answer.options: option labels must be non-empty strings, got {label!r}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                raise ConfigError(f"answer.options.{label} must be a value in [0, 1], got {v!r}")
            self.options[label] = float(v)

    def schema(self) -> dict:
        return {"type": "object", "properties": {"choice": {"type": "string", "enum": list(self.options)}},
                "required": ["choice"], "additionalProperties": False}

    def value(self, field, reply=None) -> float:
        if not isinstance(field, str) or field not in self.options:
            raise AnswerError(f"choice must be one of {list(self.options)}, got {field!r}", reply)
        return self.options[field]

    def candidates(self) -> list[str]:
        return list(self.options)

    def candidate_values(self) -> list[float]:
        return list(self.options.values())


def make_contract(spec: Mapping | AnswerContract | None) -> AnswerContract:
    """A contract from config: ``{type: probability | choice, method: json | logprobs, options: {...}, grid: [...]}``."""
    if isinstance(spec, AnswerContract):
        return spec
    spec = dict(spec or {"type": "probability"})
    kind = spec.pop("type", "probability")
    known = {"probability": {"method", "grid"}, "choice": {"method", "options"}}
    if kind not in known:
        raise ConfigError(f"answer.type must be 'probability' or 'choice', got {kind!r}")
    unknown = set(spec) - known[kind]
    if unknown:
        raise ConfigError(f"answer: unknown keys {sorted(unknown)} for type {kind}; use {sorted(known[kind])}")
    if kind == "choice":
        if "options" not in spec:
            raise ConfigError("answer.options is missing: a choice answer maps option labels to values in [0, 1]")
        return ChoiceAnswer(**spec)
    return ProbabilityAnswer(**spec)
