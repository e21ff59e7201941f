"""Contact edge lists (CSV or Parquet) to a population graph, and back.

**Edge table** (one row per contact record):

* ``src``, ``dst`` (``src_column``, ``dst_column``): person ids, integers or strings, one
  kind in both columns (a non-integer id among integers is an error naming its row);
* ``weight`` (optional): a finite number >= 0 (contact intensity, e.g. hours);
  without it every record weighs 1;
* ``layer`` (optional): the relation of the record, e.g. ``home``/``work``: each layer
  becomes its own edge type ``('person', <layer>, 'person')``; without it all records
  are ``('person', relation, 'person')`` (default ``contact``);
* ``time`` or ``day`` (optional): an integer window index >= 0; the network becomes
  time-varying (:class:`~lpm_graph.core.graph.Graph` gives step ``t``
  the edges of window ``t mod period``).

Optional columns are used when present under these names; naming a column
explicitly (``weight_column=...``) makes it required.

With ``directed=False`` (default) a record ``a b`` is the contact ``{a, b}``, stored in
both directions. A file that lists a contact both ways (``a b`` and ``b a``, same layer
and window) is refused: each record would count as a contact of its own and double the
weight; such a file is already directed (``directed=true``). Duplicate records (same
endpoints, layer and time) merge by summing weights and self-loops are dropped, each
with a :class:`~lpm_graph.errors.PopulationDataWarning` giving the count.

People come from an optional **person table** (as in :mod:`lpm_graph.data.tables`,
with ages, attributes and venue memberships; every edge endpoint must be in it), or
else are the distinct endpoint ids (sorted), all aged ``default_age``.

Large files are read column-wise with pyarrow and converted with whole-array
operations; ``scripts/bench_data.py`` measures a 10M-edge Parquet import.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch_geometric.data import HeteroData

from lpm_graph.data.assemble import (
    PERSON,
    IdIndex,
    add_contacts,
    add_nodes,
    check_relation,
    original_ids,
    unique_ids,
)
from lpm_graph.data.cache import cached_build
from lpm_graph.data.readers import (
    DataFileError,
    Source,
    id_column,
    integer_column,
    numeric_column,
    read_table,
    resolve_input,
    same_id_kind,
)
from lpm_graph.data.tables import _default_age, _read_venues, _str_option, assemble_tables, read_person_table
from lpm_graph.data.validate import validate_population
from lpm_graph.errors import ConfigError

__all__ = ["EdgeRecords", "read_edges", "from_edgelist", "to_edgelist", "contact_graph"]

BUILDER_VERSION = 1
_AUTO = {"weight": ("weight",), "layer": ("layer",), "time": ("time", "day")}


class EdgeRecords:
    """Checked edge records: endpoint ids and optional weight, layer and time arrays."""

    def __init__(self, source: Source, src: pa.Array, dst: pa.Array, weight: np.ndarray | None,
                 layer: np.ndarray | None, layer_names: list[str], time: np.ndarray | None,
                 src_column: str, dst_column: str):
        self.source, self.src, self.dst = source, src, dst
        self.weight, self.layer, self.layer_names, self.time = weight, layer, layer_names, time
        self.src_column, self.dst_column = src_column, dst_column


def _optional(source: Source, given: str | None, kind: str) -> str | None:
    if given is not None:
        name = _str_option(f"{kind}_column", given)
        source.require([name], f"{kind} column named by {kind}_column")
        return name
    for name in _AUTO[kind]:
        if name in source.columns:
            return name
    return None


def _layers(source: Source, column: str, relation: str) -> tuple[np.ndarray, list[str]]:
    arr = source.column(column)
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if pa.types.is_integer(arr.type):
        arr = pc.cast(arr, pa.string())
    elif pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    if not pa.types.is_string(arr.type):
        raise source.error(f"must hold layer names (strings or integers), got {arr.type}", column=column)
    arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
    if arr.null_count:
        row = int(np.flatnonzero(~np.asarray(arr.is_valid()))[0])
        raise source.error("missing layer name; every record needs one (or drop the column)", column=column, row=row)
    names = pc.unique(arr)
    names = names.take(pc.array_sort_indices(names))
    for name in names.to_pylist():
        check_relation(name, source.where(column))
    codes = pc.index_in(arr, value_set=names).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, names.to_pylist()


def read_edges(edges: str | os.PathLike | Source, *, src_column: str = "src", dst_column: str = "dst",
               weight_column: str | None = None, layer_column: str | None = None,
               time_column: str | None = None, relation: str = "contact") -> EdgeRecords:
    """Read and check an edge table (columns in the module docstring).

    Raises:
        DataFileError: missing src/dst columns, missing or non-integer/string ids,
            negative/NaN/missing weights, negative or non-integer times, bad layer names.
    """
    src_column = _str_option("src_column", src_column)
    dst_column = _str_option("dst_column", dst_column)
    relation = check_relation(relation, "population.relation")
    source = edges if isinstance(edges, Source) else read_table(edges, "edge list")
    source.require([src_column, dst_column], "source and destination person ids")
    weight_name = _optional(source, weight_column, "weight")
    layer_name = _optional(source, layer_column, "layer")
    time_name = _optional(source, time_column, "time")
    src = id_column(source, src_column)
    dst = id_column(source, dst_column)
    same_id_kind(source, [(src_column, src), (dst_column, dst)])
    weight = None if weight_name is None else numeric_column(source, weight_name, min_value=0.0, what="weight")
    time = None if time_name is None else integer_column(source, time_name, min_value=0, what="time window")
    if layer_name is None:
        layer, names = None, [relation]
    else:
        layer, names = _layers(source, layer_name, relation)
    return EdgeRecords(source, src, dst, weight, layer, names, time, src_column, dst_column)


def _period(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"population.period must be a positive integer (windows per cycle) or null, got {value!r}")
    return int(value)


def contact_graph(records: EdgeRecords, data: HeteroData | None = None, *, directed: bool = False,
                  default_age: float | None = None, period: int | None = None,
                  warn_duplicates: bool = True, refuse_reversed: bool = False) -> HeteroData:
    """Add the contact records to ``data`` (whose persons they must name), or to a new graph of their endpoints.

    ``refuse_reversed``: an undirected list that also lists a record's reverse is an error
    (:func:`~lpm_graph.data.assemble.add_contacts`).
    """
    source = records.source
    if data is None:
        if default_age is None:
            raise ConfigError(f"{source.what} {source.name!r} gives no ages: set population.default_age "
                              "(years, for everyone) or give a person table with an age column "
                              "(population.persons)")
        nodes = unique_ids(records.src, records.dst)
        data = HeteroData()
        add_nodes(data, PERSON, nodes)
        data[PERSON].age = torch.full((len(nodes),), float(default_age), dtype=torch.float32)
        index = IdIndex(nodes)
        known = None
    else:
        nodes = None
        index = IdIndex(_person_ids(data))
        known = "the person table"
    src = index.lookup(records.src)
    dst = index.lookup(records.dst)
    for column, ids, idx in ((records.src_column, records.src, src), (records.dst_column, records.dst, dst)):
        unknown = idx < 0
        if unknown.any():
            row = int(np.flatnonzero(unknown)[0])
            raise source.error(f"person id {ids[row].as_py()!r} is not in {known or 'the graph'} "
                               f"({int(unknown.sum())} record(s) name unknown people); every edge must "
                               f"join known people", column=column, row=row)
    add_contacts(data, src, dst, weight=records.weight, time=records.time, layer=records.layer,
                 layer_names=records.layer_names, directed=directed, period=period,
                 label=f"{source.what} {source.name!r}", warn_duplicates=warn_duplicates,
                 refuse_reversed=refuse_reversed)
    validate_population(data)
    return data


def _person_ids(data: HeteroData) -> pa.Array:
    ids = original_ids(data, PERSON)
    return pa.array(ids.tolist() if ids.dtype == object else ids)


def from_edgelist(edges: str | os.PathLike, persons: str | os.PathLike | None = None,
                  venues: str | os.PathLike | Mapping[str, str] | None = None, *, directed: bool = False,
                  src_column: str = "src", dst_column: str = "dst", weight_column: str | None = None,
                  layer_column: str | None = None, time_column: str | None = None, relation: str = "contact",
                  period: int | None = None, default_age: float | None = None, id_column: str = "person_id",
                  age_column: str = "age", venue_columns: Mapping[str, str] | None = None,
                  cache_dir: str | os.PathLike | None = None) -> HeteroData:
    """Build a population graph from a contact edge list (see the module docstring).

    Args:
        edges: the edge table, CSV or Parquet.
        persons: optional person table (ids, ages, attributes, venue columns);
            ``venues``, ``id_column``, ``age_column``, ``venue_columns`` as in
            :func:`~lpm_graph.data.tables.from_tables`.
        directed: keep record direction; otherwise contacts are symmetric.
        src_column, dst_column: endpoint columns.
        weight_column, layer_column, time_column: optional columns (None: use
            ``weight``/``layer``/``time`` or ``day`` if present).
        relation: edge relation when there is no layer column.
        period: windows per cycle of a time-varying network (default: last window + 1).
        default_age: everyone's age when there is no person table.
        cache_dir: cache root; None builds without caching.
    """
    if not isinstance(directed, bool):
        raise ConfigError(f"population.directed must be true or false, got {directed!r}")
    options = {
        "directed": directed, "src_column": _str_option("src_column", src_column),
        "dst_column": _str_option("dst_column", dst_column), "weight_column": weight_column,
        "layer_column": layer_column, "time_column": time_column,
        "relation": check_relation(relation, "population.relation"), "period": _period(period),
        "default_age": _default_age(default_age), "id_column": id_column, "age_column": age_column,
        "venue_columns": None if venue_columns is None else dict(venue_columns),
        "venues_layout": None if venues is None else ("by_type" if isinstance(venues, Mapping) else "combined"),
    }
    if venues is not None and persons is None:
        raise ConfigError("population.venues needs population.persons (venue memberships are person columns)")
    inputs = {"edges": str(resolve_input(edges, "edge list"))}
    if persons is not None:
        inputs["persons"] = str(resolve_input(persons, "person table"))
    if isinstance(venues, Mapping):
        inputs.update({f"venues.{vt}": str(resolve_input(p, f"venue table for {vt!r}")) for vt, p in venues.items()})
    elif venues is not None:
        inputs["venues"] = str(resolve_input(venues, "venue table"))

    def build() -> HeteroData:
        records = read_edges(inputs["edges"], src_column=src_column, dst_column=dst_column,
                             weight_column=weight_column, layer_column=layer_column, time_column=time_column,
                             relation=relation)
        data = None
        if persons is not None:
            people = read_person_table(inputs["persons"], id_column=id_column, age_column=age_column,
                                       venue_columns=venue_columns, default_age=default_age)
            paths = ({vt: inputs[f"venues.{vt}"] for vt in venues} if isinstance(venues, Mapping)
                     else inputs.get("venues"))
            data = assemble_tables(people, _read_venues(paths, id_col="venue_id", type_col="type"))
        return contact_graph(records, data, directed=directed, default_age=default_age, period=_period(period),
                             refuse_reversed=True)

    return cached_build("edgelist", inputs, options, build, cache_dir, BUILDER_VERSION)


def to_edgelist(data: HeteroData) -> pd.DataFrame:
    """All person -> person edges as a table: ``src, dst, weight, layer[, time]`` with original ids.

    Undirected edge types (``undirected=True``, stored both ways) give each contact once.
    """
    validate_population(data)
    ids = original_ids(data, PERSON)
    frames = []
    for et in data.edge_types:
        if et[0] != PERSON or et[2] != PERSON:
            continue
        store = data[et]
        ei = store.edge_index.cpu().numpy()
        weight = (store.edge_weight.cpu().numpy().astype(np.float64) if "edge_weight" in store
                  else np.ones(ei.shape[1]))
        time = store.time.cpu().numpy() if "time" in store else None
        keep = ei[0] < ei[1] if bool(getattr(store, "undirected", False)) else slice(None)
        frame = {"src": ids[ei[0][keep]], "dst": ids[ei[1][keep]], "weight": weight[keep],
                 "layer": np.full(int(np.asarray(ei[0][keep]).size), et[1], dtype=object)}
        if time is not None:
            frame["time"] = time[keep]
        frames.append(pd.DataFrame(frame))
    if not frames:
        raise DataFileError("the graph has no ('person', <relation>, 'person') edge types to write")
    out = pd.concat(frames, ignore_index=True)
    if "time" in out:
        out["time"] = out["time"].astype("Int64")
    return out

