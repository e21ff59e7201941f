"""One intra-op thread for the analysis tests.

These tests run many small unrolls; on a shared 2-core machine two OpenMP
threads spin against other processes and made them 5-15x slower (measured:
the policy test 110 s with two threads under load, 2.3 s with one).
Results do not depend on it.
"""
from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch


@contextmanager
def one_thread():
    """Run the block with one intra-op thread, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _one_thread(_deterministic_threads):
    with one_thread():
        yield
