"""Tests for validate_population (lpm_graph.data.validate)."""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch_geometric.data import HeteroData

from lpm_graph.data import PopulationGraphError, generate_population, validate_population
from lpm_graph.data.synthetic import MEMBER_OF

ET = ("person", MEMBER_OF, "school")


def tiny() -> HeteroData:
    """3 people, 2 schools, 3 membership edges with weights: a valid graph."""
    data = HeteroData()
    data["person"].num_nodes = 3
    data["person"].uid = torch.arange(3)
    data["person"].age = torch.tensor([7.0, 9.0, 40.0])
    data["school"].num_nodes = 2
    data["school"].uid = torch.arange(2)
    data["school"].size = torch.tensor([2, 1])
    data[ET].edge_index = torch.tensor([[0, 1, 2], [0, 0, 1]])
    data[ET].edge_weight = torch.tensor([1.0, 0.5, 2.0])
    return data


def raises(data, *fragments, **kwargs):
    with pytest.raises(PopulationGraphError) as info:
        validate_population(data, **kwargs)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def test_valid_graphs_pass():
    validate_population(tiny())
    validate_population(generate_population(500, seed=0))


def test_empty_edges_and_zero_node_types_pass():
    data = tiny()
    data["workplace"].num_nodes = 0
    data["workplace"].uid = torch.zeros(0, dtype=torch.long)
    data["person", MEMBER_OF, "workplace"].edge_index = torch.zeros(2, 0, dtype=torch.long)
    validate_population(data)


def test_error_is_value_error():
    assert issubclass(PopulationGraphError, ValueError)


def test_not_heterodata():
    raises({"person": 1}, "HeteroData", "dict")


def test_missing_person_type():
    data = HeteroData()
    data["agent"].num_nodes = 2
    raises(data, "'person'", "agent")


@pytest.mark.parametrize("attr", ["uid", "age"])
def test_missing_required_person_attr(attr):
    data = tiny()
    del data["person"][attr]
    raises(data, "node type 'person'", repr(attr), "reads")


def test_required_attrs_configurable():
    data = tiny()
    del data["person"].age
    validate_population(data, required_person_attrs=("uid",))
    raises(tiny(), "'income'", required_person_attrs=("uid", "income"))


def test_uid_float():
    data = tiny()
    data["person"].uid = torch.arange(3, dtype=torch.float32)
    raises(data, "node type 'person'", "'uid'", "integer tensor", "float32")


def test_uid_not_tensor():
    data = tiny()
    data["school"].uid = [0, 1]
    raises(data, "node type 'school'", "'uid'", "integer tensor", "list")


def test_uid_negative():
    data = tiny()
    data["person"].uid = torch.tensor([0, -4, 2])
    raises(data, "node type 'person'", "'uid'", "negative id -4")


def test_uid_wrong_length():
    data = tiny()
    data["school"].uid = torch.arange(5)
    raises(data, "node type 'school'", "'uid'", "5", "2 nodes")


def test_uid_two_dimensional():
    data = tiny()
    data["person"].num_nodes = 3
    data["person"].uid = torch.arange(3).view(3, 1)
    raises(data, "node type 'person'", "'uid'", "shape [3]", "(3, 1)")


@pytest.mark.parametrize("uid,dup", [([5, 1, 5], 5), ([0, 2, 0], 0)])
def test_uid_not_unique(uid, dup):
    data = tiny()
    data["person"].uid = torch.tensor(uid)
    raises(data, "node type 'person'", "'uid'", "unique", f"id {dup} occurs")


def test_attribute_first_dim_mismatch():
    data = tiny()
    data["person"].age = torch.tensor([1.0, 2.0])
    raises(data, "node type 'person'", "'age'", "first dimension 2", "3 nodes")
    data = tiny()
    data["school"].size = torch.tensor([1, 2, 3, 4])
    raises(data, "node type 'school'", "'size'", "first dimension 4", "2 nodes")


def test_bad_num_nodes():
    data = tiny()
    data["school"].num_nodes = -1
    raises(data, "node type 'school'", "num_nodes", "non-negative integer")


def test_node_count_unknown():
    data = tiny()
    data["venue"].label = "x"
    raises(data, "node type 'venue'", "num_nodes")


def test_num_nodes_inferred_from_attributes():
    data = tiny()
    del data["school"].num_nodes
    validate_population(data)
    data["school"].size = torch.tensor([2, 1, 0])
    raises(data, "node type 'school'", "'size'")


@pytest.mark.parametrize("role,edge_type", [("source", ("club", MEMBER_OF, "school")),
                                            ("destination", ("person", MEMBER_OF, "club"))])
def test_edge_type_with_missing_node_type(role, edge_type):
    data = tiny()
    data[edge_type].edge_index = torch.zeros(2, 1, dtype=torch.long)
    raises(data, f"edge type {edge_type!r}", f"{role} node type 'club'")


def test_missing_edge_index():
    data = tiny()
    del data[ET].edge_index
    del data[ET].edge_weight
    data[ET].note = "x"
    raises(data, f"edge type {ET!r}", "edge_index")


def test_float_edge_index():
    data = tiny()
    data[ET].edge_index = data[ET].edge_index.float()
    raises(data, f"edge type {ET!r}", "integer tensor of shape [2, E]", "float32")


def test_bool_edge_index():
    data = tiny()
    data[ET].edge_index = torch.ones(2, 3, dtype=torch.bool)
    raises(data, f"edge type {ET!r}", "integer tensor")


@pytest.mark.parametrize("shape", [(6,), (3, 2), (2, 3, 1)])
def test_edge_index_wrong_shape(shape):
    data = tiny()
    data[ET].edge_index = torch.zeros(shape, dtype=torch.long)
    raises(data, f"edge type {ET!r}", "shape [2, E]", str(tuple(shape)))


@pytest.mark.parametrize("row,role,node_type", [(0, "src", "person"), (1, "dst", "school")])
def test_negative_edge_index(row, role, node_type):
    data = tiny()
    data[ET].edge_index[row, 1] = -3
    raises(data, f"edge type {ET!r}", f"row {row} ({role} {node_type!r})", "negative index -3")


def test_dst_index_out_of_range_message():
    data = HeteroData()
    data["person"].num_nodes = 1000
    data["person"].uid = torch.arange(1000)
    data["person"].age = torch.zeros(1000)
    data["school"].num_nodes = 500
    data[ET].edge_index = torch.tensor([[0, 1, 2], [3, 812, 7]])
    message = raises(data)
    assert message == (
        "edge type ('person', 'member_of', 'school'): edge_index row 1 (dst 'school') has "
        "index 812 but 'school' has 500 nodes; indices must be in [0, 500)"
    )


def test_src_index_out_of_range():
    data = tiny()
    data[ET].edge_index[0, 2] = 3
    raises(data, f"edge type {ET!r}", "row 0 (src 'person') has index 3", "'person' has 3 nodes")


def test_edge_weight_integer():
    data = tiny()
    data[ET].edge_weight = torch.tensor([1, 1, 1])
    raises(data, f"edge type {ET!r}", "edge_weight", "floating-point", "int64")


def test_edge_weight_wrong_length():
    data = tiny()
    data[ET].edge_weight = torch.ones(4)
    raises(data, f"edge type {ET!r}", "edge_weight", "shape [3]", "(4,)")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_edge_weight_not_finite(bad):
    data = tiny()
    data[ET].edge_weight[1] = bad
    raises(data, f"edge type {ET!r}", "edge_weight must be finite", "edge 1")


def test_edge_weight_negative():
    data = tiny()
    data[ET].edge_weight[2] = -0.25
    raises(data, f"edge type {ET!r}", "edge_weight must be >= 0", "-0.25")


# --- property test: any single corruption of a valid graph gives PopulationGraphError -----

BASE = generate_population(80, seed=3)
EDGE_TYPES = [et for et in BASE.edge_types if BASE[et].edge_index.shape[1] > 0]
CORRUPTIONS = ["index_high", "index_negative", "weight_nan", "weight_negative",
               "weight_inf", "drop_edge_index", "drop_person_attr", "uid_duplicate"]


def node_count(data, node_type):
    return data[node_type].num_nodes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(CORRUPTIONS),
    et_pos=st.integers(0, len(EDGE_TYPES) - 1),
    row=st.integers(0, 1),
    frac=st.floats(0, 1, exclude_max=True),
    offset=st.integers(0, 10**9),
    attr=st.sampled_from(["uid", "age"]),
)
def test_corrupted_graph_raises_population_graph_error(kind, et_pos, row, frac, offset, attr):
    assert EDGE_TYPES, "base graph has no non-empty edge type"
    data = BASE.clone()
    validate_population(data)
    edge_type = EDGE_TYPES[et_pos]
    store = data[edge_type]
    num_edges = store.edge_index.shape[1]
    pos = int(frac * num_edges)
    named = repr(edge_type)
    if kind == "index_high":
        node_type = edge_type[0] if row == 0 else edge_type[2]
        store.edge_index[row, pos] = node_count(data, node_type) + offset
    elif kind == "index_negative":
        store.edge_index[row, pos] = -1 - offset
    elif kind.startswith("weight_"):
        weight = torch.rand(num_edges, dtype=torch.float64)
        weight[pos] = {"weight_nan": float("nan"), "weight_inf": float("inf"),
                       "weight_negative": -1e-6 - frac}[kind]
        store.edge_weight = weight
    elif kind == "drop_edge_index":
        store.edge_weight = torch.ones(num_edges)
        del store.edge_index
    elif kind == "drop_person_attr":
        del data["person"][attr]
        named = repr(attr)
    elif kind == "uid_duplicate":
        uid = data["person"].uid
        uid[pos % uid.numel()] = uid[(pos + 1) % uid.numel()]
        named = "'uid'"
    with pytest.raises(PopulationGraphError, match=re.escape(named)):
        validate_population(data)
