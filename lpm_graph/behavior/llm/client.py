"""The client: cache, retries with backoff, bounded concurrency, timeouts and counts around a backend.

:meth:`LLMClient.ask` takes the questions of one decision (one per group),
answers what the cache holds, sends the rest to the backend — at most
``concurrency`` at once (and no more than the backend takes), each with a
``timeout`` — and returns one :class:`Result` per question: its number, or
``None`` with the reason and the last reply.

**Every path ends as documented**:

* a rate limit (HTTP 429), a server error (5xx, 408), a timeout, a dropped
  connection or a malformed response is retried after a backoff — the
  server's ``Retry-After`` if it sent one, else ``backoff * 2**k`` — both
  capped at ``max_backoff``, up to ``retries`` more times;
* a reply that breaks the answer contract (not JSON, another shape, a number
  outside ``[0, 1]``, an unknown option) is retried the same way;
* a refused request (another 4xx) is not retried;
* an answer still missing after that is a *failure*: counted, reported with
  its reason and last reply, and left to the behaviour's declared policy
  (:class:`~lpm_graph.behavior.llm.LLMArchetypes`: a prior, a rule, or an
  error that stops the run).  A failure never becomes a number here;
* a refused API key stops the run at once (``ConfigError``).

Counts (:meth:`LLMClient.report`): ``questions`` asked of the client,
``cache_hits`` (``memory``: this run, e.g. a step recomputed in the backward
pass; ``disk``: an earlier run), ``calls`` sent to the backend (tries
included), ``retries``, ``failures``, ``errors`` by kind (``429``, ``500``,
``timeout``, ``invalid``, ...), the latency of the calls and the wall time
spent in the client.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lpm_graph.behavior.llm.answers import AnswerContract, AnswerError
from lpm_graph.behavior.llm.backends import Backend, BackendError, Request
from lpm_graph.behavior.llm.cache import AnswerCache, canonical, request_key
from lpm_graph.errors import ConfigError

__all__ = ["LLMClient", "Result"]


@dataclass
class Result:
    """The answer to one question: ``value`` in ``[0, 1]``, or ``None`` with ``reason`` and ``reply``."""

    value: float | None
    source: str                     # "memory", "disk", "backend", "failed"
    reason: str = ""
    reply: object = None
    tries: int = 0


@dataclass
class _Attempts:
    calls: int = 0
    retries: int = 0
    errors: dict = field(default_factory=dict)
    latencies: list = field(default_factory=list)


class LLMClient:
    """A backend behind a cache, with retries, backoff, concurrency and timeouts (module docstring).

    Args:
        backend (Backend): where questions go.
        cache (AnswerCache, optional): the answer cache (default: in memory only).
        retries (int): more tries after the first. (default: 3)
        backoff (float): seconds before the first retry, doubled each time. (default: 0.5)
        max_backoff (float): the longest wait, whatever ``Retry-After`` says. (default: 30)
        timeout (float): seconds one call may take. (default: 30)
        concurrency (int): calls at once, at most the backend's own limit. (default: 8)
        sleep (callable): how to wait (tests pass a recorder). (default: ``time.sleep``)
    """

    def __init__(self, backend: Backend, cache: AnswerCache | None = None, retries: int = 3, backoff: float = 0.5,
                 max_backoff: float = 30.0, timeout: float = 30.0, concurrency: int = 8,
                 sleep: Callable[[float], None] = time.sleep):
        for name, v, lo in (("retries", retries, 0), ("concurrency", concurrency, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"{name} must be a whole number >= {lo}, got {v!r}")
        for name, v in (("backoff", backoff), ("max_backoff", max_backoff), ("timeout", timeout)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or (name == "timeout" and v == 0):
                raise ConfigError(f"{name} must be a number of seconds > 0, got {v!r}")
        self.backend, self.cache = backend, cache if cache is not None else AnswerCache(None)
        self.retries, self.backoff, self.max_backoff = retries, float(backoff), float(max_backoff)
        self.timeout, self.concurrency, self.sleep = float(timeout), concurrency, sleep
        self._failed: dict[str, Result] = {}
        self.reset_counts()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["sleep"] = None if state["sleep"] is time.sleep else state["sleep"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.sleep = self.sleep or time.sleep

    def reset_counts(self) -> None:
        self.counts = {"questions": 0, "cache_hits": {"memory": 0, "disk": 0}, "calls": 0, "retries": 0,
                       "failures": 0, "errors": {}}
        self.latencies: list[float] = []
        self.seconds = 0.0

    # -- keys ----------------------------------------------------------------
    def payload(self, request: Request, contract: AnswerContract) -> dict:
        return {**self.backend.identity(), **request.payload(), "answer": contract.describe()}

    # -- asking --------------------------------------------------------------
    def ask(self, requests: Sequence[Request], contract: AnswerContract) -> list[Result]:
        """One :class:`Result` per request, in order (module docstring)."""
        t0 = time.perf_counter()
        results: list[Result | None] = [None] * len(requests)
        todo: dict[str, list[int]] = {}
        keys = []
        for i, request in enumerate(requests):
            self.counts["questions"] += 1
            payload = self.payload(request, contract)
            key = request_key(payload)
            keys.append((key, payload))
            if key in self._failed:  # failed earlier in this run: not asked again (a recomputed step)
                results[i] = self._failed[key]
                continue
            reply, where = self.cache.get(key)
            if reply is not None:
                try:
                    results[i] = Result(self._value(contract, reply), where, reply=reply)
                    self.counts["cache_hits"][where] += 1
                    continue
                except AnswerError:
                    pass  # a stored reply this contract no longer accepts: ask again
            todo.setdefault(key, []).append(i)
        if todo:
            first = [(key, idx[0]) for key, idx in todo.items()]
            workers = max(1, min(self.concurrency, self.backend.max_concurrency, len(first)))
            if workers == 1:
                done = [self._try(requests[i], contract) for _, i in first]
            else:
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm") as pool:
                    done = list(pool.map(lambda item: self._try(requests[item[1]], contract), first))
            for (key, i), (result, attempts, reply_text) in zip(first, done):
                self.counts["calls"] += attempts.calls
                self.counts["retries"] += attempts.retries
                for kind, n in attempts.errors.items():
                    self.counts["errors"][kind] = self.counts["errors"].get(kind, 0) + n
                self.latencies += attempts.latencies
                if result.value is None:
                    self.counts["failures"] += 1
                    self._failed[key] = result
                else:
                    self.cache.put(key, canonical(keys[i][1]), reply_text)
                for j in todo[key]:
                    results[j] = result
        self.seconds += time.perf_counter() - t0
        return results

    def _value(self, contract: AnswerContract, reply: str) -> float:
        if contract.method == "logprobs":
            from json import loads

            return contract.from_scores(loads(reply), reply)
        return contract.parse(reply)

    def _try(self, request: Request, contract: AnswerContract) -> tuple[Result, _Attempts, str | None]:
        """Ask until a valid answer or the tries run out; never raises but for a refused key."""
        attempts = _Attempts()
        reason, reply = "", None
        for k in range(self.retries + 1):
            if k:
                attempts.retries += 1
            attempts.calls += 1
            t = time.perf_counter()
            wait = None
            try:
                if contract.method == "logprobs":
                    scores = self.backend.score(request, self.timeout)
                    reply = canonical(scores)
                else:
                    reply = self.backend.complete(request, self.timeout)
                attempts.latencies.append(time.perf_counter() - t)
                value = self._value(contract, reply)
                return Result(value, "backend", reply=reply, tries=k + 1), attempts, reply
            except BackendError as exc:
                attempts.latencies.append(time.perf_counter() - t)
                attempts.errors[exc.kind] = attempts.errors.get(exc.kind, 0) + 1
                reason = f"{exc.kind}: {exc}"
                if not exc.retryable:
                    break
                wait = exc.retry_after
            except AnswerError as exc:
                attempts.errors["invalid"] = attempts.errors.get("invalid", 0) + 1
                reason, reply = f"invalid answer: {exc.reason}", exc.reply
            if k < self.retries:
                delay = self.backoff * 2 ** k if wait is None else wait
                self.sleep(min(delay, self.max_backoff))
        return Result(None, "failed", reason=reason, reply=reply, tries=attempts.calls), attempts, None

    # -- counts --------------------------------------------------------------
    def report(self) -> dict:
        lat = self.latencies
        return {
            **{k: (dict(v) if isinstance(v, dict) else v) for k, v in self.counts.items()},
            "latency_seconds": {"calls": len(lat), "total": round(sum(lat), 6),
                                "mean": round(sum(lat) / len(lat), 6) if lat else 0.0,
                                "max": round(max(lat), 6) if lat else 0.0},
            "client_seconds": round(self.seconds, 6),
        }
