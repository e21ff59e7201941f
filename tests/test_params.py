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


@pytest.mark.parametrize("bounds, value", [((0.0, 2.0), 0.7), ((1.0, None), 3.5), ((-1.0, 1.0), -0.25)])
def test_bounded_parameters_round_trip_and_stay_in_bounds(bounds, value):
    ps = ParameterSet({"a": value}, learnable=["a"], bounds={"a": bounds}, dtype=torch.float64)
    assert float(ps["a"].detach()) == pytest.approx(value, rel=1e-9)
    with torch.no_grad():
        ps.raw("a").fill_(1e3)
    assert float(ps["a"].detach()) <= (bounds[1] if bounds[1] is not None else float("inf"))
    with torch.no_grad():
        ps.raw("a").fill_(-1e3)
    assert float(ps["a"].detach()) >= bounds[0]


def test_bounded_gradient_is_chain_rule_of_the_transform():
    ps = ParameterSet({"a": 0.5}, learnable=["a"], bounds={"a": (0.0, 2.0)}, dtype=torch.float64)
    ps["a"].backward()
    s = 0.5 / 2.0  # sigma(raw)
    assert float(ps.raw("a").grad) == pytest.approx(2.0 * s * (1 - s))


def test_bad_bounds_are_refused():
    with pytest.raises(ConfigError, match="outside model.bounds.a"):
        ParameterSet({"a": 3.0}, learnable=["a"], bounds={"a": (0, 1)})
    with pytest.raises(ConfigError, match="hi > lo"):
        ParameterSet({"a": 1.0}, bounds={"a": (2, 1)})
    with pytest.raises(ConfigError, match="model.bounds names \\['b'\\]"):
        ParameterSet({"a": 1.0}, bounds={"b": (0, 1)})


def test_time_varying_values_are_indexed_by_period_and_hold_the_last():
    ps = ParameterSet({"m": [1.0, 2.0, 3.0], "c": 5.0}, time_varying={"m": 7})
    assert [float(ps.at(t)["m"]) for t in (0, 6, 7, 13, 14, 20, 21, 100)] == [1, 1, 2, 2, 3, 3, 3, 3]
    assert float(ps.at(3)["c"]) == 5.0
    with pytest.raises(ConfigError, match="is time-varying: give a list"):
        ParameterSet({"m": 1.0}, time_varying={"m": 7})


def test_time_varying_parameter_drives_the_model(small_population):
    from lpm_graph.dynamics import SEIR, VenueTransmission
    from lpm_graph.model import PopulationModel
    from tests.test_model import BASE_PARAMS

    # community transmission switched off from day 10: identical to the constant model before,
    # fewer infections after (common random numbers)
    const = PopulationModel([VenueTransmission()], SEIR(), BASE_PARAMS)
    varying = PopulationModel([VenueTransmission()], SEIR(), dict(BASE_PARAMS, beta_community=[0.4, 0.0]),
                              time_varying={"beta_community": 10})
    a = const(small_population, steps=40, seed=1)
    b = varying(small_population, steps=40, seed=1)
    assert torch.equal(a.series["I"][:11], b.series["I"][:11])
    assert b.series["new_infections"][11:].sum() < a.series["new_infections"][11:].sum()
