"""One intra-op thread for the economy tests: many tiny unrolls (tests/analysis/conftest.py says why)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread(_deterministic_threads):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
