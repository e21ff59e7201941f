"""Parameters: declarations, domains and shapes checked before a run, dotted names, bounds, time variation."""
from __future__ import annotations

import math

import pytest
import torch

from lpm_graph.core.params import GROUP, ParameterSet, ParamSpec, check_domain, check_shape, flatten_params
from lpm_graph.errors import ConfigError

F64 = torch.float64


# --------------------------------------------------------------------------- ParamSpec, flatten_params


def test_describe_shape():
    assert ParamSpec("a").describe_shape() == "scalar"
    grouped = ParamSpec("a", shape=(GROUP,), grouping="sector")
    assert grouped.describe_shape({"sector": 3}) == "scalar or [3] (one per sector group)"
    assert grouped.describe_shape() == "scalar or [#sector] (one per sector group)"
    assert ParamSpec("a", shape=(GROUP, 2), grouping="age", scalar_ok=False).describe_shape({"age": 9}) == \
        "[9, 2] (one per age group)"
    assert ParamSpec("a", shape=(4,), scalar_ok=False).describe_shape() == "[4]"


def test_flatten_params_nests_namespaces_into_dotted_names():
    given = {"supply": {"growth": 1.0, "decay": [0.1, 0.2]}, "ship.share": 0.5,
             "deep": {"inner": {"x": 2.0}}}
    assert flatten_params(given) == {"supply.growth": 1.0, "supply.decay": [0.1, 0.2], "ship.share": 0.5,
                                     "deep.inner.x": 2.0}
    assert flatten_params(None) == {}
    assert flatten_params({"a": 1.0}, prefix="p.") == {"p.a": 1.0}


# --------------------------------------------------------------------------- domains


@pytest.mark.parametrize("value, domain, ok", [
    (0.0, "nonnegative", True), (-0.1, "nonnegative", False), (0.0, "positive", False), (1e-300, "positive", True),
    (1.0, "probability", True), (1.01, "probability", False), ([0.1, -0.2], "probability", False),
    (float("nan"), "real", False), (float("inf"), "positive", False), ([], "real", False),
    (torch.tensor([0.5, 0.7]), "probability", True), ([[0.1, 0.2], [0.3, 2.0]], "probability", False),
])
def test_domains(value, domain, ok):
    if ok:
        check_domain("x", value, domain)
    else:
        with pytest.raises(ConfigError, match="model.params.x"):
            check_domain("x", value, domain)


def test_domain_errors_point_at_the_entry():
    with pytest.raises(ConfigError, match=r"model.params.p.q\[1\] must be a probability in \[0, 1\], got -0.2"):
        check_domain("p.q", [0.1, -0.2], "probability")
    with pytest.raises(ConfigError, match=r"unknown domain 'weird'"):
        check_domain("p.q", 1.0, "weird")
    with pytest.raises(ConfigError, match="must be a number or a list of numbers"):
        check_domain("p.q", "high", "real")


# --------------------------------------------------------------------------- shapes


def test_a_per_group_vector_for_a_scalar_only_parameter_names_the_parameter_and_process():
    with pytest.raises(ConfigError, match=r"model.params.supply.growth is shape \[3\] but process 'supply' reads "
                                          r"it as scalar \[units/day\]; give one number"):
        check_shape("supply.growth", ParamSpec("growth", unit="units/day"), [1.0, 2.0, 3.0], {}, "supply")


def test_grouped_shapes():
    spec = ParamSpec("rate", shape=(GROUP,), grouping="sector")
    check_shape("p.rate", spec, 0.5, {"sector": 3}, "p")                 # a scalar broadcasts
    check_shape("p.rate", spec, [0.1, 0.2, 0.3], {"sector": 3}, "p")
    check_shape("p.rate", spec, [0.1, 0.2], {}, "p")                     # size read from the graph later
    with pytest.raises(ConfigError, match=r"is shape \[2\] but process 'p' reads it as scalar or \[3\]"):
        check_shape("p.rate", spec, [0.1, 0.2], {"sector": 3}, "p")
    with pytest.raises(ConfigError, match=r"is shape \[1, 3\]"):
        check_shape("p.rate", spec, [[0.1, 0.2, 0.3]], {"sector": 3}, "p")
    strict = ParamSpec("rate", shape=(GROUP,), grouping="sector", scalar_ok=False)
    with pytest.raises(ConfigError, match=r"is a scalar but process 'p' reads it as \[3\]"):
        check_shape("p.rate", strict, 0.5, {"sector": 3}, "p")


def test_time_varying_shapes_have_a_leading_period_axis():
    spec = ParamSpec("rate", shape=(GROUP,), grouping="sector")
    check_shape("p.rate", spec, [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], {"sector": 3}, "p", time_varying=True)
    check_shape("p.rate", spec, [0.1, 0.4], {"sector": 3}, "p", time_varying=True)  # one scalar per period
    with pytest.raises(ConfigError, match=r"is shape \[2\]"):
        check_shape("p.rate", spec, [[0.1, 0.2], [0.4, 0.5]], {"sector": 3}, "p", time_varying=True)
    with pytest.raises(ConfigError, match="is time-varying: give a list with one value per period"):
        check_shape("p.rate", spec, 0.5, {"sector": 3}, "p", time_varying=True)


def test_a_ragged_list_is_refused_with_the_parameters_name():
    with pytest.raises(ConfigError, match=r"model.params.p.rate \(read by process 'p'\) is a ragged list"):
        check_shape("p.rate", ParamSpec("rate", shape=(2,)), [[1.0], [2.0, 3.0]], {}, "p")


# --------------------------------------------------------------------------- ParameterSet


def test_dotted_names_learnable_parameters_and_fixed_buffers():
    ps = ParameterSet({"supply.growth": 0.5, "supply.decay": [1.0, 2.0], "ship.share": 3.0},
                      learnable=["supply.growth", "supply.decay"])
    assert ps.names == ["supply.growth", "supply.decay", "ship.share"]
    assert ps.learnable == ["supply.growth", "supply.decay"]
    assert {n for n, _ in ps.named_parameters()} == {"_params.supply__growth", "_params.supply__decay"}
    assert {n for n, _ in ps.named_buffers()} == {"fixed_ship__share"}
    assert isinstance(ps.raw("supply.growth"), torch.nn.Parameter)
    assert not ps["ship.share"].requires_grad and ps["ship.share"].shape == ()
    assert ps["supply.decay"].shape == (2,)
    assert ps.values_dict() == {"supply.growth": 0.5, "supply.decay": [1.0, 2.0], "ship.share": 3.0}
    assert "supply.growth" in ps and "supply" not in ps
    assert ps.double()["ship.share"].dtype == F64 and ps["supply.growth"].dtype == F64


def test_state_dict_round_trip():
    spec = dict(learnable=["a.x", "a.y"], bounds={"a.x": (0.0, 2.0), "a.y": (1.0, None)}, time_varying={"b.z": 3})
    ps = ParameterSet({"a.x": 0.7, "a.y": [3.5, 4.0], "b.z": [1.0, 2.0]}, **spec)
    with torch.no_grad():
        ps.raw("a.x").add_(0.3)      # as an optimiser would
        ps.raw("a.y").sub_(0.1)
    other = ParameterSet({"a.x": 1.0, "a.y": [2.0, 2.0], "b.z": [0.0, 0.0]}, **spec)
    other.load_state_dict(ps.state_dict())
    for name in ps.names:
        assert torch.equal(other[name], ps[name]), name
    assert set(ps.state_dict()) == {"_params.a__x", "_params.a__y", "fixed_b__z"}


def test_unknown_names_are_refused():
    with pytest.raises(ConfigError, match=r"model.learnable names \['z'\], which are not in model.params"):
        ParameterSet({"a": 1.0}, learnable=["z"])
    with pytest.raises(ConfigError, match=r"model.bounds names \['b'\]"):
        ParameterSet({"a": 1.0}, bounds={"b": (0, 1)})
    with pytest.raises(ConfigError, match=r"model.time_varying names \['c'\]"):
        ParameterSet({"a": 1.0}, time_varying={"c": 2})
    with pytest.raises(KeyError, match="'q' is not defined"):
        ParameterSet({"a": 1.0})["q"]


def test_non_numeric_value_is_refused():
    with pytest.raises(ConfigError, match="must be a number or a list of numbers"):
        ParameterSet({"a": "high"})


# --------------------------------------------------------------------------- bounds


@pytest.mark.parametrize("bounds, value", [((0.0, 2.0), 0.7), ((-1.0, 1.0), -0.25), ((1.0, None), 3.5),
                                           ((0.0, None), 0.01)])
@pytest.mark.parametrize("learnable", [True, False])
def test_bounded_values_round_trip_through_the_transform(bounds, value, learnable):
    ps = ParameterSet({"p.a": value}, learnable=["p.a"] if learnable else [], bounds={"p.a": bounds}, dtype=F64)
    raw = float(ps.raw("p.a").detach())
    lo, hi = bounds
    # stored unconstrained: logit of the position in [lo, hi], or the inverse softplus of value - lo
    expected = math.log((value - lo) / (hi - value)) if hi is not None else math.log(math.expm1(value - lo))
    assert math.isclose(raw, expected, rel_tol=1e-12, abs_tol=1e-12)
    assert math.isclose(float(ps["p.a"].detach()), value, rel_tol=1e-12)


def test_sigmoid_bound_gradient_is_the_chain_rule():
    ps = ParameterSet({"p.a": 0.5}, learnable=["p.a"], bounds={"p.a": (0.0, 2.0)}, dtype=F64)
    ps["p.a"].backward()
    s = 0.5 / 2.0  # sigma(raw): the position in [0, 2]
    assert math.isclose(float(ps.raw("p.a").grad), 2.0 * s * (1 - s), rel_tol=1e-12)


def test_softplus_bound_gradient_is_the_chain_rule():
    ps = ParameterSet({"p.a": 3.0}, learnable=["p.a"], bounds={"p.a": (1.0, None)}, dtype=F64)
    ps["p.a"].backward()
    # theta = 1 + softplus(raw), d theta / d raw = sigmoid(raw) = 1 - e^-(theta - 1)
    assert math.isclose(float(ps.raw("p.a").grad), 1 - math.exp(-2.0), rel_tol=1e-12)


def test_bad_bounds_are_refused():
    with pytest.raises(ConfigError, match=r"model.params.a = 3.0 is outside model.bounds.a = \[0.0, 1.0\]"):
        ParameterSet({"a": 3.0}, learnable=["a"], bounds={"a": (0, 1)})
    with pytest.raises(ConfigError, match="outside model.bounds.a"):
        ParameterSet({"a": [0.5, -1.0]}, learnable=["a"], bounds={"a": (0, None)})
    with pytest.raises(ConfigError, match="hi > lo"):
        ParameterSet({"a": 1.0}, bounds={"a": (2, 1)})


# --------------------------------------------------------------------------- time variation


def test_time_varying_values_are_indexed_by_period_and_hold_the_last():
    ps = ParameterSet({"p.m": [1.0, 2.0, 3.0], "p.c": 5.0}, time_varying={"p.m": 7})
    assert [float(ps.at(t)["p.m"]) for t in (0, 6, 7, 13, 14, 20, 21, 100)] == [1, 1, 2, 2, 3, 3, 3, 3]
    assert float(ps.at(3)["p.c"]) == 5.0
    assert ps["p.m"].shape == (3,)  # as_dict keeps the time axis


def test_time_varying_per_group_entries():
    ps = ParameterSet({"p.m": [[1.0, 2.0], [3.0, 4.0]]}, time_varying={"p.m": 2})
    assert ps.at(1)["p.m"].tolist() == [1.0, 2.0]
    assert ps.at(2)["p.m"].tolist() == [3.0, 4.0]


def test_time_varying_at_reads_given_values_and_passes_gradients_to_its_period():
    ps = ParameterSet({"p.m": [1.0, 2.0, 3.0]}, learnable=["p.m"], time_varying={"p.m": 5}, dtype=F64)
    values = {"p.m": torch.tensor([10.0, 20.0, 30.0], dtype=F64)}
    assert float(ps.at(6, values)["p.m"]) == 20.0
    ps.at(12)["p.m"].backward()
    assert ps.raw("p.m").grad.tolist() == [0.0, 0.0, 1.0]


def test_time_varying_needs_a_list_and_a_positive_period():
    with pytest.raises(ConfigError, match="is time-varying: give a list"):
        ParameterSet({"m": 1.0}, time_varying={"m": 7})
    with pytest.raises(ConfigError, match="must be a period of >= 1 steps"):
        ParameterSet({"m": [1.0, 2.0]}, time_varying={"m": 0})
