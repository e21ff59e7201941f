"""The calibration network: features to bounded parameter series."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from lpm_graph.calibration_net import CalibrationNet, load_features
from lpm_graph.data import ConfigError


def test_outputs_stay_in_bounds_and_start_at_init():
    torch.manual_seed(0)
    net = CalibrationNet(3, {"a": [0.0, 2.0], "b": [1.0, 5.0]}, hidden=8, init={"a": 0.5, "b": 4.0})
    out = net(torch.randn(10, 3))
    assert set(out) == {"a", "b"} and out["a"].shape == (10,)
    assert ((out["a"] > 0) & (out["a"] < 2)).all() and ((out["b"] > 1) & (out["b"] < 5)).all()
    assert torch.allclose(out["a"], torch.full((10,), 0.5), atol=0.15)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(100)
    wild = net(torch.randn(10, 3) * 10)
    assert ((wild["a"] >= 0) & (wild["a"] <= 2)).all()


def test_gradients_reach_the_weights():
    net = CalibrationNet(2, {"a": [0.0, 1.0]})
    net(torch.randn(4, 2))["a"].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_features_are_standardised_and_checked(tmp_path):
    path = tmp_path / "f.csv"
    pd.DataFrame({"week": [0, 1, 2], "x": [1.0, 2.0, 3.0], "y": [5.0, 5.0, 8.0]}).to_csv(path, index=False)
    f = load_features(path)
    assert f.shape == (3, 2)
    assert torch.allclose(f.mean(0), torch.zeros(2), atol=1e-6)
    with pytest.raises(ConfigError, match="missing columns \\['z'\\]"):
        load_features(path, ["z"])
    with pytest.raises(ConfigError, match="hi > lo"):
        CalibrationNet(2, {"a": [1.0, 1.0]})
