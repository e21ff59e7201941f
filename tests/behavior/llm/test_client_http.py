"""The OpenAI-compatible client against a scripted loopback server: every failure path ends as documented."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("openai")

from lpm_graph.behavior.llm import (ChoiceAnswer, LLMAnswerError, LLMClient, OpenAIBackend, ProbabilityAnswer,
                                    Request)
from lpm_graph.errors import ConfigError
from tests.behavior.llm.server import scripted_server

OK = ("answer", json.dumps({"probability": 0.25}))


def client(server, sleeps=None, **kwargs):
    options = dict(retries=3, backoff=0.01, max_backoff=1.0, timeout=2.0)
    options.update(kwargs)
    return LLMClient(OpenAIBackend("toy", base_url=server.base_url), sleep=(sleeps.append if sleeps is not None
                                                                            else (lambda s: None)), **options)


def ask(c, contract=None, n=1):
    contract = contract or ProbabilityAnswer()
    reqs = [Request(({"role": "user", "content": f"group {i}"},), contract.schema(),
                    candidates=tuple(contract.candidates()) if contract.method == "logprobs" else None,
                    label=f"g={i}") for i in range(n)]
    return c.ask(reqs, contract)


def test_a_valid_answer_is_one_call_and_the_request_says_how_to_answer(monkeypatch):
    monkeypatch.setenv("LPM_TEST_KEY", "sk-test-123")
    with scripted_server([OK]) as server:
        c = LLMClient(OpenAIBackend("toy", base_url=server.base_url, api_key_env="LPM_TEST_KEY"))
        [r] = ask(c)
        body, headers = server.requests[0]["body"], server.requests[0]["headers"]
    assert r.value == 0.25 and r.source == "backend"
    assert c.counts["calls"] == 1 and c.counts["retries"] == 0
    assert body["model"] == "toy" and body["temperature"] == 0.0 and body["seed"] == 0
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == ProbabilityAnswer().schema()
    assert headers.get("Authorization", headers.get("authorization")) == "Bearer sk-test-123"
    assert "sk-test-123" not in json.dumps(c.report()) + json.dumps(c.backend.describe())


@pytest.mark.parametrize("mode, sent", [
    ("json_object_schema", {"type": "json_object", "schema": ProbabilityAnswer().schema()}),  # llama-cpp-python
    ("json_object", {"type": "json_object"}), ("none", None)])
def test_the_response_format_asked_of_the_server(mode, sent):
    with scripted_server([OK]) as server:
        c = LLMClient(OpenAIBackend("toy", base_url=server.base_url, response_format=mode))
        [r] = ask(c)
        body = server.requests[0]["body"]
    assert r.value == 0.25 and body.get("response_format") == sent


def test_429_waits_what_retry_after_says_then_succeeds():
    sleeps = []
    with scripted_server([("status", 429, {"Retry-After": "0.2"}), OK]) as server:
        c = client(server, sleeps)
        [r] = ask(c)
    assert r.value == 0.25 and r.tries == 2
    assert sleeps == [0.2]
    assert c.counts["errors"] == {"429": 1} and c.counts["retries"] == 1 and c.counts["calls"] == 2


def test_5xx_backs_off_exponentially_then_succeeds():
    sleeps = []
    with scripted_server([("status", 500), ("status", 503), OK]) as server:
        c = client(server, sleeps)
        [r] = ask(c)
    assert r.value == 0.25
    assert sleeps == [0.01, 0.02]
    assert c.counts["errors"] == {"500": 1, "503": 1}


def test_5xx_forever_is_a_counted_failure_with_its_reason():
    with scripted_server([("status", 500)]) as server:
        c = client(server, retries=2)
        [r] = ask(c)
        assert len(server.requests) == 3
    assert r.value is None and r.source == "failed" and "500" in r.reason
    assert c.counts["failures"] == 1 and c.counts["calls"] == 3


def test_a_stall_beyond_the_timeout_is_retried():
    with scripted_server([("stall", 1.5), OK]) as server:
        c = client(server, timeout=0.3)
        [r] = ask(c)
    assert r.value == 0.25
    assert c.counts["errors"] == {"timeout": 1}
    assert c.report()["latency_seconds"]["max"] < 1.5


def test_a_malformed_response_body_is_retried():
    with scripted_server([("raw", "{not json"), ("raw", '{"choices": []}'), OK]) as server:
        c = client(server)
        [r] = ask(c)
    assert r.value == 0.25
    assert c.counts["errors"] == {"malformed": 2}


@pytest.mark.parametrize("reply", ['{"probability": 1.5}', '{"p": 0.3}', "sure, 0.3", '{"probability": "0.3"}',
                                   '{"probability": NaN}', '{"probability": 0.3, "why": "x"}', "[0.3]",
                                   '{"probability": true}'])
def test_schema_invalid_answers_are_retried_then_failed_never_a_number(reply):
    with scripted_server([("answer", reply)]) as server:
        c = client(server, retries=1)
        [r] = ask(c)
    assert r.value is None and r.reason.startswith("invalid answer") and r.reply == reply
    assert c.counts["errors"] == {"invalid": 2} and c.counts["failures"] == 1


def test_an_invalid_answer_then_a_valid_one_succeeds():
    with scripted_server([("answer", '{"probability": 2}'), OK]) as server:
        [r] = ask(client(server))
    assert r.value == 0.25 and r.tries == 2


def test_a_refused_request_is_not_retried_and_a_refused_key_stops_the_run():
    with scripted_server([("status", 400)]) as server:
        c = client(server)
        [r] = ask(c)
        assert len(server.requests) == 1
    assert r.value is None and "400" in r.reason
    with scripted_server([("status", 401)]) as server:
        with pytest.raises(ConfigError, match=r"refused the request \(401.*\$OPENAI_API_KEY"):
            ask(client(server))


def test_choices_and_logprob_scoring_through_the_server():
    with scripted_server([("answer", json.dumps({"choice": "stay home"}))]) as server:
        [r] = ask(client(server), ChoiceAnswer({"stay home": 1.0, "go out": 0.0}))
    assert r.value == 1.0
    contract = ChoiceAnswer({"yes": 1.0, "no": 0.0}, method="logprobs")
    with scripted_server([("logprobs", [("Yes", -0.5), (" no", -1.5), ("maybe", -0.1)])]) as server:
        [r] = ask(client(server), contract)
        body = server.requests[0]["body"]
    assert body["logprobs"] is True and body["max_tokens"] == 1 and body["top_logprobs"] == 20
    import math
    assert r.value == pytest.approx(math.exp(-0.5) / (math.exp(-0.5) + math.exp(-1.5)))
    with scripted_server([("logprobs", [("maybe", -0.1)])]) as server:
        [r] = ask(client(server, retries=0), contract)
    assert r.value is None and "no usable log-probability" in r.reason


def test_concurrency_is_bounded_and_every_group_is_answered_once():
    with scripted_server([OK], delay=0.05) as server:
        c = client(server, concurrency=3)
        results = ask(c, n=10)
        assert server.max_in_flight <= 3 and len(server.requests) == 10
    assert all(r.value == 0.25 for r in results)
    again = ask(c, n=10)
    assert all(r.source == "memory" for r in again) and c.counts["calls"] == 10


def test_keys_come_from_the_environment_only(monkeypatch):
    with pytest.raises(ConfigError, match="never a config value"):
        OpenAIBackend("toy", base_url="http://127.0.0.1:1/v1", api_key="sk-secret")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY holds no API key"):
        OpenAIBackend("gpt-4o-mini")


def test_the_behaviour_applies_its_failure_policy_to_a_failing_server():
    import torch

    from tests.behavior.llm.toys import town, toy_model

    with scripted_server([("answer", "I would rather not say")]) as server:
        backend = {"kind": "openai", "model": "toy", "base_url": server.base_url}
        model = toy_model(backend, retries=1, backoff=0.001, on_failure="error")
        with pytest.raises(LLMAnswerError, match=r"group age=\S+, prevalence=\S+ at step 0 after 2 tries .*invalid "
                                                 r"answer.*last reply: 'I would rather not say'"):
            model(town(40), steps=2)
        model = toy_model(backend, retries=0, on_failure="prior", prior=0.3)
        traj = model(town(40), steps=2)
        assert torch.allclose(traj.final_state["person.stays_home_stated"], torch.tensor(0.3, dtype=torch.float64))
        report = model.process("llm").report()
        assert report["fallbacks"] == report["failures"] > 0
        assert report["failed_examples"][0]["reply"] == "I would rather not say"
        model = toy_model(backend, retries=0, on_failure="rule",
                          rule={"variable": "age", "values": [0.0, 0.1, 0.2, 0.9]})
        traj = model(town(40), steps=1)
        stated = traj.final_state["person.stays_home_stated"][:, 0]
        assert set(stated.tolist()) <= {0.0, 0.1, 0.2, 0.9} and len(set(stated.tolist())) > 1
