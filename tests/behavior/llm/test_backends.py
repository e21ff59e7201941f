"""Backends (``lpm_graph.behavior.llm.backends``): the mock's determinism and counts, Retry-After, construction.

The ``openai`` backend against a server: test_client_http.py; ``transformers``: test_transformers_backend.py;
``llama_cpp`` and a real server: test_real_server.py (opt-in)."""
from __future__ import annotations

import copy
import json
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate

import pytest

from lpm_graph.behavior.llm import (BackendError, ChoiceAnswer, MockBackend, OpenAIBackend, ProbabilityAnswer,
                                    Request, make_backend)
from lpm_graph.behavior.llm.backends import Backend, _retry_after
from lpm_graph.errors import ConfigError


def req(text="group a", contract=None, seed=0, candidates=None, label=""):
    contract = contract or ProbabilityAnswer()
    return Request(({"role": "user", "content": text},), contract.schema(), seed=seed, candidates=candidates,
                   label=label)


def test_the_payload_is_the_question_not_its_label():
    a, b = req(label="age=0-20"), req(label="age=20-40")
    assert a.payload() == b.payload()
    assert set(a.payload()) == {"messages", "schema", "temperature", "seed", "max_tokens", "candidates"}
    assert req(candidates=("yes", "no")).payload()["candidates"] == ["yes", "no"]


def test_the_mock_answers_a_pure_function_of_messages_and_seed():
    mock = MockBackend()
    texts = [f"group {i}" for i in range(40)]
    first = [mock.complete(req(t), 1.0) for t in texts]
    assert [MockBackend().complete(req(t), 1.0) for t in texts] == first       # another instance, the same
    values = [json.loads(r)["probability"] for r in first]
    assert all(0.0 <= v <= 1.0 and round(v, 3) == v for v in values)
    assert len(set(values)) > 30                                               # the messages matter
    other_seed = [json.loads(mock.complete(req(t, seed=1), 1.0))["probability"] for t in texts]
    assert sum(a != b for a, b in zip(values, other_seed)) > 30                # and the seed
    assert ProbabilityAnswer().parse(first[0]) == values[0]                    # valid under the contract


def test_the_mock_shapes_its_answer_to_the_schema_and_takes_a_fixed_or_scripted_answer():
    choice = ChoiceAnswer({"stay home": 1.0, "go out": 0.0, "half": 0.5})
    got = {json.loads(MockBackend().complete(req(f"g{i}", choice), 1.0))["choice"] for i in range(60)}
    assert got == {"stay home", "go out", "half"}
    assert MockBackend(0.0).complete(req(contract=choice), 1.0) == '{"choice": "stay home"}'  # u = 0: the first
    assert MockBackend(1.0).complete(req(contract=choice), 1.0) == '{"choice": "half"}'       # u = 1: the last
    assert json.loads(MockBackend(0.375).complete(req(), 1.0)) == {"probability": 0.375}
    assert MockBackend(lambda r: r.messages[0]["content"].upper()).complete(req("x"), 1.0) == "X"


def test_the_mock_scores_each_candidate_deterministically():
    mock = MockBackend()
    r = req(candidates=tuple(ProbabilityAnswer().candidates()))
    scores = mock.score(r, 1.0)
    assert len(scores) == 11 and all(-5.0 < s <= 0.0 for s in scores) and len(set(scores)) > 5
    assert MockBackend().score(r, 1.0) == scores
    assert mock.score(req("another", candidates=r.candidates), 1.0) != scores
    assert mock.calls == 2


def test_the_mock_counts_every_call_across_threads_and_copies():
    mock = MockBackend(latency=0.001)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: mock.complete(req(f"g{i % 5}"), 1.0), range(200)))
    assert mock.calls == 200
    twin = copy.deepcopy(mock)  # a copied model (its lock is not copied but made anew)
    twin.complete(req(), 1.0)
    assert (twin.calls, mock.calls) == (201, 200)
    t = time.perf_counter()
    MockBackend(latency=0.05).complete(req(), 1.0)
    assert time.perf_counter() - t >= 0.05


def test_a_backend_without_scores_says_so_and_is_not_retried():
    class Plain(Backend):
        kind = "plain"
        model_id = "m"

        def complete(self, request, timeout):
            return "{}"

    with pytest.raises(BackendError) as e:
        Plain().score(req(candidates=("a",)), 1.0)
    assert e.value.kind == "unsupported" and e.value.retryable is False and "answer.method: json" in str(e.value)
    assert Plain().identity() == {"backend": "plain", "model": "m", "endpoint": ""}


def test_retry_after_in_milliseconds_seconds_or_an_http_date():
    assert _retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25   # the finer header first
    assert _retry_after({"retry-after": "3"}) == 3.0
    assert _retry_after({"retry-after": "-2"}) == 0.0
    assert _retry_after({"retry-after-ms": "soon", "retry-after": "1.5"}) == 1.5
    in_ten = _retry_after({"retry-after": formatdate(time.time() + 10, usegmt=True)})
    assert 8.0 <= in_ten <= 10.0
    assert _retry_after({"retry-after": formatdate(time.time() - 60, usegmt=True)}) == 0.0
    assert _retry_after({"retry-after": "tomorrow"}) is None
    assert _retry_after({}) is None and _retry_after(None) is None


def test_the_openai_backend_identity_and_checks(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-123")
    b = OpenAIBackend("gpt-x", api_key_env="MY_KEY")
    assert b.identity() == {"backend": "openai", "model": "gpt-x", "endpoint": "https://api.openai.com/v1"}
    assert b.describe()["api_key_env"] == "MY_KEY" and "sk-123" not in json.dumps(b.describe())
    local = OpenAIBackend("smollm2", base_url="http://127.0.0.1:8080/v1", api_key_env="UNSET_VARIABLE_X")
    assert local.endpoint == "http://127.0.0.1:8080/v1"   # a local server needs no key
    with pytest.raises(ConfigError, match="backend.model must name the served model"):
        OpenAIBackend("", base_url="http://127.0.0.1:1/v1")
    with pytest.raises(ConfigError, match=r"backend.response_format must be one of \['json_schema', "
                                          r"'json_object_schema', 'json_object', 'none'\]"):
        OpenAIBackend("m", base_url="http://127.0.0.1:1/v1", response_format="grammar")


def test_backends_from_config():
    assert isinstance(make_backend(None), MockBackend)
    mock = MockBackend()
    assert make_backend(mock) is mock
    b = make_backend({"kind": "openai", "model": "m", "base_url": "http://127.0.0.1:1/v1", "api_key_env": None})
    assert isinstance(b, OpenAIBackend) and b.api_key_env == "OPENAI_API_KEY"  # null: the default
    assert make_backend({"kind": "mock", "latency": 0.5, "model": "mock-2"}).model_id == "mock-2"
    with pytest.raises(ConfigError, match=r"backend.kind must be one of \['llama_cpp', 'mock', 'openai', "
                                          r"'transformers'\], got 'vllm'"):
        make_backend({"kind": "vllm"})
    with pytest.raises(ConfigError, match=r"backend \(kind mock\): .*unexpected keyword argument 'base_url'"):
        make_backend({"kind": "mock", "base_url": "http://127.0.0.1:1/v1"})
