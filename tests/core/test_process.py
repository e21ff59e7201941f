"""Processes: names, namespaced parameters and streams, default initial state, the step context."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.core import CounterRNG, Graph, Output, Process, Requirements, Sampler, StateSpec, StepContext
from lpm_graph.errors import ConfigError
from tests.core.toys import Stockroom, Supply, supply_graph


class Levels(Process):
    """Owns a vector state and a scalar state with fixed initial values."""

    default_name = "levels"

    def state_specs(self):
        return [StateSpec("firm", "prices", "continuous", shape=(3,), init=2.5),
                StateSpec("retailer", "open", "indicator", init=1.0)]

    def forward(self, ctx, state, fields):
        return Output()


class Unset(Process):
    default_name = "unset"

    def state_specs(self):
        return [StateSpec("firm", "level", "continuous", init=None)]

    def forward(self, ctx, state, fields):
        return Output()


def context(replicates=2, seed=5, dtype=torch.float64, params=None, t=0):
    graph = Graph(supply_graph(), Requirements(attributes={"firm": set(), "retailer": set()}))
    return StepContext(t=t, graph=graph, params=params or {}, sampler=Sampler(), dt=1.0, replicates=replicates,
                       dtype=dtype, seed=seed)


def test_names_default_to_the_class_and_must_be_identifiers():
    assert Supply().name == "supply" and not Supply().explicit_name
    assert Supply("mill_supply").name == "mill_supply" and Supply("mill_supply").explicit_name
    for bad in ("mill-supply", "a.b", "", 3):
        with pytest.raises(ConfigError, match="name must be an identifier"):
            Supply(bad)
    assert "name='supply', role='update'" in repr(Supply())


def test_a_process_must_implement_forward():
    class Nothing(Process):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Nothing()


def test_parameters_are_namespaced_by_the_name():
    p = Supply("mill")
    assert p.param("growth") == "mill.growth"
    ctx = context(params={"mill.growth": torch.tensor(3.0), "supply.growth": torch.tensor(1.0)})
    assert float(p.value(ctx, "growth")) == 3.0


def test_streams_keep_the_version_0_1_names_under_the_default_name():
    assert Supply().stream("shock") == "shock"
    assert Supply("mill").stream("shock") == "mill.shock"
    assert Supply().streams() == [("firm", "shock")] and Supply("mill").streams() == [("firm", "mill.shock")]
    ctx = context()
    a = ctx.rng("firm").uniform(0, Supply().stream("shock"), torch.float64)
    b = ctx.rng("firm").uniform(0, Supply("mill").stream("shock"), torch.float64)
    assert bool((a != b).all())


def test_default_init_fills_every_state_with_its_init_value():
    ctx = context(replicates=3)
    out = Levels().init(ctx)
    assert set(out.state) == {"firm.prices", "retailer.open"} and out.events == {}
    assert out.state["firm.prices"].shape == (6, 3, 3) and out.state["retailer.open"].shape == (3, 3)
    assert out.state["firm.prices"].dtype == torch.float64
    assert bool((out.state["firm.prices"] == 2.5).all()) and bool((out.state["retailer.open"] == 1.0).all())
    assert Stockroom().init(ctx).state["retailer.inventory"].abs().sum() == 0


def test_init_none_needs_an_init_override():
    with pytest.raises(ConfigError, match=r"Unset declares firm.level with init=None .* override init\(\)"):
        Unset().init(context())


def test_step_context_generators_are_per_node_type_and_shared_over_steps():
    ctx = context(replicates=2, seed=9)
    g = ctx.rng("firm")
    assert ctx.rng("firm") is g and g.node_type == "firm" and g.replicates == 2 and g.seed == 9
    expected = CounterRNG(ctx.graph.uid["firm"], 9, 2, "firm").uniform(3, "x", torch.float64)
    assert torch.equal(g.uniform(3, "x", torch.float64), expected)
    later = ctx.at(7, {"a": torch.tensor(1.0)})
    assert later.t == 7 and later.params == {"a": torch.tensor(1.0)}
    assert later.rng("firm") is g and later.sampler is ctx.sampler and later.graph is ctx.graph
    assert ctx.rng("retailer") is not g and later.rng("retailer") is ctx.rng("retailer")


def test_step_context_zeros_and_mode():
    ctx = context(replicates=4, dtype=torch.float32)
    z = ctx.zeros("retailer", 2)
    assert z.shape == (3, 4, 2) and z.dtype == torch.float32 and z.abs().sum() == 0
    assert ctx.stochastic
    expected = StepContext(0, ctx.graph, {}, Sampler("expected"), 1.0, 1, torch.float32)
    assert not expected.stochastic
