"""The size of a population before it is built (lpm_graph.data.estimate)."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.data import generate_population
from lpm_graph.data.estimate import population_size
from tests.conftest import compose_config


def test_population_size_of_a_synthetic_spec_matches_a_generated_population():
    # 1M people: workplace sizes are heavy-tailed (tail exponent 1.06, cut at 5000), so their count K over W
    # workers has a relative sd of about sd(size) / mean(size) / sqrt(K) ~ 4.8 / 255 ~ 2%; allow 5 sd.
    # Memberships and the other venue counts vary far less.
    cfg = compose_config(["population.num_people=1000000", "seed=3"])
    size = population_size(cfg.population)
    data = generate_population(1_000_000, seed=3)
    for et in data.edge_types:
        if et[1] == "member_of":
            assert size.edges[et] == pytest.approx(data[et].edge_index.size(1), rel=0.02), et
    for nt in data.node_types:
        assert size.nodes[nt] == pytest.approx(data[nt].num_nodes, rel=0.1), nt
    tensors = sum(v.numel() * v.element_size() for store in data.stores for v in store.values()
                  if torch.is_tensor(v))
    assert size.bytes == pytest.approx(tensors, rel=0.05)



def test_a_missing_population_file_is_left_to_the_loader():
    assert population_size(compose_config(["population=file", "population.path=x.pt"]).population) is None
    assert population_size(None) is None


def test_the_size_grows_with_the_spec():
    small = population_size(compose_config(["population.num_people=10000"]).population)
    large = population_size(compose_config(["population.num_people=20000"]).population)
    assert large.nodes["person"] == 2 * small.nodes["person"]
    assert large.bytes == pytest.approx(2 * small.bytes, rel=0.01)


# -----------------------------------------------------------------------------------------
# Every source is sized from its config and files, before it is built
# -----------------------------------------------------------------------------------------


def _graph_bytes(data) -> int:
    return sum(v.numel() * v.element_size() for store in data.stores for v in store.values() if torch.is_tensor(v))


def _counts(data):
    return ({nt: int(data[nt].num_nodes) for nt in data.node_types},
            {et: int(data[et].edge_index.shape[1]) for et in data.edge_types})


def _estimate_and_build(overrides, cached: bool = True):
    """(size, built population); ``cached``: a source with a cache, built without it."""
    from lpm_graph.tasks.simulate import instantiate_config

    cfg = compose_config([*overrides, "population.cache_dir=null"] if cached and "population=file" not in overrides
                         else list(overrides))
    size = population_size(cfg.population)
    assert size is not None
    data = instantiate_config(cfg.population)
    return size, data


def test_census_marginals_are_sized_from_the_marginals_and_num_people():
    # the census builder's synthetic spec, with schools thinned by the enrolment rate of each age: expected
    # counts, so within a few percent at 20,000 people (the workplaces' heavy tail varies most)
    size, data = _estimate_and_build(["population=nyc", "population.num_people=20000"])
    nodes, edges = _counts(data)
    assert size.nodes["person"] == nodes["person"] == 20000
    for et, count in edges.items():
        assert size.edges[et] == pytest.approx(count, rel=0.05), et
    assert size.bytes == pytest.approx(_graph_bytes(data), rel=0.03)
    assert size.build_bytes > 0


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_tables_are_sized_from_row_counts_and_parquet_null_counts(tmp_path, fmt):
    from lpm_graph.data.tables import write_tables

    paths = write_tables(generate_population(3000, seed=4), tmp_path, format=fmt)
    size, data = _estimate_and_build(["population=tables", f"population.persons={paths['persons']}"])
    nodes, edges = _counts(data)
    assert size.nodes["person"] == nodes["person"] == 3000
    actual = _graph_bytes(data)
    for et, count in edges.items():
        if fmt == "parquet":  # the null counts of the venue columns are in the row groups' statistics
            assert size.edges[et] == count, et
        else:  # a CSV's venue columns are taken to be filled: an upper bound
            assert count <= size.edges[et] <= 3000, et
    # an upper bound, within 2x (CSV: every venue column filled) or 1.4x (Parquet: venues per membership)
    assert actual <= size.bytes <= (2.0 if fmt == "csv" else 1.4) * actual
    assert size.build_bytes > 0 and "3,000 rows" in size.source


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_edge_lists_are_sized_from_their_records(tmp_path, fmt):
    from lpm_graph.data import random_graph, to_edgelist

    frame = to_edgelist(random_graph(2000, mean_degree=8, seed=1, weighted=True))
    if fmt == "csv":  # a CSV's layers are only known once read; Parquet's statistics name its one layer
        frame = frame.drop(columns="layer")
    path = tmp_path / f"edges.{fmt}"
    frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path, index=False)
    size, data = _estimate_and_build(["population=edgelist", f"population.edges={path}"])
    nodes, edges = _counts(data)
    assert size.edges == edges  # distinct contacts, stored both ways
    assert nodes["person"] <= size.nodes["person"]
    actual = _graph_bytes(data)
    # people are at most the endpoints (Parquet: the span of the ids' statistics); within 1.6x
    assert actual <= size.bytes <= 1.6 * actual


def test_sociopatterns_files_are_sized_from_their_lines(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    lines = 5000
    i = rng.integers(0, 300, lines)
    j = (i + rng.integers(1, 300, lines)) % 300
    t = np.arange(lines) * 60  # three and a half days, every line a contact of its own
    path = tmp_path / "contacts.dat"
    np.savetxt(path, np.stack([t, i, j], 1), fmt="%d")
    size, data = _estimate_and_build(["population=sociopatterns", f"population.path={path}",
                                      "population.default_age=10"])
    nodes, edges = _counts(data)
    (et, count), = edges.items()
    assert count <= size.edges[et] == 2 * lines
    # at most one contact and two people per line: the people are few, so the bound is within 2.5x
    assert _graph_bytes(data) <= size.bytes <= 2.5 * _graph_bytes(data)


@pytest.mark.parametrize("suffix", [".graphml", ".gml"])
def test_graph_files_are_sized_by_counting_their_nodes_and_edges(tmp_path, suffix):
    import networkx as nx

    from lpm_graph.data import random_graph, to_networkx

    graph = to_networkx(random_graph(600, mean_degree=6, seed=2, weighted=True))
    path = tmp_path / f"g{suffix}"
    (nx.write_graphml if suffix == ".graphml" else nx.write_gml)(graph, path)
    size, data = _estimate_and_build(["population=networkx", f"population.path={path}"])
    nodes, edges = _counts(data)
    assert size.nodes == nodes and size.edges == edges  # counted exactly (undirected: stored both ways)
    assert _graph_bytes(data) <= size.bytes <= 1.5 * _graph_bytes(data)


def test_population_files_are_sized_exactly_from_their_tensors_shapes(tmp_path):
    from lpm_graph.data import save_population

    save_population(generate_population(2500, seed=6), tmp_path / "pop.pt")
    size, data = _estimate_and_build(["population=file", f"population.path={tmp_path / 'pop.pt'}"])
    assert (size.nodes, size.edges) == _counts(data)
    assert size.bytes == _graph_bytes(data)


def test_csv_rows_counts_newlines_of_plain_and_compressed_files(tmp_path):
    import gzip

    from lpm_graph.data.estimate import csv_rows

    text = "a,b\n" + "".join(f"{k},{k * 7}\n" for k in range(12345))
    (tmp_path / "t.csv").write_text(text)
    (tmp_path / "u.csv").write_text(text.rstrip("\n"))  # no newline at the end
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(text.encode()))
    assert csv_rows(tmp_path / "t.csv") == (12345, True)
    assert csv_rows(tmp_path / "u.csv") == (12345, True)
    assert csv_rows(tmp_path / "t.csv.gz") == (12345, True)  # shorter than the scan: exact


def test_a_missing_or_unreadable_input_is_left_to_the_builder(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    for over in (["population=tables", f"population.persons={tmp_path / 'none.csv'}"],
                 ["population=tables", f"population.persons={tmp_path / 'bad.parquet'}"],
                 ["population=edgelist", f"population.edges={tmp_path / 'none.csv'}"],
                 ["population=sociopatterns", f"population.path={tmp_path / 'none.dat'}"],
                 ["population=networkx", f"population.path={tmp_path / 'none.graphml'}"]):
        assert population_size(compose_config(over).population) is None, over


# -----------------------------------------------------------------------------------------
# Supply chains: the synthetic network, shipment lists, the vaccine network
# -----------------------------------------------------------------------------------------


def test_a_supply_network_is_sized_exactly_from_its_tiers():
    # k suppliers per node, capped by the tier above (2 warehouses cannot each take 3 of 2 suppliers)
    size, data = _estimate_and_build(["model=supply_chain", "population=supply_network",
                                      "population.tiers.supplier=2", "population.tiers.warehouse=5",
                                      "population.tiers.retailer=40", "population.tiers.consumer=200",
                                      "population.suppliers_per_node=[3, 2, 1]"], cached=False)
    assert (size.nodes, size.edges) == _counts(data)
    assert size.edges == {("supplier", "supplies", "warehouse"): 5 * 2, ("warehouse", "supplies", "retailer"): 40 * 2,
                          ("retailer", "supplies", "consumer"): 200}
    assert size.bytes == _graph_bytes(data) and size.build_bytes > 0


def _shipments(tmp_path, with_types: bool):
    import pandas as pd

    from lpm_graph.models.supply_chain.network import supply_network

    net = supply_network({"supplier": 3, "warehouse": 6, "retailer": 30, "consumer": 60}, seed=2)
    rows = []
    for et in net.edge_types:
        s, t = net[et].edge_index.numpy()
        rows.append(pd.DataFrame({"src": [f"{et[0]}{i}" for i in s], "dst": [f"{et[2]}{i}" for i in t],
                                  "lead_time": 1, "src_type": et[0], "dst_type": et[2]}))
    edges = pd.concat(rows).sample(frac=1, random_state=0)
    if not with_types:
        edges = edges.drop(columns=["src_type", "dst_type"])
        pd.DataFrame({"id": [f"{nt}{i}" for nt in net.node_types for i in range(net[nt].num_nodes)],
                      "type": [nt for nt in net.node_types for _ in range(net[nt].num_nodes)]}
                     ).to_csv(tmp_path / "nodes.csv", index=False)
    edges.to_csv(tmp_path / "edges.csv", index=False)
    return ["model=supply_chain", "population=supply_edgelist", f"population.edges={tmp_path / 'edges.csv'}",
            f"population.nodes={tmp_path / 'nodes.csv' if not with_types else 'null'}"]


@pytest.mark.parametrize("with_types", [True, False])
def test_shipment_lists_are_sized_from_their_rows(tmp_path, with_types):
    from lpm_graph.data.estimate import ANY_RELATION

    size, data = _estimate_and_build(_shipments(tmp_path, with_types), cached=False)
    nodes, edges = _counts(data)
    if with_types:  # every row in the sample: its tier pairs exactly; nodes at most two per row
        assert size.edges == edges
        assert sum(size.nodes.values()) >= sum(nodes.values()) and set(size.nodes) == set(nodes)
        assert _graph_bytes(data) <= size.bytes <= 1.6 * _graph_bytes(data)  # the file's 1.46, ids short here
    else:  # the node table's rows, by type; the pairs known once read
        assert size.nodes == nodes
        assert size.edges == {(ANY_RELATION, "supplies", ANY_RELATION): sum(edges.values())}
        assert size.bytes == pytest.approx(_graph_bytes(data), rel=0.05)  # the file's 0.98: ids from the sample


def test_a_shipment_lists_pairs_are_shared_among_those_the_model_reads(tmp_path):
    from hydra.utils import instantiate

    from lpm_graph import memory

    cfg = compose_config(_shipments(tmp_path, with_types=False))
    model = instantiate(cfg.model, _convert_="all")
    read = model.requirements().edge_types
    est = memory.estimate_config(cfg, model)
    rows = population_size(cfg.population).edges[("*", "supplies", "*")]
    # every row lands on a pair the model reads (3 tier pairs, a third each): the layouts hold them all
    assert len(read) == 3 and f"; {rows:,} edges;" in est.description
    per_pair = rows // 3
    nodes = {"supplier": 3, "warehouse": 6, "retailer": 30, "consumer": 60}
    uid = 8 * sum(nodes.values())
    assert est.parts["layouts"] == uid + sum(2 * (4 * per_pair + 4 * (nodes[a] + nodes[c]) + 4 * per_pair)
                                             for a, _, c in read)


def test_a_vaccine_network_is_the_synthetic_size_with_its_clinics_and_depots():
    size, data = _estimate_and_build(["model=vaccine_logistics", "population.num_people=20000"], cached=False)
    nodes, edges = _counts(data)
    assert size.nodes["depot"] == nodes["depot"] == 2
    assert size.nodes["clinic"] == pytest.approx(nodes["clinic"], rel=0.1)  # expected counts
    for et, count in edges.items():
        assert size.edges[et] == pytest.approx(count, rel=0.1), et
    assert size.bytes == pytest.approx(_graph_bytes(data), rel=0.03)  # the file's 1.00
    assert size.build_bytes > 0 and "clinics" in size.source


@pytest.mark.slow
def test_the_build_peak_of_a_supply_network_is_within_the_stated_factors():
    # one fresh process (the vaccine network's and the shipment lists' peaks: scripts/bench_estimate.py)
    import importlib.util
    import json
    import subprocess
    import sys
    from pathlib import Path

    over = ["model=supply_chain", "population=supply_network", "population.tiers.consumer=600000"]

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("bench_estimate", root / "scripts" / "bench_estimate.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # its child: estimate, build, and the peak RSS the build added, in a fresh process
    out = subprocess.run([sys.executable, "-c", bench.CHILD, str(root), json.dumps(over)], capture_output=True,
                         text=True, cwd=root, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["bytes"] == pytest.approx(r["actual"], rel=0.03)
    # the file's table: 1.03 at 1,000,000 consumers; a build's fixed overheads weigh more here
    assert 0.85 <= (r["bytes"] + r["build"]) / r["added"] <= 1.3, r
