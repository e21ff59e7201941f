"""Edge lists -> contact edge types: merging rules, layers, time, round trip, errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lpm_graph.data.assemble import original_ids
from lpm_graph.data.edgelist import from_edgelist, to_edgelist
from lpm_graph.data.readers import DataFileError, PopulationDataWarning
from lpm_graph.errors import ConfigError

CONTACT = ("person", "contact", "person")


def _edges(tmp_path, frame, name="e.csv"):
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def _pairs(data, edge_type=CONTACT):
    store = data[edge_type]
    ids = original_ids(data, "person")
    w = store.edge_weight.tolist() if "edge_weight" in store else [1.0] * store.edge_index.shape[1]
    return {(ids[s], ids[d]): wt for s, d, wt in zip(*store.edge_index.tolist(), w)}


def test_undirected_duplicates_merge_and_self_loops_are_dropped_with_counts(tmp_path):
    path = _edges(tmp_path, pd.DataFrame({"src": [1, 1, 3, 4, 1], "dst": [2, 2, 3, 3, 2], "weight": [1.0, 2.0, 5.0, 0.5, 4.0]}))
    with pytest.warns(PopulationDataWarning) as record:
        data = from_edgelist(path, default_age=30)
    messages = [str(w.message) for w in record]
    assert any("dropped 1 self-loop(s)" in m for m in messages)
    assert any("merged 2 duplicate record(s)" in m for m in messages)
    assert original_ids(data, "person").tolist() == [1, 2, 3, 4]          # 3 stays: it has a contact with 4
    assert _pairs(data) == {(1, 2): 7.0, (2, 1): 7.0, (3, 4): 0.5, (4, 3): 0.5}
    assert data[CONTACT].undirected is True


def test_an_undirected_list_that_lists_both_directions_is_refused(tmp_path):
    # "a b" and "b a" in an undirected list would be two contacts of the same pair: every contact's weight
    # doubled, silently.  The file is a directed one; say so.
    path = _edges(tmp_path, pd.DataFrame({"src": [1, 2, 3, 4], "dst": [2, 1, 4, 3]}))
    with pytest.raises(DataFileError, match=r"2 contact\(s\) are listed in both directions.*directed=true"):
        from_edgelist(path, default_age=30)
    data = from_edgelist(path, default_age=30, directed=True)
    assert _pairs(data) == {(1, 2): 1.0, (2, 1): 1.0, (3, 4): 1.0, (4, 3): 1.0}
    # the same pair in both directions but in different layers or windows is two contacts, not a repeat
    layered = _edges(tmp_path, pd.DataFrame({"src": [1, 2], "dst": [2, 1], "layer": ["home", "work"]}), "l.csv")
    from_edgelist(layered, default_age=30)


def test_directed_records_stay_apart(tmp_path):
    path = _edges(tmp_path, pd.DataFrame({"src": ["a", "b"], "dst": ["b", "a"], "weight": [1.0, 2.0]}))
    data = from_edgelist(path, directed=True, default_age=30)
    assert _pairs(data) == {("a", "b"): 1.0, ("b", "a"): 2.0}
    assert data[CONTACT].undirected is False


def test_unweighted_without_duplicates_has_unit_weights_implicit(tmp_path):
    data = from_edgelist(_edges(tmp_path, pd.DataFrame({"src": [1, 2], "dst": [2, 3]})), default_age=30)
    assert "edge_weight" not in data[CONTACT]
    with pytest.warns(PopulationDataWarning, match="merged 1 duplicate"):
        again = from_edgelist(_edges(tmp_path, pd.DataFrame({"src": [1, 2, 1], "dst": [2, 3, 2]}), "d.csv"),
                              default_age=30)
    assert _pairs(again)[(1, 2)] == 2.0   # the multiplicity becomes the weight


def test_layers_and_days_make_time_varying_edge_types(tmp_path):
    frame = pd.DataFrame({"src": [1, 1, 2, 1], "dst": [2, 2, 3, 3], "weight": [1.0, 1.0, 2.0, 3.0],
                          "layer": ["home", "home", "work", "work"], "day": [0, 1, 4, 4]})
    data = from_edgelist(_edges(tmp_path, frame, "e.parquet"), default_age=30, period=7)
    assert sorted(data.edge_types) == [("person", "home", "person"), ("person", "work", "person")]
    home = data["person", "home", "person"]
    assert home.time.tolist() == [0, 1, 0, 1] and home.time_period == 7
    assert data["person", "work", "person"].time_period == 7


def test_to_edgelist_round_trip(tmp_path):
    frame = pd.DataFrame({"src": ["x", "y", "z"], "dst": ["y", "z", "w"], "weight": [1.5, 2.0, 0.25],
                          "layer": ["a", "b", "a"], "time": [0, 2, 1]})
    data = from_edgelist(_edges(tmp_path, frame), default_age=30)
    back = to_edgelist(data)
    canon = back.assign(pair=[tuple(sorted(p)) for p in zip(back.src, back.dst)])
    expected = frame.assign(pair=[tuple(sorted(p)) for p in zip(frame.src, frame.dst)])
    key = ["pair", "layer", "time"]
    got = canon.sort_values(key)[key + ["weight"]].reset_index(drop=True)
    want = expected.sort_values(key)[key + ["weight"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_csv_and_parquet_give_the_same_graph(tmp_path):
    rng = np.random.default_rng(3)
    src, dst = rng.integers(0, 50, 300), rng.integers(0, 50, 300)
    frame = pd.DataFrame({"src": np.minimum(src, dst), "dst": np.maximum(src, dst), "weight": rng.random(300)})
    with pytest.warns(PopulationDataWarning):
        a = from_edgelist(_edges(tmp_path, frame), default_age=30)
    with pytest.warns(PopulationDataWarning):
        b = from_edgelist(_edges(tmp_path, frame, "e.parquet"), default_age=30)
    assert torch.equal(a[CONTACT].edge_index, b[CONTACT].edge_index)
    assert torch.allclose(a[CONTACT].edge_weight, b[CONTACT].edge_weight)


def test_sparse_large_integer_ids_use_the_hash_path(tmp_path):
    big = 10**15
    frame = pd.DataFrame({"src": [big + 5, big, 7], "dst": [big, 7, big + 5]})
    data = from_edgelist(_edges(tmp_path, frame), directed=True, default_age=30)
    assert original_ids(data, "person").tolist() == [7, big, big + 5]
    assert data["person"].uid.tolist() == [7, big, big + 5]
    assert set(_pairs(data)) == {(big + 5, big), (big, 7), (7, big + 5)}


def test_person_table_gives_ages_attributes_and_memberships(tmp_path):
    pd.DataFrame({"person_id": [1, 2, 3], "age": [5, 40, 70], "household_id": [1, 1, 2], "sex": ["F", "M", "F"]}) \
        .to_csv(tmp_path / "p.csv", index=False)
    edges = _edges(tmp_path, pd.DataFrame({"src": [3], "dst": [1]}))
    data = from_edgelist(edges, persons=tmp_path / "p.csv")
    assert data["person"].age.tolist() == [5.0, 40.0, 70.0]
    assert data["household"].size.tolist() == [2, 1]
    assert _pairs(data) == {(1, 3): 1.0, (3, 1): 1.0}
    bad = _edges(tmp_path, pd.DataFrame({"src": [1, 2], "dst": [2, 9]}), "bad.csv")
    with pytest.raises(DataFileError, match=r"bad.csv', row 2 \(line 3\), column 'dst': person id 9 is not in the "
                                            r"person table"):
        from_edgelist(bad, persons=tmp_path / "p.csv")


@pytest.mark.parametrize("text, kwargs, match", [
    ("src,dst,weight\n1,2,-1\n", {}, r"row 1 \(line 2\), column 'weight': weight -1 is below 0"),
    ("src,dst,weight\n1,2,1\n2,3,nan\n", {}, r"row 2 \(line 3\), column 'weight': missing weight"),
    ("src,dst,weight\n1,2,1\n2,3,\n", {}, r"row 2 \(line 3\), column 'weight': missing weight"),
    ("src,dst,weight\n1,2,heavy\n", {}, r"column 'weight': expected a number \(weight\), got 'heavy'"),
    ("src,dst,weight\n1,2,inf\n", {}, r"column 'weight': weight is inf; expected a finite number"),
    ("src,dst,day\n1,2,0\n2,3,-1\n", {}, r"row 2 \(line 3\), column 'day': time window -1 is negative"),
    ("src,dst,time\n1,2,0.5\n", {}, r"column 'time': time window 0.5 is not an integer"),
    ("src,dst\n1,\n", {}, r"row 1 \(line 2\), column 'dst': missing id"),
    ("source,target\n1,2\n", {}, r"missing required column\(s\) \['src', 'dst'\]"),
    ("src,dst\n1,2\n", {"weight_column": "w"}, r"missing required column\(s\) \['w'\]"),
    ("src,dst,layer\n1,2,member_of\n", {}, r"layer name 'member_of' is reserved"),
    ("src,dst,layer\n1,2,home\n2,3,\n", {}, r"row 2 \(line 3\), column 'layer': missing layer name"),
    ("src,dst,time\n1,2,5\n", {"period": 3}, r"time window 5 does not fit period=3"),
])
def test_bad_edge_lists(tmp_path, text, kwargs, match):
    path = tmp_path / "e.csv"
    path.write_text(text)
    with pytest.raises(DataFileError, match=match):
        from_edgelist(path, default_age=30, **kwargs)


def test_no_ages_is_a_config_error_naming_the_fix(tmp_path):
    path = _edges(tmp_path, pd.DataFrame({"src": [1], "dst": [2]}))
    with pytest.raises(ConfigError, match="population.default_age"):
        from_edgelist(path)
    with pytest.raises(ConfigError, match="population.directed must be true or false"):
        from_edgelist(path, directed="yes", default_age=3)
