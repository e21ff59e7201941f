"""The calibration network: features to bounded parameter series."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from lpm_graph.calibration_net import CalibrationNet, load_features
from lpm_graph.errors import ConfigError


def test_starts_at_the_configured_values():
    # the last layer's bias is the logit of each target's position in its bounds and its weights are shrunk,
    # so the series start near the configured values; with the weights zeroed they start exactly there
    torch.manual_seed(0)
    net = CalibrationNet(3, {"a": [0.0, 2.0], "b": [1.0, 5.0]}, hidden=8, init={"a": 0.5, "b": 4.0})
    features = torch.randn(10, 3)
    out = net(features)
    assert set(out) == {"a", "b"} and out["a"].shape == (10,) and out["b"].shape == (10,)
    assert torch.allclose(out["a"], torch.full((10,), 0.5), atol=0.15)
    assert torch.allclose(out["b"], torch.full((10,), 4.0), atol=0.3)
    with torch.no_grad():
        net.mlp[-1].weight.zero_()
    out = net(features)
    assert torch.allclose(out["a"], torch.full((10,), 0.5), atol=1e-6)
    assert torch.allclose(out["b"], torch.full((10,), 4.0), atol=1e-6)


def test_each_target_saturates_at_its_own_bounds():
    # a target's output spans exactly its [lo, hi] (not another target's, not [0, 1])
    net = CalibrationNet(2, {"a": [0.0, 2.0], "b": [1.0, 5.0]})
    with torch.no_grad():
        net.mlp[-1].weight.zero_()
        net.mlp[-1].bias.copy_(torch.tensor([40.0, -40.0]))
    out = net(torch.randn(4, 2))
    assert torch.allclose(out["a"], torch.full((4,), 2.0)) and torch.allclose(out["b"], torch.full((4,), 1.0))
    with torch.no_grad():
        net.mlp[-1].bias.copy_(torch.tensor([-40.0, 40.0]))
    out = net(torch.randn(4, 2))
    assert torch.allclose(out["a"], torch.zeros(4)) and torch.allclose(out["b"], torch.full((4,), 5.0))


def test_the_series_follow_the_features_and_train_towards_a_target():
    torch.manual_seed(1)
    net = CalibrationNet(1, {"a": [0.0, 1.0]}, hidden=8, init={"a": 0.5})
    features = torch.linspace(-1, 1, 12).unsqueeze(1)
    target = 0.2 + 0.6 * (features[:, 0] > 0).float()  # low, then high
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    first = None
    for _ in range(150):
        opt.zero_grad()
        loss = ((net(features)["a"] - target) ** 2).mean()
        first = float(loss.detach()) if first is None else first
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.05 * first
    out = net(features)["a"].detach()
    assert out[:6].max() < 0.4 and out[6:].min() > 0.6  # the rows differ by their features


def test_gradients_reach_the_weights():
    net = CalibrationNet(2, {"a": [0.0, 1.0]})
    net(torch.randn(4, 2))["a"].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_features_are_standardised_and_checked(tmp_path):
    path = tmp_path / "f.csv"
    pd.DataFrame({"week": [0, 1, 2], "x": [1.0, 2.0, 3.0], "y": [5.0, 5.0, 8.0]}).to_csv(path, index=False)
    f = load_features(path)
    assert f.shape == (3, 2)  # the week column is not a feature
    assert torch.allclose(f.mean(0), torch.zeros(2), atol=1e-6)
    assert torch.allclose(f.std(0, unbiased=False), torch.ones(2), atol=1e-6)
    assert torch.allclose(f[:, 0], torch.tensor([-1.0, 0.0, 1.0]) * 1.5 ** 0.5, atol=1e-6)
    assert load_features(path, ["y"]).shape == (3, 1)
    with pytest.raises(ConfigError, match="missing columns \\['z'\\]"):
        load_features(path, ["z"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_features(tmp_path / "none.csv")
    pd.DataFrame({"x": [1.0, None]}).to_csv(tmp_path / "g.csv", index=False)
    with pytest.raises(ConfigError, match="values must be finite numbers"):
        load_features(tmp_path / "g.csv")
    # files the calibrate task cannot use are configuration errors naming the file, which the CLI reports
    pd.DataFrame({"week": [0, 1], "mobility": ["high", "low"]}).to_csv(tmp_path / "words.csv", index=False)
    with pytest.raises(ConfigError, match="words.csv.*'mobility'.*must hold numbers"):
        load_features(tmp_path / "words.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ConfigError, match="could not read .*empty.csv"):
        load_features(tmp_path / "empty.csv")
    with pytest.raises(ConfigError, match="hi > lo"):
        CalibrationNet(2, {"a": [1.0, 1.0]})
    with pytest.raises(ConfigError, match="targets is empty"):
        CalibrationNet(2, {})


def test_a_starting_value_outside_the_output_range_is_refused():
    # it was clamped into the range without a word: training started elsewhere than configured
    with pytest.raises(ConfigError, match=r"starting value of beta = 3 outside \[0, 2\] .* set model.params.<name> "
                                          r"inside the range or widen it"):
        CalibrationNet(2, {"beta": [0.0, 2.0], "gamma": [0.0, 1.0]}, init={"beta": 3.0, "gamma": 0.5})
    CalibrationNet(2, {"beta": [0.0, 2.0]}, init={"beta": 2.0})  # the bounds themselves are inside
