"""lpm_graph/behavior/llm/server.py: the packaged-model lookup and the loopback server's failure path (the
serving itself is the opt-in test_real_server.py, which needs llama-cpp-python and a model)."""
from __future__ import annotations

import pytest

from lpm_graph.behavior.llm.server import llama_server, packaged_gguf
from lpm_graph.errors import ConfigError


def test_a_distribution_that_is_not_installed_has_no_model():
    assert packaged_gguf("lpm-graph-no-such-distribution") is None


def test_a_distribution_without_a_gguf_file_has_no_model():
    assert packaged_gguf("pytest") is None  # installed, ships no .gguf


@pytest.mark.slow
def test_a_server_that_exits_is_an_error_naming_its_command_not_a_hang(tmp_path):
    missing = tmp_path / "no-model.gguf"  # the server exits at once (no model, or no llama_cpp installed)
    with pytest.raises(ConfigError, match=r"did not start \(exit \d+\).*no-model\.gguf"):
        with llama_server(str(missing), start_timeout=120):
            pytest.fail("a server without a model answered")
