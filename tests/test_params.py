"""Named parameters: learnable vs fixed, domains, devices."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.data import ConfigError
from lpm_graph.params import ParameterSet, check_domain


def test_learnable_are_parameters_fixed_are_buffers():
    ps = ParameterSet({"a": 0.5, "b": [1.0, 2.0], "c": 3.0}, learnable=["a", "b"])
    assert {n for n, _ in ps.named_parameters()} == {"_params.a", "_params.b"}
    assert not ps["c"].requires_grad and ps["c"].shape == ()
    assert ps["b"].shape == (2,)
    assert set(ps.state_dict()) == {"_params.a", "_params.b", "fixed_c"}
    assert ps.values_dict() == {"a": 0.5, "b": [1.0, 2.0], "c": 3.0}
    assert ps.double()["c"].dtype == torch.float64


def test_unknown_names_are_refused():
    with pytest.raises(ConfigError, match="model.learnable names \\['z'\\]"):
        ParameterSet({"a": 1.0}, learnable=["z"])
    with pytest.raises(KeyError, match="'q' is not defined"):
        ParameterSet({"a": 1.0})["q"]


@pytest.mark.parametrize("value, domain, ok", [
    (0.0, "nonnegative", True), (-0.1, "nonnegative", False), (0.0, "positive", False),
    (1.0, "probability", True), (1.01, "probability", False), ([0.1, -0.2], "probability", False),
    (float("nan"), "real", False), (float("inf"), "positive", False), ([], "real", False),
])
def test_domains(value, domain, ok):
    if ok:
        check_domain("x", value, domain)
    else:
        with pytest.raises(ConfigError, match="model.params.x"):
            check_domain("x", value, domain)


def test_non_numeric_value_is_refused():
    with pytest.raises(ConfigError, match="must be a number or a list of numbers"):
        ParameterSet({"a": "high"})
