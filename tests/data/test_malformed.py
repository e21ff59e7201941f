"""Generated malformed inputs: every importer either builds a valid graph or raises a clear error.

"Clear" means a :class:`PopulationGraphError` (``DataFileError`` and its kin) or a
:class:`ConfigError` whose message names the file; never an exception from deep
inside pyarrow, pandas or networkx, and no stray library warning (pytest runs with
``filterwarnings = error``).
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lpm_graph.data import validate_population
from lpm_graph.data.edgelist import from_edgelist
from lpm_graph.data.networkx_io import from_networkx
from lpm_graph.data.readers import PopulationDataWarning
from lpm_graph.data.sociopatterns import from_sociopatterns
from lpm_graph.data.tables import from_tables
from lpm_graph.errors import ConfigError, PopulationGraphError

# LPM_MALFORMED_EXAMPLES=2000 for a longer search than the default suite's
EXAMPLES = int(os.environ.get("LPM_MALFORMED_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOKENS = ["", "0", "1", "2", "7", "-3", "1.5", "2.0", "nan", "NaN", "inf", "-inf", "abc", "A", "1e400", " ",
          '"', '""', "x y", "\u00e9", "-0", "99999999999999999999", "True", "null", "\t"]
PERSON_COLUMNS = ["person_id", "age", "household_id", "school_id", "sex", "uid", "size", "x_categories", "type"]
EDGE_COLUMNS = ["src", "dst", "weight", "layer", "day", "time", "w"]


def _check(build, path: Path) -> None:
    """Run an importer; a graph must validate, an error must be ours and name the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PopulationDataWarning)
        try:
            data = build()
        except (PopulationGraphError, ConfigError) as exc:
            assert path.name in str(exc) or "population." in str(exc), str(exc)
            return
    validate_population(data)


def _csv_text(columns, rows) -> str:
    return "\n".join([",".join(columns)] + [",".join(r) for r in rows]) + "\n"


table_text = st.builds(
    _csv_text,
    st.lists(st.sampled_from(PERSON_COLUMNS), min_size=1, max_size=5),
    st.lists(st.lists(st.sampled_from(TOKENS), min_size=0, max_size=6), max_size=6),
)
edge_text = st.builds(
    _csv_text,
    st.lists(st.sampled_from(EDGE_COLUMNS), min_size=1, max_size=5),
    st.lists(st.lists(st.sampled_from(TOKENS), min_size=0, max_size=6), max_size=8),
)


@SETTINGS
@given(text=table_text, venues=st.one_of(st.none(), table_text))
def test_generated_person_tables(text, venues):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "persons.csv"
        path.write_text(text)
        venue_path = None
        if venues is not None:
            venue_path = Path(tmp) / "venues.csv"
            venue_path.write_text(venues.replace("person_id", "venue_id"))
        _check(lambda: from_tables(path, venue_path), path if venue_path is None else Path(tmp))


@SETTINGS
@given(text=edge_text, directed=st.booleans())
def test_generated_edge_lists(text, directed):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "edges.csv"
        path.write_text(text)
        _check(lambda: from_edgelist(path, directed=directed, default_age=30.0), path)


whitespace = st.sampled_from([" ", "\t", "  ", " \t"])


@SETTINGS
@given(lines=st.lists(st.lists(st.sampled_from(TOKENS[:20]), min_size=0, max_size=6), max_size=8),
       sep=whitespace)
def test_generated_sociopatterns_files(lines, sep):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "contacts.dat"
        path.write_text("\n".join(sep.join(line) for line in lines) + "\n")
        _check(lambda: from_sociopatterns(path, default_age=30.0), path)


def _column(draw, n: int) -> pa.Array:
    kind = draw(st.sampled_from(["int", "float", "string", "bool", "timestamp", "null"]))
    valid = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    mask = np.array([not v for v in valid], dtype=bool)
    if kind == "int":
        values = draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n))
        return pa.array(values, type=pa.int64(), mask=mask)
    if kind == "float":
        values = draw(st.lists(st.sampled_from([0.0, 1.0, 2.5, -1.0, float("nan"), float("inf"), 3.0]),
                               min_size=n, max_size=n))
        return pa.array(values, type=pa.float64(), mask=mask)
    if kind == "string":
        return pa.array(draw(st.lists(st.sampled_from(["a", "b", "", "1", "3"]), min_size=n, max_size=n)),
                        type=pa.string(), mask=mask)
    if kind == "bool":
        return pa.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), type=pa.bool_(), mask=mask)
    if kind == "timestamp":
        return pa.array(np.arange(0, n).astype("datetime64[s]"))
    return pa.nulls(n)


@st.composite
def parquet_tables(draw, names):
    n = draw(st.integers(0, 5))
    columns = draw(st.lists(st.sampled_from(names), min_size=1, max_size=5, unique=True))
    return pa.table({c: _column(draw, n) for c in columns})


@SETTINGS
@given(table=parquet_tables(PERSON_COLUMNS), edges=parquet_tables(EDGE_COLUMNS))
def test_generated_parquet_tables(table, edges):
    with tempfile.TemporaryDirectory() as tmp:
        persons = Path(tmp) / "persons.parquet"
        pq.write_table(table, persons)
        _check(lambda: from_tables(persons), persons)
        edge_path = Path(tmp) / "edges.parquet"
        pq.write_table(edges, edge_path)
        _check(lambda: from_edgelist(edge_path, default_age=30.0), edge_path)
        _check(lambda: from_edgelist(edge_path, persons=persons), Path(tmp))


@settings(max_examples=max(30, EXAMPLES // 2), deadline=None)
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".parquet", ".csv", ".graphml", ".gml", ".dat"]))
def test_random_bytes(data, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{suffix}"
        path.write_bytes(data)
        if suffix in (".graphml", ".gml"):
            _check(lambda: from_networkx(path, default_age=30.0), path)
        elif suffix == ".dat":
            _check(lambda: from_sociopatterns(path, default_age=30.0), path)
        else:
            _check(lambda: from_tables(path), path)
            _check(lambda: from_edgelist(path, default_age=30.0), path)


# -----------------------------------------------------------------------------------------
# Mixed id kinds: one non-integer id among integers is an error naming the file, row and value
# -----------------------------------------------------------------------------------------

import pytest  # noqa: E402

from lpm_graph.data import original_ids  # noqa: E402
from lpm_graph.data.readers import DataFileError  # noqa: E402

FIX = "prefix every id"


def _raises_naming(build, *parts):
    with pytest.raises(DataFileError) as info:
        build()
    msg = str(info.value)
    for part in (*parts, FIX):
        assert part in msg, msg
    return msg


def test_a_person_id_among_integers_that_is_not_one_names_its_row(tmp_path):
    path = tmp_path / "persons.csv"
    path.write_text("person_id,age\n1,30\n2,40\nxx,50\n4,60\n")
    _raises_naming(lambda: from_tables(path), "persons.csv'", "row 3 (line 4)", "column 'person_id'",
                   "id 'xx' is not an integer", "3 of the column's 4 ids are integers")


def test_a_venue_id_among_integers_that_is_not_one_names_its_row(tmp_path):
    path = tmp_path / "persons.csv"
    path.write_text("person_id,age,household_id\n1,30,10\n2,40,h11\n3,50,10\n4,60,12\n")
    _raises_naming(lambda: from_tables(path), "row 2 (line 3)", "column 'household_id'", "id 'h11'")


def test_a_combined_venue_table_checks_each_type_on_its_own(tmp_path):
    persons, venues = tmp_path / "persons.csv", tmp_path / "venues.csv"
    persons.write_text("person_id,age,household_id,school_id\n1,30,H1,\n2,8,H2,7\n")
    venues.write_text("venue_id,type\nH1,household\nH2,household\n7,school\n8,school\n")
    data = from_tables(persons, venues)  # households by name, schools by number: each type one kind
    assert list(original_ids(data, "household")) == ["H1", "H2"]
    venues.write_text("venue_id,type\nH1,household\nH2,household\n7,school\nS8,school\n9,school\n")
    _raises_naming(lambda: from_tables(persons, venues), "venues.csv'", "row 4 (line 5)", "id 'S8'",
                   "of the 'school' venues' 3 ids are integers")


def test_an_edge_list_endpoint_among_integers_that_is_not_one_names_its_row(tmp_path):
    path = tmp_path / "edges.csv"
    path.write_text("src,dst\n1,2\n2,abc\n3,1\n")
    _raises_naming(lambda: from_edgelist(path, default_age=30.0), "edges.csv'", "row 2 (line 3)",
                   "column 'dst'", "id 'abc' is not an integer")


def test_edge_list_columns_of_different_kinds_are_an_error(tmp_path):
    path = tmp_path / "edges.csv"
    path.write_text("src,dst\n1,a\n2,b\n")
    _raises_naming(lambda: from_edgelist(path, default_age=30.0), "row 1 (line 2)", "column 'dst'", "id 'a'",
                   "the ids of column 'src' are integers")


def test_a_sociopatterns_id_among_integers_that_is_not_one_names_its_line(tmp_path):
    path = tmp_path / "contacts.dat"
    path.write_text("20 1 2\n40 2 3\n60 xx 1\n80 3 1\n")
    _raises_naming(lambda: from_sociopatterns(path, default_age=10.0), "contacts.dat'", "line 3", "column 'i'",
                   "id 'xx' is not an integer")


def test_networkx_node_ids_of_mixed_kinds_name_the_node(tmp_path):
    import networkx as nx

    graph = nx.Graph([(1, 2), (2, 3), (3, "abc")])
    _raises_naming(lambda: from_networkx(graph, default_age=30.0), "node 'abc' is a string",
                   "3 of the 4 nodes are integers")
    path = tmp_path / "g.graphml"
    nx.write_graphml(nx.Graph([("1", "2"), ("2", "abc")]), path)  # GraphML ids are text
    _raises_naming(lambda: from_networkx(path=path, default_age=30.0), "g.graphml", "node 'abc' is not an integer")


def test_ids_of_one_kind_stay_valid(tmp_path):
    import networkx as nx

    persons = tmp_path / "persons.csv"
    persons.write_text("person_id,age\np2,30\np1,40\np10,50\n")
    assert list(original_ids(from_tables(persons), "person")) == ["p2", "p1", "p10"]
    edges = tmp_path / "edges.csv"
    edges.write_text("src,dst\na,b\nb,c\n")
    assert list(original_ids(from_edgelist(edges, default_age=30.0), "person")) == ["a", "b", "c"]
    contacts = tmp_path / "contacts.dat"
    contacts.write_text("20 x y\n40 y z\n")
    assert from_sociopatterns(contacts, default_age=10.0)["person"].num_nodes == 3
    assert from_networkx(nx.Graph([("a", "b")]), default_age=30.0)["person"].num_nodes == 2
    # integers with spaces or leading zeros are integers to the CSV reader: uid = the id
    spaced = tmp_path / "spaced.csv"
    spaced.write_text("person_id,age\n 7,30\n007 ,40\n12,50\n")
    with pytest.raises(DataFileError, match="duplicate person id 7"):
        from_tables(spaced)
    spaced.write_text("person_id,age\n 7,30\n008 ,40\n12,50\n")
    assert from_tables(spaced)["person"].uid.tolist() == [7, 8, 12]
    # a Parquet column of integers written as text is one kind: the strings are kept
    path = tmp_path / "persons.parquet"
    pq.write_table(pa.table({"person_id": ["1", "2", "10"], "age": [30.0, 40.0, 50.0]}), path)
    assert list(original_ids(from_tables(path), "person")) == ["1", "2", "10"]
