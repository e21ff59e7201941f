"""networkx -> population graph -> networkx keeps ids, attributes and edges; graph files; errors."""
from __future__ import annotations

import networkx as nx
import pytest
import torch

from lpm_graph.data import generate_population
from lpm_graph.data.assemble import original_ids
from lpm_graph.data.edgelist import from_edgelist
from lpm_graph.data.networkx_io import from_networkx, read_graph, to_networkx
from lpm_graph.data.readers import DataFileError
from lpm_graph.errors import ConfigError


def _assert_same(a: nx.Graph, b: nx.Graph) -> None:
    assert type(a) is type(b)
    assert dict(a.nodes(data=True)) == dict(b.nodes(data=True))
    if a.is_multigraph():
        def edges(g):
            out = sorted((tuple(sorted((u, v), key=str)) if not g.is_directed() else (u, v), sorted(d.items()))
                         for u, v, d in g.edges(data=True))
            return out
        assert edges(a) == edges(b)
    else:
        assert nx.utils.edges_equal(a.edges(data=True), b.edges(data=True))


def test_graph_round_trip_with_attributes():
    g = nx.Graph()
    g.add_node(10, age=33.0, sex="F", vaccinated=True)
    g.add_node(20, age=5.0, sex="M", vaccinated=False)
    g.add_node(30, age=71.0, vaccinated=True)              # no sex: missing, not invented
    g.add_node(40, age=50.0, sex="F", vaccinated=False)    # isolated
    g.add_edge(10, 20, weight=2.5)
    g.add_edge(20, 30, weight=0.5)
    data = from_networkx(g)
    assert original_ids(data, "person").tolist() == [10, 20, 30, 40]
    assert data["person"].age.tolist() == [33.0, 5.0, 71.0, 50.0]
    _assert_same(to_networkx(data), g)


def test_digraph_and_string_ids_round_trip():
    g = nx.DiGraph()
    g.add_nodes_from([("ann", {"age": 3.0}), ("bo", {"age": 4.0}), ("cy", {"age": 5.0})])
    g.add_edge("ann", "bo", weight=1.0)
    g.add_edge("bo", "ann", weight=3.0)
    g.add_edge("cy", "ann", weight=2.0)
    data = from_networkx(g)
    assert data["person", "contact", "person"].edge_index.shape[1] == 3
    _assert_same(to_networkx(data), g)


def test_multigraph_with_layers_and_time_round_trip():
    g = nx.MultiGraph()
    g.add_nodes_from([(1, {"age": 30.0}), (2, {"age": 31.0}), (3, {"age": 32.0})])
    g.add_edge(1, 2, weight=1.0, layer="home", time=0)
    g.add_edge(1, 2, weight=2.0, layer="home", time=1)
    g.add_edge(2, 3, weight=4.0, layer="work", time=1)
    data = from_networkx(g)
    assert sorted(et[1] for et in data.edge_types) == ["home", "work"]
    assert data["person", "home", "person"].time.tolist() == [0, 1, 0, 1]
    _assert_same(to_networkx(data), g)


def test_population_to_networkx_and_back_keeps_contacts(tmp_path):
    (tmp_path / "e.csv").write_text("src,dst,weight\n5,6,1.5\n6,7,2\n")
    data = from_edgelist(tmp_path / "e.csv", default_age=40)
    again = from_networkx(to_networkx(data))
    for key in ("edge_index", "edge_weight"):
        assert torch.equal(again["person", "contact", "person"][key], data["person", "contact", "person"][key])
    assert torch.equal(again["person"].uid, data["person"].uid)


def test_venue_memberships_become_node_attributes_and_come_back():
    data = generate_population(60, seed=3)
    g = to_networkx(data)
    assert g.number_of_nodes() == 60 and g.number_of_edges() == 0
    assert g.nodes[0]["household_id"] == int(data["person", "member_of", "household"].edge_index[1, 0])
    again = from_networkx(g)
    et = ("person", "member_of", "household")
    assert torch.equal(again[et].edge_index, data[et].edge_index)


def test_graphml_file_with_integer_like_ids_and_cache(tmp_path):
    g = nx.path_graph(5)
    for n in g:
        g.nodes[n]["age"] = float(10 * n)
    nx.write_graphml(g, tmp_path / "g.graphml")
    assert sorted(read_graph(tmp_path / "g.graphml").nodes) == [0, 1, 2, 3, 4]   # '0'... become ints
    data = from_networkx(path=tmp_path / "g.graphml", cache_dir=tmp_path / "cache")
    assert original_ids(data, "person").tolist() == [0, 1, 2, 3, 4]
    assert len(list((tmp_path / "cache").glob("networkx-*.pt"))) == 1
    _assert_same(to_networkx(data), g)


def test_gml_file(tmp_path):
    g = nx.Graph()
    g.add_node("a", age=1.0)
    g.add_node("b", age=2.0)
    g.add_edge("a", "b")
    nx.write_gml(g, tmp_path / "g.gml")
    data = from_networkx(tmp_path / "g.gml")
    assert list(original_ids(data, "person")) == ["a", "b"]


@pytest.mark.parametrize("build, match", [
    (lambda: nx.grid_2d_graph(2, 2), r"node \(0, 0\) of type tuple cannot be a person id"),
    (lambda: nx.Graph([(1, "a")]), r"node 'a' is a string, but 1 of the 2 nodes are integers"),
    (lambda: nx.Graph(), r"the graph has no nodes"),
    (lambda: nx.Graph([(1, 2, {"weight": -1.0})]), r"column 'weight': weight -1 is below 0"),
    (lambda: nx.Graph([(1, 2, {"weight": "x"})]), r"weight.*got 'x'"),
])
def test_bad_graphs(build, match):
    with pytest.raises(DataFileError, match=match):
        from_networkx(build(), default_age=30)


def test_bad_graph_files(tmp_path):
    (tmp_path / "g.graphml").write_text("<graphml><not closed")
    with pytest.raises(DataFileError, match=r"g.graphml': networkx cannot read it as graphml"):
        from_networkx(tmp_path / "g.graphml")
    (tmp_path / "g.txt").write_text("1 2\n")
    with pytest.raises(DataFileError, match=r"unknown suffix '.txt'"):
        from_networkx(tmp_path / "g.txt")
    with pytest.raises(ConfigError, match="exactly one of a graph or population.path"):
        from_networkx()


def test_nodes_without_age_need_default_age():
    g = nx.Graph([(1, 2)])
    with pytest.raises(DataFileError, match=r"missing required column\(s\) \['age'\]"):
        from_networkx(g)
    g.nodes[1]["age"] = 12.0
    data = from_networkx(g, default_age=50)
    assert data["person"].age.tolist() == [12.0, 50.0]
