"""Population tables -> graph -> tables: ids, attributes, memberships; clear errors on bad files."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from lpm_graph.data import generate_population, validate_population
from lpm_graph.data.assemble import attribute_values, original_ids
from lpm_graph.data.readers import DataFileError, MissingInputError
from lpm_graph.data.tables import from_tables, to_tables, write_tables
from lpm_graph.errors import PopulationGraphError


@pytest.fixture(scope="module")
def population():
    data = generate_population(400, seed=21)
    rng = np.random.default_rng(0)
    n = data["person"].num_nodes
    persons, venues = to_tables(data)
    persons["sex"] = pd.array(rng.choice(["F", "M", None], size=n, p=[0.45, 0.45, 0.1]), dtype="string")
    persons["income"] = rng.normal(50_000, 10_000, n)
    persons["income"] = persons["income"].where(rng.random(n) > 0.1)  # some missing
    persons["smoker"] = rng.random(n) < 0.2
    persons["visits"] = rng.integers(0, 9, n)
    venues["household"]["floor"] = rng.integers(0, 30, len(venues["household"]))
    return persons, venues


def _write(frames, directory, fmt):
    persons, venues = frames
    paths = {}
    write = (lambda f, p: f.to_parquet(p, index=False)) if fmt == "parquet" else (lambda f, p: f.to_csv(p, index=False))
    write(persons, directory / f"persons.{fmt}")
    for vt, frame in venues.items():
        write(frame, directory / f"{vt}.{fmt}")
        paths[vt] = str(directory / f"{vt}.{fmt}")
    return str(directory / f"persons.{fmt}"), paths


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_tables_round_trip_preserves_ids_attributes_and_memberships(tmp_path, population, fmt):
    persons_path, venue_paths = _write(population, tmp_path, fmt)
    data = from_tables(persons_path, venue_paths)
    validate_population(data)
    persons, venues = to_tables(data)
    expected, expected_venues = population
    pd.testing.assert_frame_equal(persons[expected.columns].drop(columns=["sex"]), expected.drop(columns=["sex"]),
                                  check_dtype=False)
    assert list(persons["sex"].astype(object).where(persons["sex"].notna(), None)) == \
        list(expected["sex"].astype(object).where(expected["sex"].notna(), None))
    for vt, frame in expected_venues.items():
        pd.testing.assert_frame_equal(venues[vt][frame.columns], frame, check_dtype=False)
    # integer ids are the uids; the categorical keeps its categories
    assert torch.equal(data["person"].uid, torch.as_tensor(expected["person_id"].to_numpy(np.int64)))
    assert json.loads(data["person"].sex_categories) == ["F", "M"]
    assert data["person"].smoker.dtype == torch.bool and data["person"].visits.dtype == torch.int64


def test_graph_tables_graph_keeps_the_same_memberships(tmp_path):
    original = generate_population(300, seed=4)
    paths = write_tables(original, tmp_path, "csv")
    again = from_tables(paths["persons"], {vt: str(p) for vt, p in paths["venues"].items()})
    for vt in ("household", "school", "workplace", "community"):
        et = ("person", "member_of", vt)
        assert torch.equal(again[et].edge_index, original[et].edge_index)
        assert torch.equal(again[vt].size, original[vt].size)
    assert torch.equal(again["person"].age, original["person"].age)


def test_string_and_negative_ids_are_kept_and_uids_are_ranks(tmp_path):
    pd.DataFrame({"person_id": ["carol", "alice", "bob"], "age": [30, 40.5, 8],
                  "household_id": [-7, 12, -7]}).to_csv(tmp_path / "p.csv", index=False)
    data = from_tables(tmp_path / "p.csv")
    assert list(original_ids(data, "person")) == ["carol", "alice", "bob"]  # row order
    assert data["person"].uid.tolist() == [2, 0, 1]                       # rank of the id
    assert list(original_ids(data, "household")) == [-7, 12]              # sorted distinct ids
    assert data["household"].uid.tolist() == [0, 1]
    assert data["household"].size.tolist() == [2, 1]
    persons, _ = to_tables(data)
    assert list(persons["household_id"]) == [-7, 12, -7]
    assert data["person"].age.dtype == torch.float32


def test_venue_table_adds_unused_venues_attributes_and_keeps_its_size_column(tmp_path):
    pd.DataFrame({"person_id": [1, 2, 3], "age": [5, 6, 40], "school_id": ["s1", "s1", None]}) \
        .to_csv(tmp_path / "p.csv", index=False)
    pd.DataFrame({"venue_id": ["s1", "s2"], "type": ["school", "school"], "size": [400, 250],
                  "district": ["north", None]}).to_csv(tmp_path / "v.csv", index=False)
    data = from_tables(tmp_path / "p.csv", tmp_path / "v.csv")
    school = data["school"]
    assert school.num_nodes == 2 and school.size.tolist() == [2, 0]    # size = members
    assert school.table_size.tolist() == [400, 250]
    assert list(attribute_values(data, "school", "district").astype(object)) == ["north", np.nan]
    _, venues = to_tables(data)
    assert venues["school"]["size"].tolist() == [400, 250]             # written back under its name


def test_default_age_and_explicit_venue_columns(tmp_path):
    pd.DataFrame({"id": [5, 6], "hh": [1, 1], "census_tract_id": [9, 9]}).to_csv(tmp_path / "p.csv", index=False)
    data = from_tables(tmp_path / "p.csv", id_column="id", venue_columns={"household": "hh"}, default_age=33)
    assert data["person"].age.tolist() == [33.0, 33.0]
    assert data.node_types == ["person", "household"]
    assert data["person"].census_tract_id.tolist() == [9, 9]   # not a venue type when mapped explicitly


def _csv(tmp_path, text, name="p.csv"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize("text, match", [
    ("person_id,years\n1,3\n", r"missing required column\(s\) \['age'\].*columns present: \['person_id', 'years'\]"),
    ("person_id,age\n1,3\n2,4\n1,5\n", r"row 3 \(line 4\), column 'person_id': duplicate person id 1 "
                                        r"\(also at row 1 \(line 2\)\)"),
    ("person_id,age\n1,3\n2,-4\n", r"row 2 \(line 3\), column 'age': age in years -4 is below 0; expected >= 0"),
    ("person_id,age\n1,3\n2,\n", r"row 2 \(line 3\), column 'age': missing age"),
    ("person_id,age\n1,3\n2,old\n", r"row 2 \(line 3\), column 'age': expected a number \(age in years\), got 'old'"),
    ("person_id,age\n1,3\n2,4,5\n", r"line 3: cannot parse '2,4,5': expected 2 comma-separated fields"),
    ("person_id,age\n1.5,3\n", r"row 1 \(line 2\), column 'person_id': id 1.5 is not an integer"),
    ("person_id,age\n,3\n", r"row 1 \(line 2\), column 'person_id': missing id"),
    ("", r"the file is empty"),
    ("person_id,age\n", r"has a header but no data rows"),
    ("person_id,age,age\n1,2,3\n", r"duplicate column name\(s\) \['age'\]"),
    (b"person_id,age,name\n1,2,\xff\xfe\n", r"column 'name'.*not valid UTF-8"),
    ("person_id,age,uid\n1,2,3\n", r"column 'uid'.*reserved"),
    ("person_id,age,sex,sex_categories\n1,2,F,x\n", r"column 'sex_categories'.*reserved"),
])
def test_bad_person_tables_name_file_row_and_column(tmp_path, text, match):
    path = _csv(tmp_path, text)
    with pytest.raises(DataFileError, match=match) as info:
        from_tables(path)
    assert str(path) in str(info.value)


def test_unresolved_venue_id_names_the_person_row_and_the_venue_table(tmp_path):
    p = _csv(tmp_path, "person_id,age,household_id\n1,30,h1\n2,31,h9\n3,32,h9\n")
    v = _csv(tmp_path, "venue_id,type\nh1,household\n", "v.csv")
    with pytest.raises(DataFileError, match=r"row 2 \(line 3\), column 'household_id': household id 'h9' is not in "
                                            r"the household table .*v.csv' \(2 row\(s\) name unknown"):
        from_tables(p, v)


@pytest.mark.parametrize("venues, match", [
    ("venue_id,type\nh1,household\nh1,household\n", r"row 2 \(line 3\), column 'venue_id': duplicate venue id 'h1'"),
    ("venue_id,type\nh1,household\nc1,church\n", r"lists venue type\(s\) \['church'\] but the person table"),
    ("venue_id,type\nh1,\n", r"row 1 \(line 2\), column 'type': missing venue type"),
    ("venue_id\nh1\n", r"missing required column\(s\) \['type'\]"),
    ("venue_id,type,size,table_size\nh1,household,1,2\n", r"has both 'size' and 'table_size'"),
])
def test_bad_venue_tables(tmp_path, venues, match):
    p = _csv(tmp_path, "person_id,age,household_id\n1,30,h1\n")
    with pytest.raises(DataFileError, match=match):
        from_tables(p, _csv(tmp_path, venues, "v.csv"))


def test_missing_unknown_and_unreadable_files(tmp_path):
    with pytest.raises(MissingInputError, match="does not exist") as info:
        from_tables(tmp_path / "nowhere.csv")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, PopulationGraphError)
    with pytest.raises(DataFileError, match=r"unknown file type '.xlsx'"):
        from_tables(_csv(tmp_path, "x", "p.xlsx"))
    with pytest.raises(DataFileError, match="not a readable Parquet file"):
        from_tables(_csv(tmp_path, "person_id,age\n1,2\n", "p.parquet"))


def test_unsupported_attribute_type_in_parquet_names_the_column(tmp_path):
    frame = pd.DataFrame({"person_id": [1, 2], "age": [3.0, 4.0],
                          "born": pd.to_datetime(["2000-01-01", "2001-01-01"])})
    frame.to_parquet(tmp_path / "p.parquet")
    with pytest.raises(DataFileError, match=r"column 'born': attribute column of type timestamp"):
        from_tables(tmp_path / "p.parquet")


def test_integer_valued_float_ids_from_pandas_are_integers(tmp_path):
    # pandas writes an integer column with missing values as float64
    pd.DataFrame({"person_id": [1, 2, 3], "age": [7, 8, 40], "school_id": [10.0, 10.0, np.nan]}) \
        .to_parquet(tmp_path / "p.parquet")
    data = from_tables(tmp_path / "p.parquet")
    assert original_ids(data, "school").tolist() == [10]
    assert data["person", "member_of", "school"].edge_index.tolist() == [[0, 1], [0, 0]]


def test_person_with_two_venues_of_a_type_cannot_be_written_as_a_table():
    data = generate_population(50, seed=1)
    et = ("person", "member_of", "community")
    data[et].edge_index = torch.cat([data[et].edge_index, torch.tensor([[0], [0]])], 1)
    with pytest.raises(DataFileError, match="belongs to 2 community venues"):
        to_tables(data)


def test_relative_paths_fall_back_to_the_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # data/samples/... is not under the working directory
    data = from_tables("data/samples/tables/persons.csv", "data/samples/tables/venues.csv")
    assert data["person"].num_nodes == 300 and data["school"].size.tolist()[-1] == 0   # the unused school
