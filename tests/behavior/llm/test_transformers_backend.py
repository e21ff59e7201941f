"""The transformers backend on a tiny randomly initialised model and a character tokenizer built here (no
download): the contract — shape, range, determinism, caching, log-prob scoring — not the semantics."""
from __future__ import annotations

import math
import string

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from lpm_graph.behavior.llm import ChoiceAnswer, LLMClient, ProbabilityAnswer, Request, TransformersBackend
from tests.behavior.llm.toys import town, toy_model


def tiny(seed: int = 0):
    chars = list(string.printable[:95]) + ["\n"]
    vocab = {"<unk>": 0, "<eos>": 1, **{c: i + 2 for i, c in enumerate(chars)}}
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                      max_position_embeddings=1024, eos_token_id=1, bos_token_id=1, pad_token_id=1)
    return transformers.LlamaForCausalLM(config), tokenizer


@pytest.fixture(scope="module")
def backend():
    model, tokenizer = tiny()
    return TransformersBackend(model_object=model, tokenizer=tokenizer)


def request(contract, text="group a"):
    return Request(({"role": "user", "content": text},), contract.schema(), max_tokens=8,
                   candidates=tuple(contract.candidates()) if contract.method == "logprobs" else None)


def test_log_prob_scores_are_the_candidates_token_log_probabilities(backend):
    contract = ChoiceAnswer({"yes": 1.0, "no": 0.0}, method="logprobs")
    req = request(contract)
    scores = backend.score(req, timeout=10)
    assert len(scores) == 2 and all(s < 0 and math.isfinite(s) for s in scores)
    prompt = backend.tokenizer.encode(backend.prompt(req))
    ids = torch.tensor([prompt + backend.tokenizer.encode("no", add_special_tokens=False)])
    with torch.no_grad():
        logp = torch.log_softmax(backend.model_object(ids).logits[0].double(), -1)
    manual = float(logp[len(prompt) - 1, ids[0, len(prompt)]] + logp[len(prompt), ids[0, len(prompt) + 1]])
    assert scores[1] == pytest.approx(manual, abs=1e-9)
    assert backend.score(req, timeout=10) == scores  # deterministic


def test_generation_is_deterministic_and_validated_strictly(backend):
    contract = ProbabilityAnswer()
    text = backend.complete(request(contract), timeout=10)
    assert text == backend.complete(request(contract), timeout=10)
    [result] = LLMClient(backend, retries=1, sleep=lambda s: None).ask([request(contract)], contract)
    assert result.value is None or 0.0 <= result.value <= 1.0  # a random model's text is refused, not a number
    if result.value is None:
        assert result.reason.startswith("invalid answer")


def test_the_model_id_is_a_digest_of_the_weights_for_an_unnamed_model(backend):
    other = TransformersBackend(model_object=tiny(seed=1)[0], tokenizer=backend.tokenizer)
    assert backend.model_id.startswith("weights-sha256:") and backend.model_id != other.model_id
    assert TransformersBackend(model_object=tiny()[0], tokenizer=backend.tokenizer).model_id == backend.model_id


def test_the_behaviour_on_the_tiny_model_shape_range_determinism_caching(backend, tmp_path):
    answer = {"type": "probability", "method": "logprobs", "grid": [0.0, 0.5, 1.0]}
    cache = str(tmp_path / "answers.sqlite")
    runs = []
    for _ in range(2):
        model = toy_model(backend, answer=answer, cache=cache, mode="stochastic")
        traj = model(town(60), steps=4, replicates=2)
        runs.append((traj.final_state["person.stays_home_stated"], model.process("llm").report()))
    (first, r1), (second, r2) = runs
    assert first.shape == (60, 2) and bool(((first > 0) & (first < 1)).all())
    assert torch.equal(first, second)
    assert r1["calls"] > 0 and r2["calls"] == 0 and r2["cache_hits"]["disk"] == r1["calls"]
    assert r1["model"] == backend.model_id and r1["backend"]["backend"] == "transformers"
