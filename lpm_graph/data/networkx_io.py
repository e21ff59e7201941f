"""networkx graphs to population graphs and back (analysis and plotting of small graphs).

**networkx -> population** (:func:`from_networkx`): nodes are people (ids: the node
keys, all integers or all strings: a mix is an error naming the node); node attributes become person attributes, ``age`` the
age (or ``default_age``), and attributes named ``<type>_id`` venue memberships, as
the columns of a person table (:mod:`lpm_graph.data.tables`). Edges become contacts
as the rows of an edge list (:mod:`lpm_graph.data.edgelist`): attribute ``weight``
the weight, ``layer`` the relation (default ``contact``), ``time`` the window of a
time-varying network. ``Graph``/``MultiGraph`` give undirected contacts (stored both
ways), ``DiGraph``/``MultiDiGraph`` directed ones. The conversion goes through
``pandas`` frames (``networkx.to_pandas_edgelist``) and the vectorised importers.

A graph **file** is read with networkx by suffix: GraphML (``.graphml``, typed
attributes, recommended) or GML (``.gml``). GraphML node ids are text; if every id
is a canonical decimal integer they become integers (as a CSV reader would infer); ids
written as integers next to other ids (``1, 2, abc``) are an error naming the node.

**population -> networkx** (:func:`to_networkx`): node keys are the original ids,
node attributes ``age``, the person attributes (categories decoded) and ``<type>_id``
for single venue memberships; edges carry ``weight``, ``layer`` (only when a relation
other than ``contact`` is present) and ``time``. The graph is undirected if every
contact edge type is, and a multigraph when several layers or windows can join the
same pair. networkx -> population -> networkx preserves ids, attributes and edges.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from torch_geometric.data import HeteroData

from lpm_graph.data.assemble import PERSON, attribute_names, attribute_values, original_ids
from lpm_graph.data.cache import cached_build
from lpm_graph.data.edgelist import contact_graph, read_edges
from lpm_graph.data.readers import DataFileError, mixed_id_kinds, resolve_input, table_source
from lpm_graph.data.synthetic import MEMBER_OF
from lpm_graph.data.tables import _default_age, assemble_tables, read_person_table
from lpm_graph.data.validate import validate_population
from lpm_graph.errors import ConfigError

__all__ = ["from_networkx", "to_networkx", "read_graph", "GRAPH_FORMATS"]

BUILDER_VERSION = 1
GRAPH_FORMATS = {".graphml": nx.read_graphml, ".gml": nx.read_gml}
_INT = re.compile(r"^-?(0|[1-9][0-9]*)$")
_ID, _SRC, _DST = "__node_id__", "__src__", "__dst__"


def read_graph(path: str | os.PathLike) -> nx.Graph:
    """Read a GraphML or GML file with networkx; errors name the file."""
    p = resolve_input(path, "graph file")
    suffix = p.suffix.lower()
    reader = GRAPH_FORMATS.get(suffix)
    if reader is None:
        raise DataFileError(f"graph file {str(p)!r}: unknown suffix {suffix!r}; expected one of "
                            f"{list(GRAPH_FORMATS)} (write one with networkx.write_graphml)")
    if p.stat().st_size == 0:
        raise DataFileError(f"graph file {str(p)!r}: the file is empty; expected a {suffix[1:]} graph")
    try:
        graph = reader(p)
    except Exception as exc:  # networkx raises many types (XML, NetworkXError, ValueError, ...)
        raise DataFileError(f"graph file {str(p)!r}: networkx cannot read it as {suffix[1:]} "
                            f"({type(exc).__name__}: {exc})") from None
    nodes = list(graph.nodes)
    if nodes and all(isinstance(n, str) and _INT.match(n) for n in nodes):
        graph = nx.relabel_nodes(graph, {n: int(n) for n in nodes}, copy=True)
    return graph


_RELABEL = ("node ids must all be integers or all strings that are not numbers: relabel them, e.g. prefix "
            "every id (networkx.relabel_nodes(graph, {n: f'p{n}' for n in graph})) or number them "
            "(networkx.convert_node_labels_to_integers)")


def _ids_array(values: list, name: str) -> pa.Array:
    """Node ids as an Arrow array: all strings, or all integers (int64).

    One kind only (as the id columns of :mod:`lpm_graph.data.readers`): integers
    next to strings, or strings written as integers (``'1'``) next to other
    strings (``'abc'``), are an error naming the first node of the rarer kind.
    """
    def is_int(v) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

    bad = next((v for v in values if not (is_int(v) or isinstance(v, str))), None)
    if bad is not None:
        raise DataFileError(f"{name}: node {bad!r} of type {type(bad).__name__} cannot be a person id; {_RELABEL}")
    ints = [k for k, v in enumerate(values) if is_int(v)]
    if ints and len(ints) < len(values):
        strings = [k for k, v in enumerate(values) if not is_int(v)]
        rare, common = (ints, strings) if len(ints) < len(strings) else (strings, ints)
        kinds = ("an integer", "strings") if rare is ints else ("a string", "integers")
        raise DataFileError(f"{name}: node {values[rare[0]]!r} is {kinds[0]}, but {len(common):,} of the "
                            f"{len(values):,} nodes are {kinds[1]} (the first: {values[common[0]]!r}); {_RELABEL}")
    if not ints:
        arr = pa.array(values, type=pa.string())
        mixed = mixed_id_kinds(arr)
        if mixed is not None:
            other = "integers" if mixed.kind == "not an integer" else "not integers"
            raise DataFileError(f"{name}: node {values[mixed.row]!r} is {mixed.kind}, but {mixed.other_count:,} "
                                f"of the {mixed.total:,} node ids are {other} (the first: "
                                f"{values[mixed.other_row]!r}); {_RELABEL}")
        return arr
    try:
        return pa.array([int(v) for v in values], type=pa.int64())
    except (pa.ArrowException, OverflowError):
        raise DataFileError(f"{name}: node ids do not fit a signed 64-bit integer; use string ids") from None


def _frame_table(frame: pd.DataFrame, name: str, what: str) -> pa.Table:
    columns = {}
    for column in frame.columns:
        try:
            columns[column] = pa.array(frame[column], from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError):
            sample = frame[column].dropna()
            kinds = sorted({type(v).__name__ for v in sample})
            raise DataFileError(f"{name}: {what} attribute {column!r} mixes or uses unsupported value types "
                                f"{kinds}; attributes must be numbers, booleans or strings of one kind") from None
    return pa.table(columns)


def _graph_tables(graph: nx.Graph, name: str, weight: str, layer: str, time: str):
    if not isinstance(graph, nx.Graph):
        raise ConfigError(f"population.graph must be a networkx graph or a graph file path, got {type(graph).__name__}")
    if graph.number_of_nodes() == 0:
        raise DataFileError(f"{name}: the graph has no nodes; expected at least one person")
    nodes = list(graph.nodes)
    ids = _ids_array(nodes, name)
    attrs = pd.DataFrame.from_records([d for _, d in graph.nodes(data=True)], index=range(len(nodes)))
    for reserved in (_ID,):
        if reserved in attrs.columns:
            raise DataFileError(f"{name}: node attribute name {reserved!r} is reserved; rename it")
    node_table = _frame_table(attrs, name, "node").add_column(0, _ID, ids) if len(attrs.columns) else \
        pa.table({_ID: ids})
    edges = nx.to_pandas_edgelist(graph, source=_SRC, target=_DST)
    src = _ids_array(edges[_SRC].tolist(), name) if len(edges) else ids.slice(0, 0)
    dst = _ids_array(edges[_DST].tolist(), name) if len(edges) else ids.slice(0, 0)
    rest = edges.drop(columns=[_SRC, _DST])
    keep = [c for c in (weight, layer, time) if c in rest.columns]
    edge_table = _frame_table(rest[keep], name, "edge") if keep else pa.table({})
    edge_table = pa.table({_SRC: src, _DST: dst, **{c: edge_table.column(c) for c in keep}})
    return node_table, edge_table


def from_networkx(graph: nx.Graph | str | os.PathLike | None = None, *, path: str | os.PathLike | None = None,
                  default_age: float | None = None,
                  age_attribute: str = "age", weight_attribute: str = "weight", layer_attribute: str = "layer",
                  time_attribute: str = "time", relation: str = "contact", period: int | None = None,
                  cache_dir: str | os.PathLike | None = None) -> HeteroData:
    """Build a population graph from a networkx graph or a GraphML/GML file (module docstring).

    Args:
        graph: a ``networkx`` graph, or the path of a graph file (cached by content
            when ``cache_dir`` is set; in-memory graphs are never cached).
        path: the graph file, as a keyword (what ``population=networkx`` sets);
            give ``graph`` or ``path``, not both.
        default_age: age of nodes without an ``age_attribute``.
        age_attribute, weight_attribute, layer_attribute, time_attribute: attribute
            names read as age, edge weight, relation and time window.
        relation: relation of edges without a layer attribute.
        period: windows per cycle of a time-varying network.
        cache_dir: cache root for file input; None builds without caching.
    """
    options = {"default_age": _default_age(default_age), "age_attribute": age_attribute,
               "weight_attribute": weight_attribute, "layer_attribute": layer_attribute,
               "time_attribute": time_attribute, "relation": relation, "period": period}
    if (graph is None) == (path is None):
        raise ConfigError("population=networkx needs exactly one of a graph or population.path (a .graphml or "
                          f".gml file), got graph={type(graph).__name__} and path={path!r}")
    if path is not None:
        graph = path
    if isinstance(graph, (str, os.PathLike)):
        inputs = {"graph": str(resolve_input(graph, "graph file"))}
        return cached_build("networkx", inputs, options,
                            lambda: _convert(read_graph(inputs["graph"]), Path(inputs["graph"]).name, **options),
                            cache_dir, BUILDER_VERSION)
    return _convert(graph, "networkx graph", **options)


def _convert(graph: nx.Graph, name: str, *, default_age, age_attribute, weight_attribute, layer_attribute,
             time_attribute, relation, period) -> HeteroData:
    node_table, edge_table = _graph_tables(graph, name, weight_attribute, layer_attribute, time_attribute)
    has_age = age_attribute in node_table.column_names
    if has_age:
        # nodes without the attribute take default_age (or are reported as missing)
        age = node_table.column(age_attribute)
        if default_age is not None and age.null_count:
            age = pc.fill_null(age.cast(pa.float64()), float(default_age))
            node_table = node_table.set_column(node_table.column_names.index(age_attribute), age_attribute, age)
    people = read_person_table(table_source(node_table, name, "networkx nodes of"), id_column=_ID,
                               age_column=age_attribute, default_age=default_age)
    data = assemble_tables(people, {})
    if edge_table.num_rows == 0:
        validate_population(data)
        return data
    records = read_edges(table_source(edge_table, name, "networkx edges of"), src_column=_SRC, dst_column=_DST,
                         weight_column=weight_attribute if weight_attribute in edge_table.column_names else None,
                         layer_column=layer_attribute if layer_attribute in edge_table.column_names else None,
                         time_column=time_attribute if time_attribute in edge_table.column_names else None,
                         relation=relation)
    return contact_graph(records, data, directed=graph.is_directed(), period=period)


def to_networkx(data: HeteroData, default_relation: str = "contact") -> nx.Graph:
    """The person graph as networkx (module docstring); node keys are the original ids."""
    validate_population(data)
    ids = original_ids(data, PERSON)
    keys = ids.tolist()
    person = data[PERSON]
    columns = {"age": person.age.cpu().numpy().astype(np.float64)}
    for name in attribute_names(data, PERSON):
        values = attribute_values(data, PERSON, name)
        columns[name] = np.asarray(values.astype(object)) if isinstance(values, pd.Categorical) else values
    contact_types = []
    for et in data.edge_types:
        if et[0] == PERSON and et[1] == MEMBER_OF:
            person_idx, venue_idx = data[et].edge_index.cpu().numpy()
            if np.bincount(person_idx, minlength=len(keys)).max(initial=0) <= 1:
                column = np.full(len(keys), None, dtype=object)
                column[person_idx] = original_ids(data, et[2])[venue_idx]
                columns[f"{et[2]}_id"] = column
        elif et[0] == PERSON and et[2] == PERSON:
            contact_types.append(et)
    undirected = all(bool(getattr(data[et], "undirected", False)) for et in contact_types)
    timed = any("time" in data[et] for et in contact_types)
    relations = {et[1] for et in contact_types}
    multi = timed or len(relations) > 1
    graph = {(False, False): nx.DiGraph, (True, False): nx.Graph,
             (False, True): nx.MultiDiGraph, (True, True): nx.MultiGraph}[(undirected, multi)]()
    frame = pd.DataFrame(columns)
    records = frame.to_dict("records")
    graph.add_nodes_from((key, {k: v for k, v in rec.items() if not _missing(v)}) for key, rec in zip(keys, records))
    with_layer = relations != {default_relation}
    for et in contact_types:
        store = data[et]
        ei = store.edge_index.cpu().numpy()
        keep = ei[0] < ei[1] if undirected else np.ones(ei.shape[1], dtype=bool)
        src, dst = ids[ei[0][keep]].tolist(), ids[ei[1][keep]].tolist()
        attrs = {}
        if "edge_weight" in store:
            attrs["weight"] = store.edge_weight.cpu().numpy()[keep].astype(np.float64).tolist()
        if "time" in store:
            attrs["time"] = store.time.cpu().numpy()[keep].tolist()
        if with_layer:
            attrs["layer"] = [et[1]] * len(src)
        edge_dicts = ({key: column[k] for key, column in attrs.items()} for k in range(len(src)))
        graph.add_edges_from(zip(src, dst, edge_dicts))
    return graph


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))
