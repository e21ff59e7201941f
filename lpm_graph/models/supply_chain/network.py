r"""Supply networks: a synthetic generator and an importer of firm/shipment edge lists.

Graph schema (what :class:`~lpm_graph.models.supply_chain.Stage` reads):

* one node type per tier (``supplier``, ``warehouse``, ... — any names): ``num_nodes``,
  ``uid`` int64, ``capacity`` float ``[N]`` (units per step; ``inf``: unlimited);
* per pair of tiers that trade, ``(upstream type, relation, downstream type)``:
  ``edge_index`` ``[2, E]`` (supplier -> customer), ``edge_weight`` (the share of the
  customer's orders placed with this supplier, before normalising over the customer's
  suppliers), ``capacity`` (units per step along the edge; ``inf``: unlimited),
  ``lead_time`` int64 (steps from shipment to availability, >= 0).

:func:`supply_network` draws such a network: tiers of given sizes; every node of a tier
buys from ``k`` nodes of the tier above, ``k`` consecutive ones (mod the tier's size) from
a uniformly drawn start (a regional structure); every edge's lead time is the tier
pair's ``lead_time`` plus a uniform integer in ``[0, spread]``.  Whole-tensor work with one
seeded ``torch.Generator``: 10^6 nodes in well under a second.

:func:`from_shipments` reads an edge list (CSV or Parquet), one row per supplier ->
customer relation: ``src``, ``dst`` (node ids, integers or strings), ``lead_time``
(whole steps >= 0), optional ``capacity`` (a number >= 0; empty: unlimited) and
``share`` (order share, a number >= 0; default 1).  Node types come from a **nodes
table** (``id``, ``type``, optional ``capacity``) when one is given, else from
``src_type`` and ``dst_type`` columns of the edge list.  Errors name the file, the row
(and CSV line) and the column, and say what was expected.
"""
from __future__ import annotations

import inspect
import math
import numbers
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch_geometric.data import HeteroData

from lpm_graph.data.assemble import IdIndex, add_nodes, unique_ids
from lpm_graph.data.readers import Source, id_column, integer_column, numeric_column, read_table
from lpm_graph.data.validate import validate_graph
from lpm_graph.errors import ConfigError

__all__ = ["supply_network", "from_shipments", "DEFAULT_TIERS"]

DEFAULT_TIERS = {"supplier": 4, "warehouse": 16, "retailer": 100, "consumer": 10000}


def _per_pair(value, pairs: int, what: str, kind=int, low=0) -> list:
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value] * pairs
    if len(values) != pairs:
        raise ConfigError(f"population.{what} must be one value or one per tier pair ({pairs}), got {list(values)}")
    for v in values:
        ok = isinstance(v, numbers.Integral) if kind is int else isinstance(v, numbers.Real)
        if isinstance(v, bool) or not ok or not v >= low:
            raise ConfigError(f"population.{what}: every value must be {'an integer' if kind is int else 'a number'} "
                              f">= {low}, got {v!r}")
    return [kind(v) for v in values]


def _name(value, what: str) -> str:
    if not isinstance(value, str) or not value or "." in value or value != value.strip():
        raise ConfigError(f"{what} must be a non-empty name without dots or spaces, got {value!r}")
    return value


def supply_network(tiers: Mapping[str, int] | None = None, suppliers_per_node: int | Sequence[int] = (2, 1, 1),
                   lead_time: int | Sequence[int] = (2, 1, 0), spread: int | Sequence[int] = (1, 1, 0),
                   capacity: Mapping[str, float | None] | None = None, relation: str = "supplies",
                   seed: int = 0) -> HeteroData:
    """Generate a layered supply network (module docstring).

    Args:
        tiers: node type -> count, upstream first (default :data:`DEFAULT_TIERS`).
        suppliers_per_node: suppliers of each node of the next tier, one per tier pair (or one for all).
        lead_time: base lead time (steps) of each tier pair's edges.
        spread: each edge adds a uniform integer in ``[0, spread]`` to its pair's lead time.
        capacity: node type -> capacity per node and step (``None``/absent: unlimited).
        relation: the edge types' relation.
        seed: the generator's seed.
    """
    tiers = dict(DEFAULT_TIERS if tiers is None else tiers)
    if len(tiers) < 2:
        raise ConfigError(f"population.tiers needs at least two node types (upstream first), got {list(tiers)}")
    for nt, n in tiers.items():
        _name(nt, "population.tiers: a node type")
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ConfigError(f"population.tiers.{nt} must be a positive integer (nodes), got {n!r}")
    relation = _name(relation, "population.relation")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConfigError(f"population.seed must be a non-negative integer, got {seed!r}")
    pairs = len(tiers) - 1
    k_up = _per_pair(suppliers_per_node, pairs, "suppliers_per_node", low=1)
    base = _per_pair(lead_time, pairs, "lead_time")
    extra = _per_pair(spread, pairs, "spread")
    capacity = dict(capacity or {})
    unknown = sorted(set(capacity) - set(tiers))
    if unknown:
        raise ConfigError(f"population.capacity names {unknown}, which are not tiers ({list(tiers)})")
    gen = torch.Generator().manual_seed(int(seed))
    data = HeteroData()
    names = list(tiers)
    for nt in names:
        n = int(tiers[nt])
        cap = capacity.get(nt)
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, numbers.Real) or not cap >= 0):
            raise ConfigError(f"population.capacity.{nt} must be a number >= 0 or null (unlimited), got {cap!r}")
        data[nt].num_nodes = n
        data[nt].uid = torch.arange(n)
        data[nt].capacity = torch.full((n,), math.inf if cap is None else float(cap), dtype=torch.float32)
    for i, (up, down) in enumerate(zip(names[:-1], names[1:])):
        n_up, n_down = int(tiers[up]), int(tiers[down])
        k = min(k_up[i], n_up)
        start = torch.randint(0, n_up, (n_down,), generator=gen)
        src = ((start.unsqueeze(1) + torch.arange(k)) % n_up).reshape(-1)
        dst = torch.arange(n_down).repeat_interleave(k)
        store = data[up, relation, down]
        store.edge_index = torch.stack([src, dst])
        store.edge_weight = torch.ones(src.numel(), dtype=torch.float32)
        store.capacity = torch.full((src.numel(),), math.inf, dtype=torch.float32)
        store.lead_time = base[i] + torch.randint(0, extra[i] + 1, (src.numel(),), generator=gen)
    validate_graph(data, {nt: ["uid", "capacity"] for nt in names})
    return data


#: the arguments of :func:`supply_network` and their defaults (what the size estimate of its config reads)
SUPPLY_NETWORK_ARGUMENTS = {k: p.default for k, p in inspect.signature(supply_network).parameters.items()}


# -- the importer -------------------------------------------------------------------------


def _types(source: Source, column: str) -> np.ndarray:
    arr = source.column(column)
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    if not pa.types.is_string(arr.type):
        raise source.error(f"must hold node type names (text such as 'supplier'), got {arr.type} values",
                           column=column)
    values = np.asarray(arr.to_pylist(), dtype=object)
    for row, v in enumerate(values):
        if v is None or not str(v).strip():
            raise source.error("missing node type; every row needs one (e.g. supplier, warehouse)", column=column,
                               row=row)
        if "." in v or v != v.strip() or " " in v:
            raise source.error(f"node type {v!r} must be a name without dots or spaces", column=column, row=row)
    return values


def _capacity(source: Source, column: str | None) -> np.ndarray:
    if column is None or column not in source.columns:
        return np.full(source.num_rows, np.inf)
    values = numeric_column(source, column, allow_null=True, min_value=0.0, what="capacity (units per step)")
    return np.where(np.isnan(values), np.inf, values)


def _as_text(arr: pa.Array) -> pa.Array:
    return arr if pa.types.is_string(arr.type) else pc.cast(arr, pa.string())


def from_shipments(edges: str | os.PathLike, nodes: str | os.PathLike | None = None, *, src_column: str = "src",
                   dst_column: str = "dst", lead_time_column: str = "lead_time",
                   capacity_column: str | None = "capacity", share_column: str | None = "share",
                   src_type_column: str = "src_type", dst_type_column: str = "dst_type", id_column_name: str = "id",
                   type_column: str = "type", node_capacity_column: str | None = "capacity",
                   relation: str = "supplies") -> HeteroData:
    """Read a firm/shipment edge list (and an optional nodes table) into a supply network (module docstring).

    Raises:
        DataFileError: naming the file, row and column: a missing column, an empty file, a non-numeric or
            negative capacity or share, a negative or fractional lead time, an unknown or repeated node id,
            a node given two types, a missing type, an edge from a node to itself or listed twice.
    """
    relation = _name(relation, "population.relation")
    src_edges = read_table(edges, "shipment edge list")
    src_edges.require([src_column, dst_column, lead_time_column], "supplier id, customer id, lead time in steps")
    src = id_column(src_edges, src_column)
    dst = id_column(src_edges, dst_column)
    lead = integer_column(src_edges, lead_time_column, min_value=0, what="lead time (whole steps)")
    cap = _capacity(src_edges, capacity_column)
    share = (numeric_column(src_edges, share_column, min_value=0.0, what="order share")
             if share_column and share_column in src_edges.columns else np.ones(src_edges.num_rows))
    if nodes is not None:
        table = read_table(nodes, "node table")
        table.require([id_column_name, type_column], "node id and node type")
        ids = id_column(table, id_column_name)
        types = _types(table, type_column)
        node_cap = _capacity(table, node_capacity_column)
        values = pd.Index(ids.to_numpy(zero_copy_only=False))
        repeated = values.duplicated(keep="first")
        if repeated.any():
            row = int(np.flatnonzero(repeated)[0])
            first = int(np.flatnonzero(values == values[row])[0])
            raise table.error(f"node id {ids[row].as_py()!r} is listed twice (first in {table.row(first)}); every "
                              "node needs one row", column=id_column_name, row=row)
        index = IdIndex(ids)
        known = f"the node table {table.name!r}"
    else:
        src_edges.require([src_type_column, dst_type_column],
                          "node types of each end; or give a node table (population.nodes) with id and type")
        ids = unique_ids(src, dst)
        index = IdIndex(ids)
        types = np.empty(len(ids), dtype=object)
        origin: dict[int, tuple[str, int]] = {}
        for column, end in ((src_type_column, src), (dst_type_column, dst)):
            given = _types(src_edges, column)
            pos = index.lookup(end)
            for row, (p, t) in enumerate(zip(pos.tolist(), given)):
                if types[p] is None:
                    types[p], origin[p] = t, (column, row)
                elif types[p] != t:
                    col, first = origin[p]
                    raise src_edges.error(f"node {end[row].as_py()!r} is given type {t!r} here but {types[p]!r} in "
                                          f"{src_edges.row(first)}, column {col!r}; a node has one type",
                                          column=column, row=row)
        node_cap = np.full(len(ids), np.inf)
        known = "the edge list"
    s, d = index.lookup(src), index.lookup(dst)
    for column, end, pos in ((src_column, src, s), (dst_column, dst, d)):
        if (pos < 0).any():
            row = int(np.flatnonzero(pos < 0)[0])
            raise src_edges.error(f"node id {end[row].as_py()!r} is not in {known} ({int((pos < 0).sum())} row(s) name "
                                  "unknown nodes); add it to the node table or fix the id", column=column, row=row)
    loops = s == d
    if loops.any():
        row = int(np.flatnonzero(loops)[0])
        raise src_edges.error(f"node {src[row].as_py()!r} ships to itself; drop the row", column=dst_column, row=row)
    key = s.astype(np.int64) * max(1, len(ids)) + d
    order = np.argsort(key, kind="stable")
    dup = np.flatnonzero(key[order][1:] == key[order][:-1])
    if dup.size:
        first, again = sorted((int(order[dup[0]]), int(order[dup[0] + 1])))
        raise src_edges.error(f"the edge {src[again].as_py()!r} -> {dst[again].as_py()!r} is listed again (first in "
                              f"{src_edges.row(first)}); merge the rows (sum their capacities)", column=dst_column,
                              row=again)
    data = HeteroData()
    type_names = sorted(set(types.tolist()))
    local = np.zeros(len(ids), dtype=np.int64)
    for nt in type_names:
        members = np.flatnonzero(types == nt)
        local[members] = np.arange(members.size)
        member_ids = ids.take(pa.array(members))
        add_nodes(data, nt, _as_text(member_ids) if pa.types.is_string(ids.type) else member_ids,
                  {"capacity": (node_cap[members].astype(np.float32), None)})
    codes = {nt: i for i, nt in enumerate(type_names)}
    type_code = np.array([codes[t] for t in types.tolist()], dtype=np.int64)
    pair_code = type_code[s] * len(type_names) + type_code[d]
    for code in np.unique(pair_code).tolist():
        up, down = type_names[code // len(type_names)], type_names[code % len(type_names)]
        rows = np.flatnonzero(pair_code == code)
        store = data[up, relation, down]
        store.edge_index = torch.as_tensor(np.stack([local[s[rows]], local[d[rows]]]))
        store.edge_weight = torch.as_tensor(share[rows].astype(np.float32))
        store.capacity = torch.as_tensor(cap[rows].astype(np.float32))
        store.lead_time = torch.as_tensor(lead[rows].astype(np.int64))
    validate_graph(data, {nt: ["uid", "capacity"] for nt in type_names})
    return data
