"""The graph laid out for a model: declared layouts only, any edge type, stacks, groupings, time-varying edges."""
from __future__ import annotations

import json

import pytest
import torch
from torch_geometric.data import HeteroData

from lpm_graph.core import Graph, Grouping, Requirements
from lpm_graph.core.graph import bin_index, bin_labels
from lpm_graph.errors import ConfigError, PopulationGraphError
from lpm_graph.nn import spmm
from tests.core.toys import SECTORS, SUPPLIES, supply_graph
from tests.helpers import timed_chain

F64 = torch.float64
NEAR = ("school", "near", "school")
HOME = ("person", "member_of", "home")
SCHOOL = ("person", "member_of", "school")
CONTACT = ("person", "contact", "person")


def town() -> HeteroData:
    """4 people, 2 homes, 3 schools (school 2 empty), school -> school proximity, person contacts."""
    d = HeteroData()
    d["person"].num_nodes = 4
    d["person"].uid = torch.tensor([40, 10, 30, 20])
    d["person"].age = torch.tensor([5.0, 9.99, 10.0, 81.0])
    d["home"].num_nodes = 2
    d["home"].uid = torch.arange(2)
    d["school"].num_nodes = 3
    d["school"].uid = torch.arange(3)
    d[SCHOOL].edge_index = torch.tensor([[0, 1, 2, 2], [0, 0, 1, 1]])      # person 2 listed twice
    d[HOME].edge_index = torch.tensor([[0, 1, 2, 3], [0, 0, 1, 1]])
    d[HOME].edge_weight = torch.tensor([1.0, 2.0, 3.0, 0.5])
    d[NEAR].edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
    d[NEAR].edge_weight = torch.tensor([0.5, 0.25, 2.0])
    d[CONTACT].edge_index = torch.tensor([[0, 1], [1, 0]])
    return d


def dense(adj) -> torch.Tensor:
    return adj.csr.to_dense().double()


# --------------------------------------------------------------------------- layouts


def test_only_the_declared_layouts_are_built():
    g = Graph(town(), Requirements(edge_types={NEAR}))
    assert len(g.layouts()) == 1 and g.num_edges() == 3
    assert set(g.num_nodes) == {"school"}           # only the node types the model reads
    with pytest.raises(PopulationGraphError, match=r"edge type \('person', 'member_of', 'home'\) was not declared"):
        g.layout(HOME)
    assert Graph(town(), Requirements()).layouts() == []


def test_any_edge_type_is_a_dst_by_src_layout():
    d = supply_graph(num_firms=4, num_retailers=2)
    d[SUPPLIES].edge_index = torch.tensor([[0, 1, 2, 3, 1], [0, 0, 1, 1, 0]])
    d[SUPPLIES].edge_weight = torch.tensor([1.0, 2.0, 0.5, 1.0, 4.0])
    g = Graph(d, Requirements(edge_types={SUPPLIES}))
    adj = g.layout(SUPPLIES)
    assert adj.shape == (2, 4)
    assert dense(adj).tolist() == [[1.0, 6.0, 0.0, 0.0], [0.0, 0.0, 0.5, 1.0]]  # the two 1 -> 0 edges summed
    # venue -> venue: a square layout of one node type
    near = Graph(town(), Requirements(edge_types={NEAR})).layout(NEAR)
    assert dense(near).tolist() == [[0.0, 0.0, 2.0], [0.5, 0.0, 0.0], [0.0, 0.25, 0.0]]


def test_unweighted_edges_weigh_one_and_the_dtype_is_the_graphs():
    g32 = Graph(town(), Requirements(edge_types={SCHOOL}))
    assert g32.dtype == torch.float32 and g32.layout(SCHOOL).csr.dtype == torch.float32
    g64 = Graph(town(), Requirements(edge_types={SCHOOL, NEAR}, stacks={frozenset({HOME, SCHOOL})}), dtype=F64)
    assert all(a.csr.dtype == F64 and a.csr_t.dtype == F64 for a in g64.layouts())
    assert g64.stack([HOME, SCHOOL]).inverse_weight.dtype == F64
    assert dense(g64.layout(SCHOOL)).tolist() == [[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]]


# --------------------------------------------------------------------------- stacks


@pytest.mark.parametrize("declared", [[HOME, SCHOOL], [SCHOOL, HOME]], ids=["home-first", "school-first"])
def test_a_stack_follows_the_graphs_edge_type_order(declared):
    d = town()
    assert d.edge_types.index(SCHOOL) < d.edge_types.index(HOME)
    g = Graph(d, Requirements(stacks={frozenset(declared)}))
    s = g.stack(declared)
    assert s.edge_types == [SCHOOL, HOME]
    assert s.offsets == {SCHOOL: 0, HOME: 3}
    assert s.type_index.tolist() == [0, 0, 0, 1, 1]
    assert s.num_rows == 5 and s.adjacency.shape == (5, 4)
    # rows 0-2: schools (person 2 twice in school 1), rows 3-4: homes with their weights
    assert dense(s.adjacency).tolist() == [[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0],
                                           [1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.5]]
    # 1 / total incoming weight, 0 for the empty school
    assert torch.equal(s.inverse_weight, torch.tensor([0.5, 0.5, 0.0, 1.0 / 3.0, 1.0 / 3.5]))  # float32
    assert g.stack(reversed(declared)) is s
    # one sparse product per direction: pressure in every venue, then what each person receives
    x = torch.tensor([1.0, 10.0, 100.0, 1000.0])
    assert spmm(s.adjacency, x).tolist() == [11.0, 200.0, 0.0, 21.0, 800.0]


def test_stacks_need_one_source_type_and_static_edges():
    with pytest.raises(ConfigError, match=r"a stack of edge types needs one source node type, "
                                          r"got \['person', 'school'\]"):
        Graph(town(), Requirements(stacks={frozenset({HOME, NEAR})}))
    d = town()
    d[HOME].time = torch.tensor([0, 0, 1, 1])
    with pytest.raises(PopulationGraphError, match=r"time-varying edges cannot be stacked"):
        Graph(d, Requirements(stacks={frozenset({HOME, SCHOOL})}))
    g = Graph(town(), Requirements(stacks={frozenset({HOME, SCHOOL})}))
    with pytest.raises(PopulationGraphError, match=r"the stack \[\('person', 'member_of', 'home'\)\] was not declared"):
        g.stack([HOME])


# --------------------------------------------------------------------------- what must be there


@pytest.mark.parametrize("req, match", [
    (Requirements(attributes={"firm": {"sector"}}), r"the graph has no 'firm' node type"),
    (Requirements(attributes={"person": {"income"}}), r"node type 'person' is missing attribute\(s\) \['income'\]"),
    (Requirements(edge_types={("person", "works_at", "firm")}),
     r"edge type \('person', 'works_at', 'firm'\) is not in the graph, but the model reads it"),
    (Requirements(stacks={frozenset({("person", "member_of", "office"), HOME})}),
     r"edge type \('person', 'member_of', 'office'\) is not in the graph"),
    (Requirements(groupings={"kind": Grouping("kind", "school")}),
     r"node type 'school' is missing attribute\(s\) \['kind'\]"),
])
def test_a_missing_declared_part_is_named(req, match):
    with pytest.raises(PopulationGraphError, match=match):
        Graph(town(), req)


def test_every_node_type_read_needs_its_uid():
    d = town()
    del d["school"].uid
    with pytest.raises(PopulationGraphError, match=r"node type 'school' is missing attribute\(s\) \['uid'\]"):
        Graph(d, Requirements(edge_types={SCHOOL}))
    d = town()
    d["person"].uid = torch.tensor([1, 2, 2, 3])
    with pytest.raises(PopulationGraphError, match="must be unique, but id 2 occurs more than once"):
        Graph(d, Requirements(attributes={"person": {"age"}}))


def test_attributes_are_read_only_when_declared():
    g = Graph(town(), Requirements(attributes={"person": {"age"}}))
    assert g.attribute("person", "age").tolist() == town()["person"].age.tolist()
    assert g.uid["person"].tolist() == [40, 10, 30, 20] and g.uid["person"].dtype == torch.int64
    with pytest.raises(PopulationGraphError, match=r"node attribute person.uid was not declared"):
        g.attribute("person", "uid")


# --------------------------------------------------------------------------- groupings


def test_grouping_by_bins_of_a_numeric_attribute():
    g = Graph(town(), Requirements(groupings={"age": Grouping("age", bins=[0, 10, 80])}))
    assert g.group_index("age").tolist() == [0, 0, 1, 2]   # [0, 10), [10, 80), 80+
    assert g.group_labels("age") == ["0-10", "10-80", "80+"]
    assert g.group_sizes() == {"age": 3}
    assert g.attribute("person", "age").shape == (4,)       # the grouping's attribute is readable


def test_bins_of_an_integer_attribute_use_the_edges_as_given():
    d = supply_graph(num_firms=4)
    d["firm"].employees = torch.tensor([1, 2, 3, 40])
    g = Graph(d, Requirements(groupings={"size": Grouping("size", "firm", "employees", bins=[0, 2.5, 10])}))
    assert g.group_index("size").tolist() == [0, 0, 1, 2]   # 2 < 2.5
    assert g.group_labels("size") == ["0-2.5", "2.5-10", "10+"]


def test_bin_helpers():
    assert bin_labels([0, 10.5, 20]) == ["0-10.5", "10.5-20", "20+"]
    ages = torch.tensor([0.0, 9.0, 10.0, 79.0, 80.0, 104.0, -1.0])
    assert bin_index(ages, [0, 10, 20, 30, 40, 50, 60, 70, 80]).tolist() == [0, 0, 1, 7, 8, 8, 0]


def test_grouping_by_a_categorical_attribute_reads_its_labels():
    d = supply_graph(num_firms=6)
    g = Graph(d, Requirements(groupings={"sector": Grouping("sector", "firm")}))
    assert torch.equal(g.group_index("sector"), d["firm"].sector)
    assert g.group_labels("sector") == SECTORS
    # given labels win; without either, the codes are the labels
    g = Graph(d, Requirements(groupings={"s": Grouping("s", "firm", "sector", labels=["a", "b", "c", "d"])}))
    assert g.group_labels("s") == ["a", "b", "c", "d"]
    del d["firm"].sector_categories
    assert Graph(d, Requirements(groupings={"sector": Grouping("sector", "firm")})).group_labels("sector") == \
        ["0", "1", "2"]


def test_group_adjacency_sums_nodes_into_their_groups():
    d = supply_graph(num_firms=6)
    g = Graph(d, Requirements(groupings={"sector": Grouping("sector", "firm")}), dtype=F64)
    adj = g.group_adjacency("sector")
    assert adj.shape == (3, 6) and adj.csr.dtype == F64
    x = torch.arange(1.0, 7.0, dtype=F64)
    expected = torch.zeros(3, dtype=F64).index_add_(0, d["firm"].sector, x)
    assert torch.equal(spmm(adj, x), expected)
    assert g.group_adjacency("sector") is adj  # built once


@pytest.mark.parametrize("codes, match", [
    (torch.tensor([0, 1, 3, 1]), r"code 3 has no label among \['farm', 'mill', 'bakery'\]"),
    (torch.tensor([0, -1, 2, 1]), r"node 1 has code -1 \(missing\); every node needs a category"),
    (torch.tensor([0.0, 1.0, 2.0, 1.0]), r"must hold integer category codes .* give bins for a numeric one"),
])
def test_bad_category_codes_are_refused(codes, match):
    d = supply_graph(num_firms=4)
    d["firm"].sector = codes
    with pytest.raises(PopulationGraphError, match=r"grouping 'sector' \(attribute firm.sector\)"):
        Graph(d, Requirements(groupings={"sector": Grouping("sector", "firm")}))
    with pytest.raises(PopulationGraphError, match=match):
        Graph(d, Requirements(groupings={"sector": Grouping("sector", "firm")}))


def test_grouping_declarations_are_checked():
    with pytest.raises(ConfigError, match=r"model.groupings.age.bins must be strictly increasing"):
        Grouping("age", bins=[0, 10, 10])
    with pytest.raises(ConfigError, match=r"model.groupings.age: 2 labels for 3 bins"):
        Grouping("age", bins=[0, 10, 20], labels=["young", "old"])
    with pytest.raises(ConfigError, match=r"model.groupings.sector: unknown keys \['kind'\]"):
        Grouping.from_config("sector", {"node_type": "firm", "kind": "x"})
    g = Grouping.from_config("sector", {"node_type": "firm"})
    assert (g.node_type, g.attribute, g.size) == ("firm", "sector", None)
    assert Grouping("age", bins=[0, 18, 65]).size == 3 and Grouping("s", labels=["a", "b"]).size == 2


# --------------------------------------------------------------------------- time-varying edges


_timed = timed_chain


def _edges(adj):
    return sorted(zip(*adj.csr.to_sparse_coo().coalesce().indices().tolist()))


def test_one_layout_per_window_cycling_with_the_period():
    g = Graph(_timed([0, 0, 1, 1, 3, 3]), Requirements(edge_types={CONTACT}))
    assert g.time_varying(CONTACT)
    assert [g.window(CONTACT, t) for t in range(9)] == [0, 1, 2, 3, 0, 1, 2, 3, 0]  # period: last window + 1
    assert _edges(g.layout(CONTACT, 0)) == [(0, 1), (1, 0)]    # (dst, src)
    assert _edges(g.layout(CONTACT, 1)) == [(1, 2), (2, 1)]
    assert dense(g.layout(CONTACT, 3)).tolist()[3] == [0.0, 0.0, 3.0, 0.0]
    empty = g.layout(CONTACT, 2)                                # a window without edges
    assert empty.num_edges == 0 and empty.shape == (4, 4)
    assert g.layout(CONTACT, 7) is g.layout(CONTACT, 3)
    assert g.layout(CONTACT, 8) is g.layout(CONTACT, 0)
    assert g.layout(CONTACT) is g.layout(CONTACT, 0)           # no step: window 0
    assert g.num_edges() == 6


def test_an_explicit_period_extends_the_cycle():
    g = Graph(_timed([0, 0, 1, 1, 1, 1], period=7), Requirements(edge_types={CONTACT}))
    assert g.window(CONTACT, 6) == 6 and g.layout(CONTACT, 6).num_edges == 0
    assert g.window(CONTACT, 8) == 1 and g.layout(CONTACT, 8).num_edges == 4


def test_static_edge_types_have_no_window():
    g = Graph(town(), Requirements(edge_types={NEAR}))
    assert g.window(NEAR, 5) is None and not g.time_varying(NEAR)
    assert g.layout(NEAR, 5) is g.layout(NEAR, 0)


# --------------------------------------------------------------------------- devices


def test_to_keeps_every_layout_grouping_and_window():
    d = town()
    d[CONTACT].time = torch.tensor([0, 1])
    req = Requirements(attributes={"person": {"age"}}, edge_types={NEAR, CONTACT}, stacks={frozenset({HOME, SCHOOL})},
                       groupings={"age": Grouping("age", bins=[0, 10])})
    g = Graph(d, req, dtype=F64)
    g.group_adjacency("age")
    moved = g.to("cpu")
    assert moved is not g and moved.device == torch.device("cpu") and moved.dtype == F64
    assert moved.num_nodes == g.num_nodes and moved.groupings == g.groupings
    for k in g.uid:
        assert torch.equal(moved.uid[k], g.uid[k])
    assert torch.equal(dense(moved.layout(NEAR)), dense(g.layout(NEAR)))
    for t in range(3):
        assert torch.equal(dense(moved.layout(CONTACT, t)), dense(g.layout(CONTACT, t)))
    s, ms = g.stack([HOME, SCHOOL]), moved.stack([HOME, SCHOOL])
    assert ms.edge_types == s.edge_types and ms.offsets == s.offsets
    assert torch.equal(ms.inverse_weight, s.inverse_weight) and torch.equal(ms.type_index, s.type_index)
    assert torch.equal(dense(ms.adjacency), dense(s.adjacency))
    assert torch.equal(moved.group_index("age"), g.group_index("age")) and moved.group_labels("age") == ["0-10", "10+"]
    assert torch.equal(dense(moved.group_adjacency("age")), dense(g.group_adjacency("age")))
    assert torch.equal(moved.attribute("person", "age"), g.attribute("person", "age"))
    assert moved.nbytes() == g.nbytes() > 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_to_cuda_moves_every_tensor():
    d = town()
    d[CONTACT].time = torch.tensor([0, 1])
    req = Requirements(edge_types={NEAR, CONTACT}, stacks={frozenset({HOME, SCHOOL})},
                       groupings={"age": Grouping("age", bins=[0, 10])})
    g = Graph(d, req).to("cuda")
    assert g.device.type == "cuda"
    assert all(a.csr.device.type == "cuda" for a in g.layouts())
    assert g.layout(CONTACT, 5).csr.device.type == "cuda"    # the empty window too
    assert g.group_index("age").is_cuda and g.group_adjacency("age").csr.is_cuda
    assert g.stack([HOME, SCHOOL]).inverse_weight.is_cuda and g.attribute("person", "age").is_cuda


def json_town() -> HeteroData:
    d = town()
    d["person"].sex = torch.tensor([0, 1, 1, 0])
    d["person"].sex_categories = json.dumps(["f", "m"])
    return d


def test_repr_names_what_was_built():
    g = Graph(json_town(), Requirements(edge_types={NEAR}, groupings={"age": Grouping("age", bins=[0, 10])}))
    assert "('school', 'near', 'school')" in repr(g) and "'age': 2" in repr(g)


def test_categories_stored_as_json_by_the_importers():
    g = Graph(json_town(), Requirements(groupings={"sex": Grouping("sex")}))
    assert g.group_labels("sex") == ["f", "m"] and g.group_index("sex").tolist() == [0, 1, 1, 0]


def test_a_stack_of_two_edge_types_into_one_destination_type_keeps_both_offsets():
    from torch_geometric.data import HeteroData

    d = HeteroData()
    d["person"].num_nodes, d["person"].uid = 3, torch.arange(3)
    d["venue"].num_nodes, d["venue"].uid = 2, torch.arange(2)
    day, night = ("person", "day", "venue"), ("person", "night", "venue")
    d[day].edge_index = torch.tensor([[0, 1], [0, 1]])
    d[night].edge_index = torch.tensor([[2], [0]])
    s = Graph(d, Requirements(stacks={frozenset([day, night])})).stack([day, night])
    assert s.offsets == {day: 0, night: 2} and s.num_rows == 4
