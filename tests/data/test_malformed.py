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
