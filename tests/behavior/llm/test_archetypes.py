"""LLMArchetypes with the mock backend: grouping, broadcast, calls independent of size, caching, gradients."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lpm_graph.behavior.llm import LLMArchetypes, MockBackend
from lpm_graph.core import Model
from lpm_graph.errors import ConfigError
from tests.behavior.llm.toys import PROMPT, VARIABLES, town, toy_model

ROOT = Path(__file__).resolve().parents[3]
CATEGORICAL = {"variables": {"age": {"grouping": "age"}, "job": {"grouping": "job"}},
               "prompt": {"user": "A person aged {age} working in {job}: stay home?"}}


def test_decisions_are_group_answers_broadcast_in_range_and_shape():
    backend = MockBackend()
    model = toy_model(backend, mode="stochastic")
    data = town(300)
    traj = model(data, steps=7, replicates=3, seed=1)
    stated = traj.final_state["person.stays_home_stated"]
    assert stated.shape == (300, 3) and bool(((stated >= 0) & (stated <= 1)).all())
    age = torch.bucketize(data["person"].age, torch.tensor([20.0, 40.0, 60.0]), right=True)
    for r in range(3):  # one value per (age group, prevalence bin) present: the gather of one answer per group
        for g in range(4):
            assert len(set(stated[age == g, r].tolist())) <= 4
    report = model.process("llm").report()
    assert report["decisions"] == 3 and 0 < report["groups"]["max"] <= 16
    assert report["questions"] >= report["calls"] == backend.calls > 0


def test_the_prompt_sees_only_group_labels():
    seen = []

    def answer(request):
        seen.append(request.messages)
        return json.dumps({"probability": 0.5})

    model = toy_model(MockBackend(answer), every=1)
    model(town(50), steps=2)
    text = json.dumps(seen)
    assert "aged 0-20" in text or "aged 20-40" in text
    assert "of the neighbours are ill" in text and '\\"probability\\"' in text  # the contract's instruction
    for message in seen:
        user = message[-1]["content"].split("\n\n")[0]
        assert user.startswith("A person aged ") and set(user.split()) & {"0-20", "20-40", "40-60", "60+"}


def _calls(num_people: int) -> tuple[int, dict]:
    backend = MockBackend()
    model = toy_model(backend, **CATEGORICAL)
    model(town(num_people, seed=3), steps=9)
    return backend.calls, model.process("llm").report()


def test_calls_are_independent_of_population_size():
    small, report_small = _calls(300)
    large, report_large = _calls(30000)
    assert small == large == 4 * 3  # 4 age groups x 3 jobs, asked once; later decisions hit the run's cache
    assert report_small["questions"] == report_large["questions"] == 3 * 12
    assert report_large["cache_hits"]["memory"] == 2 * 12


def test_observed_variables_are_binned_per_node_and_reduced():
    model = toy_model(MockBackend(), every=1, variables={
        "age": {"grouping": "age"},
        "prevalence": {"source": "person.I", "reduce": "mean", "bins": [0, 0.2, 0.5], "labels": ["low", "mid",
                                                                                                  "high"]}},
        prompt={"user": "aged {age}, prevalence {prevalence}"})
    model(town(100), steps=3)
    assert model.process("llm").report()["groups"]["max"] == 4  # one prevalence bin a step: 4 age groups


@pytest.mark.slow
def test_the_cache_on_disk_survives_a_process_restart(tmp_path):
    cache = tmp_path / "answers.sqlite"
    backend = MockBackend()
    model = toy_model(backend, cache=str(cache))
    traj = model(town(120), steps=7)
    model.process("llm").client.cache.close()
    first = {"calls": backend.calls, "final": traj.final_state["person.stays_home_stated"].sum().item()}
    script = (
        "import json\n"
        "from lpm_graph.behavior.llm import MockBackend\n"
        "from tests.behavior.llm.toys import town, toy_model\n"
        "backend = MockBackend()\n"
        f"model = toy_model(backend, cache={str(cache)!r})\n"
        "traj = model(town(120), steps=7)\n"
        "r = model.process('llm').report()\n"
        "print(json.dumps({'calls': backend.calls, 'disk': r['cache_hits']['disk'],\n"
        "                  'final': traj.final_state['person.stays_home_stated'].sum().item()}))\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    second = json.loads(out.stdout.strip().splitlines()[-1])
    assert first["calls"] > 0
    assert second["calls"] == 0 and second["disk"] == first["calls"]
    assert second["final"] == first["final"]
    import sqlite3
    with sqlite3.connect(cache) as conn:
        assert conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == first["calls"]


def test_a_rerun_and_a_calibration_loop_reuse_answers(tmp_path):
    backend = MockBackend()
    model = toy_model(backend, cache=str(tmp_path / "a.sqlite"), mode="stochastic")
    data = town(200)
    model(data, steps=7, seed=0)
    calls = backend.calls
    for seed in range(1, 4):  # calibration iterations run other seeds: the questions are the same
        model(data, steps=7, seed=seed)
    assert backend.calls <= calls + 4  # only groups never seen before (prevalence bins the seeds reach)
    again = toy_model(MockBackend(), cache=str(tmp_path / "a.sqlite"), mode="stochastic")
    again(data, steps=7, seed=0)
    assert again.process("llm").backend.calls == 0


@pytest.mark.parametrize("checkpoint", [False, True])
def test_gradients_reach_the_calibration_not_the_answers_and_a_recomputed_step_asks_nothing(checkpoint):
    backend = MockBackend()
    model = toy_model(backend, checkpoint=checkpoint, learnable=["llm.slope", "llm.offset"], every=2)
    traj = model(town(150), steps=6)
    calls, questions = backend.calls, model.process("llm").report()["questions"]
    assert traj.final_state["person.stays_home_stated"].requires_grad is False
    traj.series["infected"][-1].sum().backward()
    assert backend.calls == calls  # the backward's recomputation (checkpoint) hits the run's cache
    report = model.process("llm").report()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads.values()), grads
    assert report["questions"] == (2 * questions if checkpoint else questions)


def test_checkpointed_and_plain_gradients_agree():
    grads = []
    for checkpoint in (False, True):
        model = toy_model(MockBackend(), checkpoint=checkpoint, learnable=["llm.offset"], offset=0.3)
        model(town(120), steps=5).series["infected"][-1].sum().backward()
        grads.append(next(p.grad for p in model.parameters()))
    assert torch.allclose(grads[0], grads[1])


def test_the_logistic_calibration_maps_the_stated_probability():
    data = town(80)
    plain = toy_model(MockBackend(0.2))
    shifted = toy_model(MockBackend(0.2), offset=1.0, slope=2.0)
    for m in (plain, shifted):
        m(data, steps=1)
    graph = plain.prepare(data)
    from lpm_graph.core import StepContext

    for m, want in ((plain, 0.2), (shifted, torch.sigmoid(2 * torch.logit(torch.tensor(0.2)) + 1).item())):
        p = m.process("llm")
        ctx = StepContext(1, graph, m.params.at(1), m.sampler, 1.0, 1, torch.float64)
        stated = torch.full((80, 1), 0.2, dtype=torch.float64)
        out = p(ctx, {p.stated_key: stated}, {})
        assert torch.allclose(out.fields["person.stays_home"], torch.tensor(want, dtype=torch.float64))


def test_logprob_scoring_and_choices_with_the_mock():
    model = toy_model(MockBackend(), answer={"type": "choice", "options": {"stay home": 1.0, "go out": 0.0},
                                             "method": "logprobs"})
    traj = model(town(60), steps=2)
    stated = traj.final_state["person.stays_home_stated"]
    assert bool(((stated > 0) & (stated < 1)).all())  # an expected value of scored options


def test_the_template_hash_names_what_the_answers_mean():
    def sha(**kw):
        return LLMArchetypes(**{"variables": VARIABLES, "prompt": PROMPT, "backend": MockBackend(), **kw}).template_sha256

    choice = {"type": "choice", "options": {"stay home": 1.0, "go out": 0.0}}
    assert sha(answer=choice) == sha(answer=dict(choice))
    # the same question, but "stay home" now means staying home with probability 0.8
    assert sha(answer=choice) != sha(answer={**choice, "options": {"stay home": 0.8, "go out": 0.0}})
    assert sha(answer=choice) != sha(prompt={**PROMPT, "user": PROMPT["user"] + " Answer briefly."})


def test_configuration_mistakes_are_named():
    with pytest.raises(ConfigError, match=r"placeholder \{town\}, which is not a variable"):
        LLMArchetypes(VARIABLES, {"user": "{age} {prevalence} {town}"})
    with pytest.raises(ConfigError, match=r"\['prevalence'\] do not appear in the prompt"):
        LLMArchetypes(VARIABLES, {"user": "{age}"})
    with pytest.raises(ConfigError, match="on_failure must be one of"):
        LLMArchetypes(VARIABLES, PROMPT, on_failure="zero")
    with pytest.raises(ConfigError, match="needs bins"):
        LLMArchetypes({"x": {"source": "person.I"}}, {"user": "{x}"})
    with pytest.raises(ConfigError, match="answer.options is missing"):
        LLMArchetypes(VARIABLES, PROMPT, answer={"type": "choice"})
    with pytest.raises(ConfigError, match="reads person.local_I, which no process of the model writes or owns: this behaviour does not fit"):
        Model(processes={}, behavior={"llm": LLMArchetypes(VARIABLES, PROMPT)})
    with pytest.raises(ConfigError, match="writes person.stays_home, which no process of the model reads: this "
                                          "behaviour does not fit"):
        Model(processes={}, behavior={"llm": LLMArchetypes(**CATEGORICAL)}, groupings={"age": {"bins": [0, 50]},
                                                                                     "job": {}})
    model = toy_model(MockBackend(), max_groups=3)
    with pytest.raises(ConfigError, match="exceed max_groups=3"):
        model(town(100), steps=1)
