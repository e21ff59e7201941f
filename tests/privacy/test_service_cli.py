"""The service as a program on its own (``python -m lpm_graph.privacy.service``), keys read from files, joined
by clients over HTTP on 127.0.0.1: what a deployment on separate machines runs."""
from __future__ import annotations

import json
import selectors
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cryptography")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from lpm_graph.privacy import FixedPoint  # noqa: E402
from lpm_graph.privacy import client as client_cli  # noqa: E402
from tests.privacy.test_keys import write_keys  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _line(proc, deadline):
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    while time.monotonic() < deadline:
        if sel.select(timeout=0.1):
            line = proc.stdout.readline()
            if line:
                return json.loads(line)
        if proc.poll() is not None:
            break
    raise AssertionError(f"the service printed nothing in time: {proc.stderr.read()[-2000:] if proc.poll() else ''}")


@pytest.mark.slow
def test_a_round_with_the_service_as_a_program(tmp_path):
    n, d = 4, 8
    write_keys(tmp_path, n)
    fp = FixedPoint(16, 10.0)
    rng = np.random.default_rng(3)
    xs = {i: rng.uniform(-10, 10, size=d) for i in range(n)}
    for i, x in xs.items():
        np.save(tmp_path / f"x{i}.npy", x)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lpm_graph.privacy.service", "--server-key", str(tmp_path / "server.pem"),
         "--public-keys", str(tmp_path / "keys.json"), "--length", str(d), "--threshold", "3", "--step-timeout", "20",
         "--round-timeout", "60", "--linger", "1", "--frac-bits", "16", "--clip", "10"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        url = _line(proc, deadline)["listening"]
        assert url.startswith("http://127.0.0.1:")
        args = [["--url", url, "--id", str(i), "--key", str(tmp_path / f"client{i}.pem"), "--public-keys",
                 str(tmp_path / "keys.json"), "--input", str(tmp_path / f"x{i}.npy"), "--frac-bits", "16",
                 "--clip", "10", "--timeout", "30"] for i in range(n)]
        with ThreadPoolExecutor(n) as pool:
            codes = list(pool.map(client_cli.main, args))
        assert codes == [0] * n
        out, err = proc.communicate(timeout=30)  # the result line, then the exit after --linger
        assert proc.returncode == 0, err[-2000:]
        released = json.loads(out.strip().splitlines()[-1])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert released["survivors"] == list(range(n))
    true = sum(xs.values())
    assert np.all(np.abs(np.array(released["decoded"]) - true) <= fp.sum_error_bound(n) + 1e-12)
