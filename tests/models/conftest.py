"""Fixtures the models' task tests share: the script that made a model's shipped observations, one intra-op thread."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def make_observations(request):
    """``make`` of ``scripts/make_<model>_observations.py`` (the script that made the shipped data), for the model
    whose tests ask (their folder, ``tests/models/<model>/``)."""
    model = Path(request.module.__file__).parent.name
    name = f"make_{model}_observations"
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make


@pytest.fixture(autouse=True)
def _one_thread(_deterministic_threads):
    """One intra-op thread for every model test, the previous count restored after it: many tiny unrolls
    (tests/analysis/conftest.py says why)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
