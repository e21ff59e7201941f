"""Answer contracts (``lpm_graph.behavior.llm.answers``): strict parsing, scoring by log-probabilities, config.

The same contracts through a server and the client's retries: test_client_http.py."""
from __future__ import annotations

import json
import math

import pytest

from lpm_graph.behavior.llm import AnswerError, ChoiceAnswer, ProbabilityAnswer, make_contract
from lpm_graph.errors import ConfigError

STAY = {"stay home": 1.0, "go out": 0.0, "half": 0.5}


@pytest.mark.parametrize("reply, value", [('{"probability": 0.3}', 0.3), (' \n{"probability": 1}\n', 1.0),
                                          ('{"probability": 0}', 0.0), ('{"probability": 2.5e-1}', 0.25)])
def test_a_probability_is_the_number_of_the_one_property(reply, value):
    got = ProbabilityAnswer().parse(reply)
    assert got == value and type(got) is float


@pytest.mark.parametrize("reply, reason", [
    ('{"probability": -0.01}', "in [0, 1]"), ('{"probability": 1.0001}', "in [0, 1]"),
    ('{"probability": 1e999}', "in [0, 1]"),                     # parses to inf
    ('{"probability": Infinity}', "not valid JSON"), ('{"probability": -Infinity}', "not valid JSON"),
    ('{"probability": false}', "must be a number"), ('{"probability": null}', "must be a number"),
    ('{"probability": [0.3]}', "must be a number"),
    ('{"Probability": 0.3}', "exactly the property"), ("{}", "exactly the property"),
    ('"0.3"', "not an object"), ("0.3", "not an object"), ("", "not valid JSON"),
])
def test_a_probability_reply_breaking_the_contract_is_refused_with_its_reason(reply, reason):
    with pytest.raises(AnswerError) as e:
        ProbabilityAnswer().parse(reply)
    assert reason in e.value.reason and e.value.reply == reply


def test_a_reply_that_is_not_text_is_refused():
    with pytest.raises(AnswerError, match="not text but dict"):
        ProbabilityAnswer().parse({"probability": 0.3})


def test_a_choice_is_the_value_of_its_option_exactly_as_labelled():
    c = ChoiceAnswer(STAY)
    assert c.parse('{"choice": "half"}') == 0.5 and c.parse('{"choice": "go out"}') == 0.0
    for wrong in ('{"choice": "Stay home"}', '{"choice": " stay home"}', '{"choice": 1}', '{"probability": 1}'):
        with pytest.raises(AnswerError):
            c.parse(wrong)
    assert c.schema()["properties"]["choice"]["enum"] == list(STAY)
    assert c.schema()["additionalProperties"] is False and c.schema()["required"] == ["choice"]


@pytest.mark.parametrize("options, match", [
    ({"only": 1.0}, "at least two"), ({"a": 1.0, "": 0.0}, "non-empty strings"), ({"a": 1.0, "b": 1.5}, r"b must be"),
    ({"a": True, "b": 0.0}, r"a must be"), ({"a": "1", "b": 0.0}, r"a must be"), (["a", "b"], "at least two"),
])
def test_choice_options_are_checked(options, match):
    with pytest.raises(ConfigError, match=match):
        ChoiceAnswer(options)


def test_scores_give_the_expected_value_under_their_softmax():
    c = ChoiceAnswer(STAY, method="logprobs")
    lp = [-0.2, -1.7, -3.0]
    w = [math.exp(x) for x in lp]
    assert c.from_scores(lp) == pytest.approx((w[0] * 1.0 + w[2] * 0.5) / sum(w), rel=1e-12)
    # a constant added to every log-probability changes nothing (it is a softmax, not raw probabilities)
    assert c.from_scores([x - 500 for x in lp]) == pytest.approx(c.from_scores(lp), rel=1e-12)
    # an unscored candidate (None) has weight 0; so has one of log-probability -inf
    assert c.from_scores([None, -1.0, -1.0]) == pytest.approx(0.25)
    assert c.from_scores([-math.inf, -1.0, -1.0]) == pytest.approx(0.25)


@pytest.mark.parametrize("scores, match", [
    ([None, None, None], "no usable log-probability"), ([math.nan, -1.0, -1.0], "no usable log-probability"),
    ([math.inf, -1.0, -1.0], "no usable log-probability"), (["-1", -1.0, -1.0], "no usable log-probability"),
    ([-math.inf] * 3, "every candidate has log-probability -inf"), ([-1.0, -1.0], "2 scores for 3 candidates"),
])
def test_scores_without_a_usable_number_are_refused(scores, match):
    with pytest.raises(AnswerError, match=match):
        ChoiceAnswer(STAY, method="logprobs").from_scores(scores)


def test_the_probability_grid_is_scored_and_checked():
    p = ProbabilityAnswer(method="logprobs")
    assert p.candidates() == ["0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1"]
    assert p.candidate_values() == [i / 10 for i in range(11)]
    assert p.from_scores([None] * 10 + [0.0]) == 1.0
    assert ProbabilityAnswer(grid=[0.25, 0.75]).candidates() == ["0.25", "0.75"]
    for grid in ([], [0.5, 1.5], [-0.1]):
        with pytest.raises(ConfigError, match="answer.grid must be probabilities"):
            ProbabilityAnswer(grid=grid)


def test_the_instruction_tells_the_model_the_contract():
    json_way = ProbabilityAnswer().instruction()
    assert json_way.startswith("Answer with a JSON object only")
    assert json.loads(json_way.split("JSON schema: ", 1)[1]) == ProbabilityAnswer().schema()
    assert ChoiceAnswer(STAY, method="logprobs").instruction() == "Answer with one of: stay home, go out, half."


def test_the_description_holds_what_keys_the_cache():
    a, b = ChoiceAnswer(STAY).describe(), ChoiceAnswer(STAY, method="logprobs").describe()
    assert a["kind"] == "choice" and a["method"] == "json" and a["candidates"] is None and a["values"] is None
    assert b["candidates"] == list(STAY) and b["values"] == [1.0, 0.0, 0.5]
    assert a != b
    # other option labels are another question (the schema's enum); other option values are not: the reply is
    # what is cached, and its value is read from it by the contract in force
    assert ChoiceAnswer({"stay in": 1.0, "go out": 0.0, "half": 0.5}).describe() != a
    assert ChoiceAnswer({**STAY, "half": 0.4}).describe() == a


def test_contracts_from_config():
    assert isinstance(make_contract(None), ProbabilityAnswer) and make_contract(None).method == "json"
    c = make_contract({"type": "choice", "options": STAY, "method": "logprobs"})
    assert isinstance(c, ChoiceAnswer) and c.method == "logprobs" and c.options == STAY
    assert make_contract(c) is c
    assert make_contract({"type": "probability", "grid": [0, 1]}).grid == [0.0, 1.0]
    with pytest.raises(ConfigError, match="answer.type must be 'probability' or 'choice'"):
        make_contract({"type": "number"})
    with pytest.raises(ConfigError, match=r"unknown keys \['options'\] for type probability"):
        make_contract({"type": "probability", "options": STAY})
    with pytest.raises(ConfigError, match="answer.options is missing"):
        make_contract({"type": "choice"})
    with pytest.raises(ConfigError, match=r"answer.method must be one of \['json', 'logprobs'\]"):
        make_contract({"method": "regex"})
