"""Calibrating a neural behaviour with two epidemic parameters recovers the parameters (known truth)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

from lpm_graph.tasks.calibrate import calibrate
from lpm_graph.tasks.checkpoint import read
from tests.conftest import compose_config

ROOT = Path(__file__).resolve().parents[2]
N, STEPS = 1000, 50


def _script():
    spec = importlib.util.spec_from_file_location("make_behavior_observations",
                                                  ROOT / "scripts" / "make_behavior_observations.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    """Noise-free cases and share staying home at this size, made as the shipped file is (the script's recipe)."""
    script = _script()
    path = tmp_path_factory.mktemp("obs") / "behavior.csv"
    script.observations(N, 0, STEPS).to_csv(path, index=False)
    return path, script.TRUTH


def _cfg(path, extra=()):
    return compose_config(["+experiment=behavior_neural", f"population.num_people={N}", f"steps={STEPS}",
                           "progress=false", f"observations.path={path}", "task.plot=false",
                           "model.checkpoint=false", *extra])


def test_recovers_the_epidemic_parameters_with_the_behaviour_network(observed, tmp_path):
    path, truth = observed
    cfg = _cfg(path, ["task.iterations=60", "task.optimizer.lr=0.06", "task.checkpoint_every=0"])
    start = {k: cfg.model.params[k.split(".")[0]][k.split(".")[1]] for k in truth}
    metrics = calibrate(cfg, tmp_path)
    # stated tolerances after 60 Adam steps on noise-free data at 1,000 people: 5% on the contact intensity,
    # 10% on the initially infected fraction (the network absorbs part of the early growth)
    tolerance = {"transmission.beta_community": 0.05, "seir.initial_infected_fraction": 0.10}
    for name, true in truth.items():
        assert abs(start[name] - true) > 0.3 * true, name  # the run starts away from the truth
        assert metrics["fitted"][name] == pytest.approx(true, rel=tolerance[name]), (name, metrics["fitted"][name])
    # the network's weights were trained with them, and are in the checkpoint
    assert metrics["trained_weights"] == {"neural": 4 * 8 + 8 + 8 + 1}
    history = pd.read_csv(tmp_path / "loss.csv")["loss"]
    assert history.iloc[-1] < 1e-2 * history.iloc[0]
    payload = read(tmp_path / "checkpoint.pt")
    names = [n for n in payload["learnable"] if ".net." in n]
    assert len(names) == 4, names
    fresh = instantiate(_cfg(path).model, _convert_="all")  # the seeded start, the run's seed
    for n in names:
        assert not torch.equal(payload["learnable"][n], dict(fresh.named_parameters())[n]), n
    saved = json.loads((tmp_path / "fitted_params.json").read_text())
    assert saved["trained_weights"] == metrics["trained_weights"]
