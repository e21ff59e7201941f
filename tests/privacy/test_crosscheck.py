"""Secure-aggregation sums checked against an independent implementation: MPyC's secure sum over three local
processes (extra ``privacy-crosscheck``; skipped without mpyc)."""
from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.skipif(importlib.util.find_spec("mpyc") is None,
                                                   reason="needs mpyc (extra privacy-crosscheck)")]

from lpm_graph.privacy import FixedPoint, secure_sum  # noqa: E402


def _free_base_port(count=3):
    for _ in range(20):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count >= 65535:
            continue
        try:
            socks = []
            for p in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    pytest.skip("no three consecutive free ports on 127.0.0.1")


def test_sums_match_mpyc_on_the_same_inputs(tmp_path):
    fp = FixedPoint(frac_bits=20, clip=1000.0)
    rng = np.random.default_rng(12)
    reals = [rng.uniform(-1000, 1000, size=12) for _ in range(3)]
    reals[0][:2] = [-1000.0, 1000.0]
    codes = {i: fp.encode(x) for i, x in enumerate(reals)}
    ints = [[int(v) for v in codes[i].view(np.int64)] for i in range(3)]  # the same integers go to MPyC
    (tmp_path / "in.json").write_text(json.dumps(ints))
    script = Path(__file__).with_name("mpyc_sum.py")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "in.json"), str(tmp_path / "out.json"),
                           "-M3", "-B", str(_free_base_port()), "--no-log"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    mpyc_sums = json.loads((tmp_path / "out.json").read_text())
    ours = secure_sum(codes, min_clients=3, threshold=2)
    assert [int(v) for v in ours.view(np.int64)] == mpyc_sums
    assert np.array_equal(fp.decode_sum(ours, 3), np.array(mpyc_sums) * fp.resolution)
