"""The client (``lpm_graph.behavior.llm.client``) around a scripted in-process backend: what is asked, how often,
how long it waits, what it counts.  The same paths over HTTP against the openai backend: test_client_http.py."""
from __future__ import annotations

import json
import pickle
import threading

import pytest

from lpm_graph.behavior.llm import AnswerCache, BackendError, ChoiceAnswer, LLMClient, ProbabilityAnswer, Request
from lpm_graph.behavior.llm.backends import Backend
from lpm_graph.errors import ConfigError

P = ProbabilityAnswer()


class Scripted(Backend):
    """Replies from ``script`` per question text (a list consumed in order; its last entry repeats): a reply
    text, a list of scores, or a ``BackendError`` to raise.  Records every call."""

    kind = "scripted"
    supports_logprobs = True

    def __init__(self, script, max_concurrency=8):
        self.script, self.max_concurrency = {k: list(v) for k, v in script.items()}, max_concurrency
        self.asked, self._lock = [], threading.Lock()
        self.in_flight = self.max_in_flight = 0

    @property
    def model_id(self):
        return "scripted"

    def _next(self, request):
        text = request.messages[0]["content"]
        with self._lock:
            self.asked.append(text)
            queue = self.script[text]
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def complete(self, request, timeout):
        reply = self._next(request)
        if isinstance(reply, Exception):
            raise reply
        return reply

    score = complete


def q(text, contract=P):
    return Request(({"role": "user", "content": text},), contract.schema(),
                   candidates=tuple(contract.candidates()) if contract.method == "logprobs" else None)


def ok(p):
    return json.dumps({"probability": p})


def make(script, sleeps=None, cache=None, **kw):
    options = dict(retries=3, backoff=0.5, max_backoff=4.0, timeout=1.0)
    options.update(kw)
    backend = Scripted(script)
    return LLMClient(backend, cache, sleep=(sleeps.append if sleeps is not None else lambda s: None), **options), \
        backend


def test_each_distinct_question_is_asked_once_and_every_duplicate_gets_its_answer():
    c, b = make({"a": [ok(0.1)], "b": [ok(0.2)]})
    results = c.ask([q("a"), q("b"), q("a"), q("a")], P)
    assert [r.value for r in results] == [0.1, 0.2, 0.1, 0.1]
    assert sorted(b.asked) == ["a", "b"]
    assert c.counts["questions"] == 4 and c.counts["calls"] == 2
    again = c.ask([q("b")], P)
    assert again[0].source == "memory" and c.counts["cache_hits"] == {"memory": 1, "disk": 0}
    assert c.counts["questions"] == c.counts["calls"] + 1 + 2  # asked = called + hit + duplicates in one ask


def test_backoff_doubles_from_backoff_and_is_capped_whatever_retry_after_says():
    sleeps = []
    fail = BackendError("busy", kind="503")
    c, _ = make({"a": [fail, fail, fail, fail, fail, ok(0.5)]}, sleeps, retries=5, backoff=0.5, max_backoff=3.0)
    [r] = c.ask([q("a")], P)
    assert r.value == 0.5 and r.tries == 6 and sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]
    sleeps.clear()
    slow = BackendError("slow down", kind="429", retry_after=60.0)
    c, _ = make({"a": [slow, BackendError("x", kind="429", retry_after=0.0), ok(0.5)]}, sleeps, max_backoff=3.0)
    c.ask([q("a")], P)
    assert sleeps == [3.0, 0.0]  # the server's wait, capped; a Retry-After of 0 is taken, not replaced by backoff


def test_no_sleep_after_the_last_try_and_a_refused_request_is_tried_once():
    sleeps = []
    c, b = make({"a": [BackendError("down", kind="500")]}, sleeps, retries=2)
    [r] = c.ask([q("a")], P)
    assert r.value is None and r.tries == 3 and len(sleeps) == 2 and r.reason == "500: down"
    sleeps.clear()
    c, b = make({"a": [BackendError("bad request", kind="400", retryable=False)]}, sleeps, retries=5)
    [r] = c.ask([q("a")], P)
    assert r.tries == 1 and b.asked == ["a"] and sleeps == [] and c.counts["retries"] == 0
    assert c.counts["errors"] == {"400": 1} and c.counts["failures"] == 1


def test_a_failed_question_is_not_asked_again_in_this_run_nor_stored_but_a_new_run_asks(tmp_path):
    cache = AnswerCache(tmp_path / "a.sqlite")
    c, b = make({"a": ["nonsense"]}, cache=cache, retries=1)
    [r] = c.ask([q("a")], P)
    assert r.value is None and r.reason.startswith("invalid answer") and r.reply == "nonsense"
    assert c.ask([q("a")], P)[0] is r and b.asked == ["a", "a"]  # two tries, then remembered: no third call
    assert len(cache) == 0  # a failure is never stored as an answer
    fresh, b2 = make({"a": [ok(0.3)]}, cache=AnswerCache(tmp_path / "a.sqlite"))
    assert fresh.ask([q("a")], P)[0].value == 0.3 and b2.asked == ["a"]


def test_answers_stored_on_disk_are_disk_hits_and_a_stored_reply_the_contract_refuses_is_asked_again(tmp_path):
    path = tmp_path / "a.sqlite"
    first, _ = make({"a": [json.dumps({"choice": "go"})], "b": [json.dumps({"choice": "stay"})]}, cache=AnswerCache(path))
    old = ChoiceAnswer({"go": 0.0, "stay": 1.0})
    first.ask([q("a", old), q("b", old)], old)
    second, b = make({"a": [json.dumps({"choice": "go"})]}, cache=AnswerCache(path))
    results = second.ask([q("a", old), q("b", old)], old)
    assert [r.source for r in results] == ["disk", "disk"] and b.asked == []
    assert second.counts["cache_hits"] == {"memory": 0, "disk": 2} and second.counts["calls"] == 0
    # the option values are read from the reply by the contract in force: other values, no new call
    revalued = ChoiceAnswer({"go": 0.25, "stay": 1.0})
    assert second.ask([q("a", revalued)], revalued)[0].value == 0.25 and b.asked == []


def test_scores_are_cached_as_the_scores_and_valued_by_the_contract(tmp_path):
    contract = ChoiceAnswer({"yes": 1.0, "no": 0.0}, method="logprobs")
    c, b = make({"a": [[-1.0, -1.0]]}, cache=AnswerCache(tmp_path / "s.sqlite"))
    assert c.ask([q("a", contract)], contract)[0].value == pytest.approx(0.5)
    c2, b2 = make({}, cache=AnswerCache(tmp_path / "s.sqlite"))
    [r] = c2.ask([q("a", contract)], contract)
    assert r.source == "disk" and json.loads(r.reply) == [-1.0, -1.0] and r.value == pytest.approx(0.5)


def test_concurrency_is_the_smaller_of_the_clients_and_the_backends():
    class Slow(Scripted):
        def complete(self, request, timeout):
            with self._lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            threading.Event().wait(0.02)
            with self._lock:
                self.in_flight -= 1
            return ok(0.5)

    for client_limit, backend_limit, want in ((3, 8, 3), (8, 2, 2), (4, 1, 1)):
        backend = Slow({}, max_concurrency=backend_limit)
        c = LLMClient(backend, concurrency=client_limit)
        c.ask([q(f"g{i}") for i in range(12)], P)
        assert backend.max_in_flight == want, (client_limit, backend_limit)


def test_the_report_counts_and_times_the_calls_and_resets():
    c, _ = make({"a": [BackendError("t", kind="timeout"), ok(0.5)], "b": ["[1]", ok(0.5)]})
    c.ask([q("a"), q("b")], P)
    r = c.report()
    assert r["calls"] == 4 and r["retries"] == 2 and r["errors"] == {"timeout": 1, "invalid": 1}
    assert r["latency_seconds"]["calls"] == 4 and r["latency_seconds"]["max"] <= r["latency_seconds"]["total"]
    assert r["client_seconds"] >= r["latency_seconds"]["max"]
    c.reset_counts()
    assert c.report()["calls"] == 0 and c.report()["latency_seconds"] == {"calls": 0, "total": 0.0, "mean": 0.0,
                                                                          "max": 0.0}


def test_a_pickled_client_asks_with_its_cache_and_sleeps_with_time_sleep():
    import time

    from lpm_graph.behavior.llm import MockBackend

    c = LLMClient(MockBackend(), retries=1)
    [first] = c.ask([q("a")], P)
    twin = pickle.loads(pickle.dumps(c))  # a copied model (a spawned worker, a deep copy)
    assert twin.sleep is time.sleep
    [again] = twin.ask([q("a")], P)
    assert again.source == "memory" and again.value == first.value and twin.backend.calls == 1


@pytest.mark.parametrize("kw, match", [({"retries": -1}, "retries must be a whole number >= 0"),
                                       ({"retries": 1.5}, "retries must be"), ({"concurrency": 0}, "concurrency"),
                                       ({"timeout": 0}, "timeout must be"), ({"backoff": -1}, "backoff must be"),
                                       ({"max_backoff": float("nan")}, "max_backoff must be")])
def test_settings_are_checked(kw, match):
    with pytest.raises(ConfigError, match=match):
        LLMClient(Scripted({}), **kw)
