"""Opt-in: a real OpenAI-compatible server on loopback with a small model, and a short epidemic asking it.

Skipped by default.  To run it (docs/behavior_llm.md, "A real model"):

    pip install 'lpm-graph[llm]' 'llama-cpp-python[server]>=0.2.80'
    export LPM_GRAPH_LLM_SERVER_TEST=1
    export LPM_GRAPH_LLM_GGUF=/path/to/SmolLM2-135M-Instruct-Q8_0.gguf   # any small instruct GGUF
    pytest -m llm_server tests/behavior/llm/test_real_server.py

The test starts ``python -m llama_cpp.server`` on 127.0.0.1 (a free port),
waits at most 120 s for it, runs 14 days of the toy epidemic with weekly
decisions through the ``openai`` backend, checks the contract (every
decision in ``[0, 1]``, every failure counted and handled by the prior) and
that a rerun makes no call, then stops the server.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = [pytest.mark.llm_server,
              pytest.mark.skipif(os.environ.get("LPM_GRAPH_LLM_SERVER_TEST") != "1",
                                 reason="opt-in: set LPM_GRAPH_LLM_SERVER_TEST=1 and LPM_GRAPH_LLM_GGUF")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("openai")
    pytest.importorskip("llama_cpp.server")
    gguf = os.environ.get("LPM_GRAPH_LLM_GGUF")
    if not gguf or not os.path.isfile(gguf):
        pytest.skip("LPM_GRAPH_LLM_GGUF must name a GGUF model file")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "2048"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/models", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the llama.cpp server did not start (exit {proc.poll()})")
                time.sleep(1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def test_a_short_epidemic_asks_a_real_model(server, tmp_path):
    import torch

    from tests.behavior.llm.toys import town, toy_model

    backend = {"kind": "openai", "model": "local", "base_url": server}
    runs = []
    for _ in range(2):
        model = toy_model(backend, every=7, cache=str(tmp_path / "answers.sqlite"), timeout=60.0, retries=2,
                          backoff=0.5, concurrency=2, max_tokens=24, on_failure="prior", prior=0.1)
        traj = model(town(500), steps=14)
        runs.append((traj, model.process("llm").report()))
    (traj, first), (_, second) = runs
    stated = traj.final_state["person.stays_home_stated"]
    assert bool(((stated >= 0) & (stated <= 1)).all()) and torch.isfinite(traj.series["infected"]).all()
    assert first["decisions"] == 2 and first["calls"] > 0
    assert first["fallbacks"] == first["failures"]
    assert second["calls"] == first["failures"] * 3  # only failed questions are asked again in a new run
