"""Population tables (CSV or Parquet) to a population graph, and back.

**Person table** (one row per person):

* ``person_id`` (``id_column``): unique integer or string ids, one kind per column (a
  non-integer id among integers is an error naming its row: :mod:`lpm_graph.data.readers`);
* ``age`` (``age_column``): years, a number >= 0 (or ``default_age`` for all when the
  table has none);
* one column per venue type holding the person's venue id, empty/null for none. By
  default every column named ``<type>_id`` (other than the id column) is one, e.g.
  ``household_id, school_id, workplace_id, community_id``; ``venue_columns`` maps
  types to columns explicitly (then other ``*_id`` columns are attributes);
* any other column becomes a person attribute of the same name (conventions in
  :mod:`lpm_graph.data.assemble`: numbers as tensors, strings as codes + categories).

**Venue tables** (optional), either one table with columns ``venue_id`` and ``type``
(``venue_id_column``, ``venue_type_column``) or a mapping ``{type: table}`` with a
``venue_id`` column each. Venue ids are unique within a type; other columns become
venue attributes. Every venue id a person names must be in the venue table of its
type; venues nobody belongs to are kept (size 0). Without a venue table, a type's
venues are the distinct ids of its person column (sorted). The schema's ``size`` is
always the member count; a venue table's own ``size`` column is kept as
``table_size`` (and written back as ``size`` by :func:`to_tables`).

:func:`to_tables` / :func:`write_tables` give the tables back with the original ids,
so tables -> graph -> tables preserves ids, attributes and memberships.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from torch_geometric.data import HeteroData

from lpm_graph.data.assemble import (
    CATEGORIES_SUFFIX,
    PERSON,
    IdIndex,
    add_membership,
    add_nodes,
    as_tensor,
    attribute_names,
    attribute_values,
    check_unique,
    original_ids,
    unique_ids,
)
from lpm_graph.data.cache import cached_build
from lpm_graph.data.readers import (
    DataFileError,
    Source,
    attribute_column,
    check_id_kinds,
    id_column,
    numeric_column,
    read_table,
)
from lpm_graph.data.synthetic import MEMBER_OF
from lpm_graph.data.validate import validate_population
from lpm_graph.errors import ConfigError

__all__ = ["PersonTable", "read_person_table", "from_tables", "to_tables", "write_tables"]

BUILDER_VERSION = 1
_PERSON_RESERVED = ("num_nodes", "uid", "original_id")
_VENUE_RESERVED = ("num_nodes", "uid", "original_id", "table_size")


@dataclass
class PersonTable:
    """A validated person table: ids, ages, attributes and venue memberships (nullable ids)."""

    source: Source
    ids: pa.Array
    age: np.ndarray
    attributes: dict = field(default_factory=dict)
    memberships: dict = field(default_factory=dict)  # venue type -> (column, nullable id array)


@dataclass
class VenueTable:
    source: Source
    ids: pa.Array
    attributes: dict = field(default_factory=dict)


def _str_option(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"population.{name} must be a non-empty column name, got {value!r}")
    return value


def _default_age(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise ConfigError(f"population.default_age must be a number of years >= 0 or null, got {value!r}")
    return float(value)


def _duplicate_error(source: Source, column: str, what: str):
    def describe(value, first, second):
        return source.error(f"duplicate {what} {value!r} (also at {source.row(first)}); ids must be unique",
                            column=column, row=second)
    return describe


def _check_attribute_name(source: Source, name: str, reserved, taken) -> None:
    if name in reserved or name.endswith(CATEGORIES_SUFFIX):
        raise source.error(f"column name {name!r} is reserved for the graph's own attributes "
                           f"({list(reserved)} and '*{CATEGORIES_SUFFIX}'); rename the column", column=name)
    if name in taken:
        raise source.error(f"column name {name!r} collides with the attribute {name!r}; rename the column",
                           column=name)


def read_person_table(persons: str | os.PathLike | Source, *, id_column: str = "person_id",
                      age_column: str = "age", venue_columns: Mapping[str, str] | None = None,
                      default_age: float | None = None) -> PersonTable:
    """Read and check a person table (columns described in the module docstring).

    Raises:
        DataFileError: missing id/age columns, duplicate or missing ids, non-numeric,
            negative or missing ages, unsupported attribute types (naming file, row, column).
    """
    id_column = _str_option("id_column", id_column)
    age_column = _str_option("age_column", age_column)
    default_age = _default_age(default_age)
    source = persons if isinstance(persons, Source) else read_table(persons, "person table")
    columns = source.columns
    if age_column in columns or default_age is None:
        source.require([id_column, age_column], "person id and age in years; or set default_age")
    else:
        source.require([id_column], "person id")
    if venue_columns is None:
        venue_columns = {c[:-3]: c for c in columns if c.endswith("_id") and c != id_column and len(c) > 3}
        if PERSON in venue_columns:
            raise source.error(f"column 'person_id' would be read as a venue type 'person' (the id column is "
                               f"{id_column!r}); set id_column='person_id' or pass venue_columns explicitly",
                               column="person_id")
    else:
        if not isinstance(venue_columns, Mapping):
            raise ConfigError(f"population.venue_columns must map venue types to columns, got {venue_columns!r}")
        venue_columns = {_venue_type(str(vt), "population.venue_columns"): c for vt, c in venue_columns.items()}
        source.require(list(venue_columns.values()), "venue membership columns from venue_columns")
    ids = id_column_checked(source, id_column, "person id")
    if age_column in columns:
        age = numeric_column(source, age_column, min_value=0.0, what="age in years")
    else:
        age = np.full(source.num_rows, default_age)
    memberships = {vt: (col, id_column_nullable(source, col)) for vt, col in venue_columns.items()}
    skip = {id_column, age_column, *venue_columns.values()}
    attributes: dict = {}
    for name in columns:
        if name in skip:
            continue
        _check_attribute_name(source, name, _PERSON_RESERVED + ("age",), attributes)
        attributes[name] = attribute_column(source, name)
    return PersonTable(source, ids, age.astype(np.float32), attributes, memberships)


def id_column_checked(source: Source, column: str, what: str) -> pa.Array:
    ids = id_column(source, column)
    check_unique(ids, _duplicate_error(source, column, what))
    return ids


def id_column_nullable(source: Source, column: str) -> pa.Array:
    return id_column(source, column, nullable=True)


def _read_venues(venues, *, id_col: str, type_col: str) -> dict[str, VenueTable]:
    """Venue tables by type, from one combined table or a ``{type: path}`` mapping."""
    if venues is None:
        return {}
    out: dict[str, VenueTable] = {}
    if isinstance(venues, Mapping):
        for vt, path in venues.items():
            source = read_table(path, f"venue table for {vt!r}")
            source.require([id_col], "venue id")
            out[_venue_type(str(vt), f"venue table {source.name!r}")] = _venue_table(source, None, id_col, {id_col})
        return out
    source = read_table(venues, "venue table")
    source.require([id_col, type_col], "venue id and venue type")
    types = source.column(type_col)
    if pa.types.is_dictionary(types.type):
        types = types.cast(types.type.value_type)
    if pa.types.is_null(types.type):  # an all-empty column
        types = pa.nulls(len(types), pa.string())
    if not (pa.types.is_string(types.type) or pa.types.is_large_string(types.type)):
        raise source.error(f"must hold venue type names (strings such as 'household'), got {types.type}",
                           column=type_col)
    types = types.cast(pa.string())
    missing = ~np.asarray(pc.fill_null(pc.not_equal(types, ""), False))
    if missing.any():
        raise source.error("missing venue type; every venue needs one", column=type_col,
                           row=int(np.flatnonzero(missing)[0]))
    for vt in sorted(pc.unique(types).to_pylist()):
        rows = np.flatnonzero(np.asarray(pc.equal(types, pa.scalar(vt))))
        out[_venue_type(vt, source.where(type_col))] = _venue_table(source, rows, id_col, {id_col, type_col}, vt)
    return out


def _venue_type(name: str, where: str) -> str:
    if not name or name == PERSON:
        raise DataFileError(f"{where}: {name!r} cannot be a venue type name (it is empty or the person node "
                            "type); rename it")
    return name


def _venue_attributes(source: Source, rows: np.ndarray | None, exclude: set) -> dict:
    """Venue attributes; a ``size`` column is kept as ``table_size`` (``size`` is the member count)."""
    attributes: dict = {}
    for name in source.columns:
        if name in exclude:
            continue
        if name == "size":
            target = "table_size"
            if target in source.columns:
                raise source.error("has both 'size' and 'table_size'; 'size' is stored as 'table_size' "
                                   "(the graph's size is the member count): drop or rename one", column=name)
        else:
            target = name
            _check_attribute_name(source, name, _VENUE_RESERVED, attributes)
        values, categories = attribute_column(source, name)
        attributes[target] = (values if rows is None else values[rows], categories)
    return attributes


def _venue_table(source: Source, rows: np.ndarray | None, id_col: str, exclude: set,
                 venue_type: str = "") -> VenueTable:
    if rows is None:
        ids = id_column_checked(source, id_col, "venue id")
    else:
        # one column holds every type's ids: each type is one kind (H1, H2 next to schools 1, 2 is fine)
        ids = id_column(source, id_col, check_kinds=False).take(pa.array(rows, type=pa.int64()))
        check_id_kinds(source, id_col, ids, rows, scope=f"the {venue_type!r} venues'")

        def describe(value, first, second):
            return source.error(f"duplicate venue id {value!r} within its type (also at "
                                f"{source.row(int(rows[first]))}); ids must be unique per type",
                                column=id_col, row=int(rows[second]))

        check_unique(ids, describe)
    return VenueTable(source, ids, _venue_attributes(source, rows, exclude))


def assemble_tables(people: PersonTable, venue_tables: Mapping[str, VenueTable]) -> HeteroData:
    """The population graph of a checked person table and venue tables (no file access)."""
    unknown_types = sorted(set(venue_tables) - set(people.memberships))
    if unknown_types:
        table = venue_tables[unknown_types[0]].source
        raise table.error(f"lists venue type(s) {unknown_types} but the person table "
                          f"{people.source.name!r} has no column for them (expected "
                          f"{[t + '_id' for t in unknown_types]}, or map them with venue_columns); "
                          f"venue types from the person table: {sorted(people.memberships)}")
    resolved = {}
    for vt, (column, member_ids) in people.memberships.items():
        present = np.asarray(member_ids.is_valid())
        table = venue_tables.get(vt)
        if table is None:
            venue_ids, attrs = unique_ids(member_ids), {}
        else:
            venue_ids, attrs = table.ids, table.attributes
        index = IdIndex(venue_ids).lookup(member_ids)
        unresolved = present & (index < 0)
        if unresolved.any():
            row = int(np.flatnonzero(unresolved)[0])
            raise people.source.error(
                f"{vt} id {member_ids[row].as_py()!r} is not in the {vt} table {table.source.name!r} "
                f"({int(unresolved.sum())} row(s) name unknown {vt} ids); every venue id must be listed "
                f"in its venue table", column=column, row=row)
        resolved[vt] = (venue_ids, attrs, np.flatnonzero(present), index[present])

    data = HeteroData()
    add_nodes(data, PERSON, people.ids, people.attributes)
    data[PERSON].age = as_tensor(people.age)
    for vt, (venue_ids, attrs, person_index, venue_index) in resolved.items():
        add_nodes(data, vt, venue_ids, attrs)
        add_membership(data, vt, person_index, venue_index)
    validate_population(data)
    return data


def _venue_inputs(venues) -> dict[str, str]:
    if venues is None:
        return {}
    if isinstance(venues, Mapping):
        return {f"venues.{vt}": str(path) for vt, path in venues.items()}
    return {"venues": str(venues)}


def _resolved_inputs(persons, venues) -> dict[str, str]:
    from lpm_graph.data.readers import resolve_input

    inputs = {"persons": str(resolve_input(persons, "person table"))}
    for name, path in _venue_inputs(venues).items():
        inputs[name] = str(resolve_input(path, name.replace(".", " table for ")))
    return inputs


def from_tables(persons: str | os.PathLike, venues: str | os.PathLike | Mapping[str, str] | None = None, *,
                id_column: str = "person_id", age_column: str = "age",
                venue_columns: Mapping[str, str] | None = None, venue_id_column: str = "venue_id",
                venue_type_column: str = "type", default_age: float | None = None,
                cache_dir: str | os.PathLike | None = None) -> HeteroData:
    """Build a population graph from a person table and optional venue tables (see module docstring).

    Args:
        persons: person table, CSV or Parquet.
        venues: one venue table with a type column, a mapping ``{type: table}``, or None.
        id_column, age_column: person id and age columns.
        venue_columns: ``{venue type: person column}``; default every ``<type>_id`` column.
        venue_id_column, venue_type_column: columns of the venue tables.
        default_age: age of everyone when the person table has no age column.
        cache_dir: cache root (:mod:`lpm_graph.data.cache`); None builds without caching.

    Raises:
        DataFileError: on any malformed input, before the graph is built.
    """
    options = {
        "id_column": _str_option("id_column", id_column),
        "age_column": _str_option("age_column", age_column),
        "venue_columns": None if venue_columns is None else dict(venue_columns),
        "venue_id_column": _str_option("venue_id_column", venue_id_column),
        "venue_type_column": _str_option("venue_type_column", venue_type_column),
        "default_age": _default_age(default_age),
        "venues_layout": None if venues is None else ("by_type" if isinstance(venues, Mapping) else "combined"),
    }
    inputs = _resolved_inputs(persons, venues)

    def build() -> HeteroData:
        people = read_person_table(inputs["persons"], id_column=id_column, age_column=age_column,
                                   venue_columns=venue_columns, default_age=default_age)
        if isinstance(venues, Mapping):
            venue_paths = {vt: inputs[f"venues.{vt}"] for vt in venues}
        else:
            venue_paths = inputs.get("venues")
        tables = _read_venues(venue_paths, id_col=venue_id_column, type_col=venue_type_column)
        return assemble_tables(people, tables)

    return cached_build("tables", inputs, options, build, cache_dir, BUILDER_VERSION)


# -----------------------------------------------------------------------------------------
# Graph -> tables
# -----------------------------------------------------------------------------------------


def _id_series(ids: np.ndarray, present: np.ndarray | None = None) -> pd.Series:
    """Ids as a pandas column (nullable Int64 for integers, str with missing values otherwise)."""
    if ids.dtype == object:
        values = pd.array(ids, dtype="string")
    else:
        values = pd.array(ids, dtype="Int64")
    series = pd.Series(values)
    if present is not None:
        series[~present] = pd.NA
    return series


def _attribute_series(data: HeteroData, node_type: str, name: str) -> pd.Series:
    values = attribute_values(data, node_type, name)
    return pd.Series(values)


def to_tables(data: HeteroData) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The person table and one venue table per venue type of a population graph.

    Persons: ``person_id`` (original ids), ``age``, one ``<type>_id`` column per venue
    type (original venue ids, missing for no membership) and the person attributes
    (encoded strings decoded). Venues: ``venue_id`` and the venue attributes
    (``table_size`` written back as ``size``).

    Raises:
        PopulationGraphError: if a person belongs to more than one venue of a type
            (a person table holds one venue per type).
    """
    validate_population(data)
    n = int(data[PERSON].num_nodes)
    persons = {"person_id": _id_series(original_ids(data, PERSON)),
               "age": pd.Series(data[PERSON].age.cpu().numpy())}
    venue_frames: dict[str, pd.DataFrame] = {}
    for et in data.edge_types:
        if et[0] != PERSON or et[1] != MEMBER_OF:
            continue
        vt = et[2]
        person, venue = data[et].edge_index.cpu().numpy()
        counts = np.bincount(person, minlength=n)
        if n and counts.max() > 1:
            who = int(np.argmax(counts > 1))
            raise DataFileError(f"cannot write a person table: person {original_ids(data, PERSON)[who]!r} "
                                f"belongs to {int(counts[who])} {vt} venues, but a person table holds one "
                                f"{vt} per person")
        venue_ids = original_ids(data, vt)
        column = np.zeros(n, dtype=venue_ids.dtype) if venue_ids.dtype != object else np.full(n, None, object)
        column[person] = venue_ids[venue]
        present = np.zeros(n, dtype=bool)
        present[person] = True
        persons[f"{vt}_id"] = _id_series(column, present)
        frame = {"venue_id": _id_series(venue_ids)}
        for name in attribute_names(data, vt):
            frame["size" if name == "table_size" else name] = _attribute_series(data, vt, name)
        venue_frames[vt] = pd.DataFrame(frame)
    for name in attribute_names(data, PERSON):
        persons[name] = _attribute_series(data, PERSON, name)
    return pd.DataFrame(persons), venue_frames


def write_tables(data: HeteroData, directory: str | os.PathLike, format: str = "parquet") -> dict:
    """Write :func:`to_tables` to ``directory`` as ``persons.<ext>`` and ``<venue type>.<ext>``.

    Returns ``{"persons": path, "venues": {type: path}}``, the arguments of
    :func:`from_tables` that read them back.
    """
    if format not in ("parquet", "csv"):
        raise ConfigError(f"format must be 'parquet' or 'csv', got {format!r}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    persons, venues = to_tables(data)

    def write(frame: pd.DataFrame, path: Path) -> Path:
        if format == "parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
        return path

    paths = {"persons": write(persons, out / f"persons.{format}"), "venues": {}}
    for vt, frame in venues.items():
        paths["venues"][vt] = write(frame, out / f"{vt}.{format}")
    return paths
