"""The default thread count (lpm_graph.threads)."""
from __future__ import annotations

import os

import torch

from lpm_graph import threads


def test_the_default_leaves_one_core_to_others(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert threads.default_threads() == 7
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert threads.default_threads() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert threads.default_threads() == 1


def test_omp_num_threads_is_respected_and_an_explicit_count_wins(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)))
    assert threads.default_threads() == 3  # not a count: the default rule (4 cores - 1)
    before = torch.get_num_threads()
    try:
        assert threads.configure(2) == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert threads.configure(None) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
