"""Declarations of state, fields, events and reads."""
from __future__ import annotations

import pytest

from lpm_graph.core.state import EventSpec, FieldSpec, Read, StateSpec, key
from lpm_graph.errors import ConfigError


def test_keys_are_node_type_dot_name():
    assert key("firm", "stock") == "firm.stock"
    assert StateSpec("firm", "stock", "continuous").key == "firm.stock"
    assert FieldSpec("supplies", "scale", per_node=False).key == "supplies.scale"
    assert EventSpec("retailer", "arrivals").key == "retailer.arrivals"


def test_state_defaults():
    s = StateSpec("firm", "stock", "continuous")
    assert (s.shape, s.init, s.categories) == ((), 0.0, ())


@pytest.mark.parametrize("make", [
    lambda: StateSpec("firm", "stock", "money"),
    lambda: StateSpec("firm", "mode", "categorical"),
    lambda: StateSpec("firm.x", "stock", "continuous"),
    lambda: StateSpec("firm", "a.b", "continuous"),
    lambda: StateSpec("", "stock", "continuous"),
    lambda: FieldSpec("firm", "", combine="sum"),
    lambda: FieldSpec("firm", "received", combine="max"),
    lambda: EventSpec("firm", "fail.ures"),
], ids=["kind", "categories", "dotted-type", "dotted-name", "empty-type", "empty-field", "combine", "dotted-event"])
def test_bad_declarations_are_refused(make):
    with pytest.raises(ConfigError):
        make()


def test_messages_say_what_is_wrong():
    with pytest.raises(ConfigError, match=r"state firm.stock: kind must be one of \['indicator', 'categorical', "
                                          r"'continuous', 'count'\], got 'money'"):
        StateSpec("firm", "stock", "money")
    with pytest.raises(ConfigError, match="state firm.mode: a categorical state needs its categories"):
        StateSpec("firm", "mode", "categorical")
    with pytest.raises(ConfigError, match="StateSpec: node type must be a non-empty string without dots, got 'a.b'"):
        StateSpec("a.b", "x", "count")
    with pytest.raises(ConfigError, match=r"field firm.received: combine must be one of \[None, 'sum', 'product'\]"):
        FieldSpec("firm", "received", combine="max")


def test_neutral_value_of_a_combined_field():
    assert FieldSpec("firm", "a", combine="sum").neutral == 0.0
    assert FieldSpec("firm", "a", combine="product").neutral == 1.0
    assert FieldSpec("firm", "a").neutral is None


def test_read_of_a_string_or_a_read():
    r = Read.of("firm.stock")
    assert (r.key, r.optional, r.default) == ("firm.stock", False, None)
    opt = Read("supplies.scale", optional=True, default=1.0)
    assert Read.of(opt) is opt
