"""The synthetic supply network and the shipment edge-list importer, with malformed files.

Errors are :class:`DataFileError` naming the file, the row (and CSV line) and the column and saying
what was expected, as for the population importers (tests/data/test_malformed.py).
"""
from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lpm_graph.data.readers import DataFileError
from lpm_graph.errors import ConfigError, PopulationGraphError
from lpm_graph.models.supply_chain import from_shipments, supply_network

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "samples" / "supply_chain"
REL = "supplies"


def test_generator_builds_the_layers_it_is_asked_for():
    tiers = {"depot": 3, "clinic": 12, "person": 500}
    t0 = time.perf_counter()
    d = supply_network(tiers, suppliers_per_node=[2, 1], lead_time=[2, 0], spread=[1, 0], capacity={"depot": 80.0},
                       seed=4)
    assert time.perf_counter() - t0 < 2
    assert {nt: d[nt].num_nodes for nt in tiers} == tiers
    assert set(d.edge_types) == {("depot", REL, "clinic"), ("clinic", REL, "person")}
    up = d["depot", REL, "clinic"]
    assert torch.bincount(up.edge_index[1], minlength=12).tolist() == [2] * 12  # two distinct depots each
    assert len(set(map(tuple, up.edge_index.t().tolist()))) == 24
    assert set(up.lead_time.tolist()) <= {2, 3} and set(d["clinic", REL, "person"].lead_time.tolist()) == {0}
    assert d["depot"].capacity.tolist() == [80.0] * 3 and torch.isinf(d["clinic"].capacity).all()
    again = supply_network(tiers, suppliers_per_node=[2, 1], lead_time=[2, 0], spread=[1, 0], seed=4)
    assert torch.equal(again["clinic", REL, "person"].edge_index, d["clinic", REL, "person"].edge_index)
    with pytest.raises(ConfigError, match="one per tier pair"):
        supply_network(tiers, lead_time=[1, 2, 3])
    with pytest.raises(ConfigError, match="not tiers"):
        supply_network(tiers, suppliers_per_node=1, lead_time=1, spread=0, capacity={"warehouse": 3.0})


def test_the_shipped_sample_reads_with_a_node_table():
    d = from_shipments(SAMPLE / "shipments.csv", SAMPLE / "nodes.csv")
    assert {nt: d[nt].num_nodes for nt in d.node_types} == {"consumer": 64, "retailer": 10, "supplier": 2,
                                                          "warehouse": 4}
    assert ("warehouse", REL, "retailer") in d.edge_types
    assert d["supplier"].capacity.tolist() == [50.0, 50.0]
    assert d["warehouse", REL, "retailer"].capacity.tolist() == [40.0] * 10
    assert torch.isinf(d["retailer", REL, "consumer"].capacity).all()


def _write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


NODES = "id,type,capacity\n1,supplier,10\n2,retailer,\n3,consumer,\n4,consumer,\n"
EDGES = "src,dst,lead_time,capacity\n1,2,2,5\n2,3,0,\n2,4,0,\n"


def test_node_types_from_edge_columns_and_integer_ids(tmp_path):
    edges = _write(tmp_path, "edges.csv", "src,dst,lead_time,src_type,dst_type\n1,2,2,supplier,retailer\n"
                                          "2,3,0,retailer,consumer\n")
    d = from_shipments(edges)
    assert d["retailer"].num_nodes == 1 and d["supplier", REL, "retailer"].lead_time.tolist() == [2]
    d = from_shipments(_write(tmp_path, "e.csv", EDGES), _write(tmp_path, "n.csv", NODES))
    assert d["consumer"].num_nodes == 2 and d["supplier", REL, "retailer"].capacity.tolist() == [5.0]


@pytest.mark.parametrize("edges,nodes,match", [
    ("src,dst,capacity\n1,2,5\n", NODES, r"edges.csv'.*missing required column\(s\) \['lead_time'\].*columns present"),
    ("src,dst,lead_time,capacity\n1,2,2,five\n", NODES,
     r"edges.csv', row 1 \(line 2\), column 'capacity': expected a number \(capacity"),
    ("src,dst,lead_time,capacity\n1,2,2,5\n2,3,-1,\n", NODES,
     r"edges.csv', row 2 \(line 3\), column 'lead_time': lead time .*-1 is negative"),
    ("src,dst,lead_time\n1,2,1.5\n", NODES, r"row 1 \(line 2\), column 'lead_time': .*1.5 is not an integer"),
    ("src,dst,lead_time,capacity\n1,2,2,-3\n", NODES, r"column 'capacity': capacity .* -3 is below 0"),
    ("src,dst,lead_time\n1,2,2\n2,9,0\n", NODES,
     r"edges.csv', row 2 \(line 3\), column 'dst': node id 9 is not in the node table .*nodes.csv'.*fix the id"),
    ("", NODES, r"edges.csv': the file is empty"),
    ("src,dst,lead_time\n", NODES, r"edges.csv': has a header but no data rows"),
    ("src,dst,lead_time\n1,2,1\n", "id,type\n1,supplier\n2,retailer\n1,consumer\n",
     r"nodes.csv', row 3 \(line 4\), column 'id': node id 1 is listed twice \(first in row 1"),
    ("src,dst,lead_time\n1,2,1\n", "id,kind\n1,supplier\n", r"nodes.csv'.*missing required column\(s\) \['type'\]"),
    ("src,dst,lead_time\n1,2,1\n", "id,type\n1,supplier\n2,\n", r"nodes.csv', row 2 \(line 3\), column 'type': missing"),
    ("src,dst,lead_time\n1,2,1\n", "id,type\n1,sup.plier\n2,retailer\n", r"column 'type': node type 'sup.plier'"),
    ("src,dst,lead_time\n1,1,1\n", NODES, r"row 1 \(line 2\), column 'dst': node 1 ships to itself"),
    ("src,dst,lead_time\n1,2,1\n1,2,3\n", NODES, r"row 2 \(line 3\), column 'dst': the edge 1 -> 2 is listed again"),
    ("src,dst,lead_time\n1.5,2,1\n", NODES, r"row 1 \(line 2\), column 'src': id 1.5 is not an integer"),
])
def test_malformed_files_name_file_row_and_column(tmp_path, edges, nodes, match):
    e, n = _write(tmp_path, "edges.csv", edges), _write(tmp_path, "nodes.csv", nodes)
    with pytest.raises(DataFileError, match=match):
        from_shipments(e, n)


def test_mixed_id_kinds(tmp_path):
    """Ids of one kind per column (the readers' rule); text ids of the node table do not match integer ids."""
    nodes = _write(tmp_path, "nodes.csv", "id,type\na,supplier\n2,retailer\n3,consumer\n")
    edges = _write(tmp_path, "edges.csv", "src,dst,lead_time\n2,3,0\n")
    with pytest.raises(DataFileError, match=r"nodes.csv', row 1 \(line 2\), column 'id': id 'a' is not an integer"):
        from_shipments(edges, nodes)
    nodes = _write(tmp_path, "named.csv", "id,type\ns1,supplier\nr1,retailer\n")
    with pytest.raises(DataFileError, match=r"edges.csv', row 1 \(line 2\), column 'src': node id 2 is not in "
                                            r"the node table"):
        from_shipments(edges, nodes)


def test_types_from_edge_columns_conflict_or_missing(tmp_path):
    edges = _write(tmp_path, "edges.csv", "src,dst,lead_time,src_type,dst_type\n1,2,1,supplier,retailer\n"
                                          "2,3,0,warehouse,consumer\n")
    with pytest.raises(DataFileError, match=r"row 1 \(line 2\), column 'dst_type': node 2 is given type 'retailer' "
                                            r"here but 'warehouse' in row 2 \(line 3\), column 'src_type'"):
        from_shipments(edges)
    edges = _write(tmp_path, "plain.csv", "src,dst,lead_time\n1,2,1\n")
    with pytest.raises(DataFileError, match=r"missing required column\(s\) \['src_type', 'dst_type'\].*node table"):
        from_shipments(edges)


def test_parquet_edge_list_and_bad_lead_times_for_the_model(tmp_path):
    path = tmp_path / "edges.parquet"
    pd.DataFrame({"src": [1, 2, 2], "dst": [2, 3, 4], "lead_time": [7, 0, 0]}).to_parquet(path)
    d = from_shipments(path, _write(tmp_path, "nodes.csv", NODES))
    assert d["supplier", REL, "retailer"].lead_time.tolist() == [7]
    from tests.models.supply_chain.helpers import chain_model

    with pytest.raises(PopulationGraphError, match=r"lead times 7..7 steps.*max_lead_time >= 7"):
        chain_model(["supplier", "retailer", "consumer"])(d, steps=1)
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"src": [1], "dst": [2], "lead_time": [np.nan]}).to_parquet(bad)
    with pytest.raises(DataFileError, match=r"bad.parquet', row 1, column 'lead_time': missing lead time"):
        from_shipments(bad, _write(tmp_path, "nodes2.csv", NODES))


EXAMPLES = int(os.environ.get("LPM_MALFORMED_EXAMPLES", "40"))
TOKENS = ["", "0", "1", "2", "3", "-1", "1.5", "nan", "inf", "abc", "supplier", "retailer", "consumer", "a.b", " "]
COLUMNS = ["src", "dst", "lead_time", "capacity", "share", "src_type", "dst_type", "x"]


def _csv(columns, rows) -> str:
    return "\n".join([",".join(columns)] + [",".join(r) for r in rows]) + "\n"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.builds(_csv, st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=6),
                      st.lists(st.lists(st.sampled_from(TOKENS), min_size=0, max_size=7), max_size=6)),
       with_nodes=st.booleans())
def test_generated_edge_lists_build_or_fail_clearly(text, with_nodes):
    """Any table either builds a valid supply network or raises our error naming the file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "edges.csv"
        path.write_text(text)
        nodes = _write(Path(tmp), "nodes.csv", "id,type\n1,supplier\n2,retailer\n3,consumer\n") if with_nodes else None
        with warnings.catch_warnings():
            try:
                data = from_shipments(path, nodes)
            except (PopulationGraphError, ConfigError) as exc:
                assert "edges.csv" in str(exc) or "nodes.csv" in str(exc), str(exc)
                return
        for et in data.edge_types:
            assert (data[et].lead_time >= 0).all()
