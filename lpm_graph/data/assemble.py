r"""Shared construction of population graphs from id-keyed columns.

Every importer (tables, edge lists, SocioPatterns, networkx, census marginals) ends
here, so all of them give the same schema (see :mod:`lpm_graph.data.synthetic`)
plus these conventions:

**Ids.** Nodes keep the ids of the input. ``data[t].uid`` (int64, keys the random
numbers) *is* the original id when all ids of the type are non-negative integers;
otherwise (string ids, or negative integers) ``uid`` is the id's rank in sorted
order (``0..n-1``) and the original ids are kept in ``data[t].original_id``:
int64 ``[n]`` for integers, or UTF-8 bytes ``uint8 [n, w]`` (zero-padded, one row
per node, so that slicing nodes slices their ids) for strings.
:func:`original_ids` returns them either way. Node order: the row order of a node
table, or sorted ids where nodes are derived from edges.

**Attributes.** Extra columns become node attributes of the same name: numbers and
booleans as tensors of their type (with missing values: float64 with NaN);
strings as int64 codes (``-1`` = missing) with the sorted category list kept as a
JSON string in ``data[t]['<name>_categories']``. :func:`attribute_values` decodes.

**Contacts.** ``('person', <relation>, 'person')`` with ``edge_index``,
``edge_weight`` (float32; absent when the input has no weights and nothing was
merged, i.e. unit weights; otherwise the summed weights, 1 per record if unweighted),
optionally ``time`` (int64 window index per edge) and ``time_period`` (int), and
``undirected`` (bool: every edge is stored in both directions). Self-loops are
dropped and duplicates merged by summing weights, each with a
:class:`~lpm_graph.data.readers.PopulationDataWarning` giving counts.
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch_geometric.data import HeteroData

from lpm_graph.data.readers import DataFileError, PopulationDataWarning
from lpm_graph.data.synthetic import MEMBER_OF, REV_MEMBER_OF

__all__ = [
    "IdIndex",
    "as_tensor",
    "unique_ids",
    "check_unique",
    "add_nodes",
    "add_membership",
    "add_contacts",
    "original_ids",
    "attribute_values",
    "attribute_names",
    "CATEGORIES_SUFFIX",
    "RESERVED_ATTRIBUTES",
]

PERSON = "person"
CATEGORIES_SUFFIX = "_categories"
#: Node attribute names the importers set themselves; input columns may not use them.
RESERVED_ATTRIBUTES = frozenset({"num_nodes", "uid", "original_id", "size"})
_RESERVED_RELATIONS = frozenset({MEMBER_OF, REV_MEMBER_OF})
_DENSE_SLACK = 4  # integer ids in [0, 4 n + 2^20) are looked up through a dense table


# -----------------------------------------------------------------------------------------
# Ids
# -----------------------------------------------------------------------------------------


def as_tensor(values: np.ndarray) -> torch.Tensor:
    """``torch.from_numpy`` that copies read-only (e.g. Arrow-backed) or non-contiguous arrays first."""
    values = np.asarray(values)
    if not values.flags.writeable or not values.flags.c_contiguous:
        values = np.array(values, copy=True, order="C")
    return torch.from_numpy(values)


def _as_string(arr: pa.Array) -> pa.Array:
    return arr if pa.types.is_string(arr.type) else pc.cast(arr, pa.string())


def _common(arrays: Sequence[pa.Array]) -> list[pa.Array]:
    """Integer and string ids compare as strings (decimal) when both kinds meet."""
    if any(pa.types.is_string(a.type) for a in arrays):
        return [_as_string(a) for a in arrays]
    return [a.cast(pa.int64()) for a in arrays]


def _int_numpy(arr: pa.Array) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _dense_range(values: np.ndarray, n: int) -> int | None:
    """``max + 1`` if the non-negative int ids are compact enough for a dense table, else None."""
    if values.size == 0:
        return None
    lo, hi = int(values.min()), int(values.max())
    if lo >= 0 and hi < _DENSE_SLACK * max(n, 1) + (1 << 20):
        return hi + 1
    return None


def unique_ids(*arrays: pa.Array) -> pa.Array:
    """Sorted distinct non-null ids of all ``arrays`` (int64, or string if any is string)."""
    parts = [a.drop_null() for a in _common(list(arrays))]
    if not parts:
        return pa.array([], pa.int64())
    if pa.types.is_string(parts[0].type):
        uniq = pc.unique(pa.concat_arrays(parts))
        return uniq.take(pc.array_sort_indices(uniq))
    values = [_int_numpy(p) for p in parts]
    total = sum(v.size for v in values)
    dense = _dense_range(np.concatenate([np.array([v.min(), v.max()]) for v in values if v.size]), total) \
        if total else None
    if dense is not None:
        present = np.zeros(dense, dtype=bool)
        for v in values:
            present[v] = True
        return pa.array(np.flatnonzero(present).astype(np.int64))
    joined = as_tensor(np.concatenate(values))
    return pa.array(torch.unique(joined, sorted=True).numpy())


def check_unique(ids: pa.Array, describe) -> None:
    """Raise ``describe(id, first_row, second_row)`` (a DataFileError) for the first repeated id.

    "First" is in file order: the earliest row whose id already occurred above it.
    """
    if len(ids) < 2:
        return
    if pa.types.is_string(ids.type):
        keys = pc.dictionary_encode(ids).indices.to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        keys = _int_numpy(ids)
    values = as_tensor(keys)
    ordered, order = torch.sort(values, stable=True)
    repeated = ordered[1:] == ordered[:-1]
    if bool(repeated.any()):
        second = int(order[1:][repeated].min())
        first = int(torch.nonzero(values == values[second])[0, 0])
        raise describe(ids[second].as_py(), first, second)


class IdIndex:
    """Maps ids to node indices ``0..n-1`` (the position of the id in ``ids``).

    Integer ids in a compact non-negative range use a dense lookup table (one gather
    per query); other ids use Arrow's hash lookup (``pyarrow.compute.index_in``).
    Integer and string ids are compared as strings when they meet.
    """

    def __init__(self, ids: pa.Array):
        self.ids = ids
        self.n = len(ids)
        self._table: np.ndarray | None = None
        self._strings: pa.Array | None = None
        if not pa.types.is_string(ids.type):
            values = _int_numpy(ids)
            size = _dense_range(values, self.n)
            if size is not None:
                table = np.full(size, -1, dtype=np.int64)
                table[values] = np.arange(self.n, dtype=np.int64)
                self._table = table

    def lookup(self, values: pa.Array) -> np.ndarray:
        """Index of each value (int64), ``-1`` where the id is unknown or the value is null."""
        if len(values) == 0:
            return np.zeros(0, dtype=np.int64)
        ids = self.ids
        if pa.types.is_string(values.type) != pa.types.is_string(ids.type):
            if self._strings is None:
                self._strings = _as_string(ids)
            ids, values = self._strings, _as_string(values)
        elif self._table is not None:
            valid = np.asarray(values.is_valid()) if values.null_count else None
            v = _int_numpy(values.fill_null(-1) if valid is not None else values)
            inside = (v >= 0) & (v < self._table.size)
            out = np.where(inside, self._table[np.where(inside, v, 0)], -1)
            return out
        found = pc.index_in(values, value_set=ids)
        return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _encode_strings(arr: pa.Array) -> torch.Tensor:
    """UTF-8 bytes of each string, zero-padded to ``uint8 [n, max_len]``."""
    arr = _as_string(arr)
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset:arr.offset + n + 1]
    buffer = arr.buffers()[2]
    data = np.frombuffer(buffer, dtype=np.uint8) if buffer is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets).astype(np.int64)
    width = max(int(lengths.max()) if n else 0, 1)
    out = np.zeros((n, width), dtype=np.uint8)
    rows = np.repeat(np.arange(n), lengths)
    cols = np.arange(int(lengths.sum())) - np.repeat(offsets[:-1].astype(np.int64) - offsets[0], lengths)
    out[rows, cols] = data[offsets[0]:offsets[-1]]
    return as_tensor(out)


def _decode_strings(encoded: torch.Tensor) -> np.ndarray:
    raw = np.ascontiguousarray(encoded.cpu().numpy())
    if raw.shape[0] == 0:
        return np.zeros(0, dtype=object)
    fixed = raw.view(f"S{raw.shape[1]}").ravel()
    return np.strings.decode(fixed, "utf-8").astype(object)


def original_ids(data: HeteroData, node_type: str) -> np.ndarray:
    """The input's ids of ``node_type`` in node order: int64, or an object array of str.

    Graphs built elsewhere (e.g. the synthetic generator) have no ``original_id``;
    their ``uid`` is returned.
    """
    store = data[node_type]
    if "original_id" in store:
        value = store["original_id"]
        if value.dim() == 2:
            return _decode_strings(value)
        return value.cpu().numpy().astype(np.int64)
    if "uid" in store:
        return store["uid"].cpu().numpy().astype(np.int64)
    return np.arange(int(store.num_nodes), dtype=np.int64)


def add_nodes(data: HeteroData, node_type: str, ids: pa.Array,
              attributes: Mapping[str, tuple[np.ndarray, list | None]] = ()) -> None:
    """Create node type ``node_type`` with the given unique, non-null ``ids`` and attributes."""
    n = len(ids)
    store = data[node_type]
    store.num_nodes = n
    if pa.types.is_string(ids.type):
        rank = pc.rank(ids, sort_keys="ascending", tiebreaker="first")
        store.uid = as_tensor(rank.to_numpy().astype(np.int64) - 1)
        store.original_id = _encode_strings(ids)
    else:
        values = _int_numpy(ids)
        if n == 0 or int(values.min()) >= 0:
            store.uid = as_tensor(values.copy())
        else:
            store.uid = as_tensor(np.argsort(np.argsort(values, kind="stable"), kind="stable")
                                         .astype(np.int64))
            store.original_id = as_tensor(values.copy())
    for name, (values, categories) in dict(attributes).items():
        store[name] = as_tensor(np.ascontiguousarray(values))
        if categories is not None:
            store[name + CATEGORIES_SUFFIX] = json.dumps(list(categories))


def attribute_names(data: HeteroData, node_type: str) -> list[str]:
    """Names of the user attributes of a node type (schema fields and category lists excluded)."""
    store = data[node_type]
    skip = set(RESERVED_ATTRIBUTES)
    if node_type == PERSON:
        skip.add("age")
    names = []
    for key in store.keys():
        if key in skip or key.endswith(CATEGORIES_SUFFIX) and key[:-len(CATEGORIES_SUFFIX)] in store:
            continue
        value = store[key]
        if isinstance(value, torch.Tensor) and value.dim() == 1:
            names.append(key)
    return names


def attribute_values(data: HeteroData, node_type: str, name: str):
    """Values of a node attribute: a numpy array, or a ``pandas.Categorical`` for encoded strings."""
    store = data[node_type]
    values = store[name].cpu().numpy()
    key = name + CATEGORIES_SUFFIX
    if key in store:
        import pandas as pd

        return pd.Categorical.from_codes(values, categories=json.loads(store[key]))
    return values


# -----------------------------------------------------------------------------------------
# Edges
# -----------------------------------------------------------------------------------------


def add_membership(data: HeteroData, venue_type: str, person: np.ndarray, venue: np.ndarray) -> None:
    """Membership edges person -> venue (sorted by person) and their reverse; ``size`` = member count."""
    person = as_tensor(np.ascontiguousarray(person, dtype=np.int64))
    venue = as_tensor(np.ascontiguousarray(venue, dtype=np.int64))
    order = torch.argsort(person, stable=True)
    edge_index = torch.stack([person[order], venue[order]])
    data[PERSON, MEMBER_OF, venue_type].edge_index = edge_index
    data[venue_type, REV_MEMBER_OF, PERSON].edge_index = edge_index.flip(0)
    data[venue_type].size = torch.bincount(venue, minlength=int(data[venue_type].num_nodes)).to(torch.int64)


def check_relation(name: object, where: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise DataFileError(f"{where}: a contact layer (relation) name must be a non-empty string, got {name!r}")
    if name in _RESERVED_RELATIONS:
        raise DataFileError(f"{where}: layer name {name!r} is reserved for venue memberships; rename the layer")
    return name


def _merge(key_parts: list[np.ndarray], weight: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, int]:
    """Merge rows equal in every key part; returns (unique parts, summed weights, #merged rows).

    The parts are combined into one int64 key when their ranges allow (one sort),
    otherwise sorted lexicographically.
    """
    m = weight.size
    if m == 0:
        return key_parts, weight, 0
    spans = [int(p.max()) + 1 for p in key_parts]
    total = 1
    for span in spans:
        total *= span
    if total < 2**62:
        key = torch.zeros(m, dtype=torch.int64)
        for part, span in zip(key_parts, spans):
            key.mul_(span).add_(as_tensor(np.asarray(part, dtype=np.int64)))
        ordered, order = torch.sort(key, stable=True)
        del key
        new = torch.ones(m, dtype=torch.bool)
        torch.ne(ordered[1:], ordered[:-1], out=new[1:])
        w = as_tensor(np.asarray(weight, dtype=np.float64))[order]
        merged = m - int(new.sum())
        if merged:
            group = torch.cumsum(new, 0) - 1
            w = torch.zeros(m - merged, dtype=torch.float64).index_add_(0, group, w)
            ordered = ordered[new]
        parts = []
        for span in reversed(spans):
            parts.append(torch.remainder(ordered, span).numpy())
            ordered = torch.div(ordered, span, rounding_mode="floor")
        return parts[::-1], w.numpy(), merged
    order = np.lexsort(key_parts[::-1])
    parts = [p[order] for p in key_parts]
    w = weight[order].astype(np.float64)
    new = np.ones(m, dtype=bool)
    new[1:] = np.any([p[1:] != p[:-1] for p in parts], axis=0)
    group = np.cumsum(new) - 1
    summed = np.bincount(group, weights=w)
    return [p[new] for p in parts], summed, m - int(new.sum())


def _edge_index(a: torch.Tensor, b: torch.Tensor, directed: bool) -> torch.Tensor:
    """``[[a], [b]]``, or ``[[a, b], [b, a]]`` for undirected contacts (one allocation)."""
    m = a.numel()
    if directed:
        return torch.stack([a, b])
    ei = torch.empty((2, 2 * m), dtype=torch.int64)
    ei[0, :m], ei[0, m:], ei[1, :m], ei[1, m:] = a, b, b, a
    return ei


def _repeat(values: torch.Tensor, directed: bool) -> torch.Tensor:
    return values if directed else torch.cat([values, values])


def _refuse_reversed(src: np.ndarray, dst: np.ndarray, time, layer, label: str) -> None:
    """Raise if an undirected record's reverse is also a record (same layer and window)."""
    if not src.size:
        return
    n = int(max(src.max(), dst.max())) + 1
    group = np.zeros(src.size, dtype=np.int64)
    for a in (layer, time):
        if a is not None:
            a = np.asarray(a, dtype=np.int64)
            group = group * (int(a.max()) + 1) + a
    if (int(group.max()) + 1) * n * n < 2**62:  # one int64 key per record
        forward = (group * n + src) * n + dst
        backward = (group * n + dst) * n + src
        reversed_records = np.isin(backward, forward)
        reversed_pairs = len(np.unique(np.minimum(forward, backward)[reversed_records]))
    else:
        rows = np.stack([group, src, dst], axis=1)
        both = np.concatenate([np.unique(rows, axis=0), np.unique(rows[:, [0, 2, 1]], axis=0)])
        reversed_pairs = int((np.unique(both, axis=0, return_counts=True)[1] > 1).sum()) // 2
    if reversed_pairs:
        raise DataFileError(
            f"{label}: {reversed_pairs} contact(s) are listed in both directions (a b and b a); with "
            "directed=false each record is one contact, stored both ways, so these would count twice. "
            "If the file lists every contact both ways, set directed=true (population.directed=true); "
            "otherwise keep one record per contact")


def add_contacts(data: HeteroData, src: np.ndarray, dst: np.ndarray, *, weight: np.ndarray | None = None,
                 time: np.ndarray | None = None, layer: np.ndarray | None = None,
                 layer_names: Sequence[str] = ("contact",), directed: bool = False,
                 period: int | None = None, label: str = "edge list", warn_duplicates: bool = True,
                 refuse_reversed: bool = False) -> dict:
    """Add person -> person contact edge types from index arrays (rules in the module docstring).

    Args:
        src, dst: person indices of each record (int64, already resolved).
        weight: per-record weight (>= 0, finite; checked by the caller); ones if None.
        time: per-record window index (>= 0); the edges become time-varying.
        layer: per-record index into ``layer_names`` (the relation of each record).
        directed: keep ``src -> dst`` only; otherwise ``(a, b)`` and ``(b, a)`` are one
            contact, stored in both directions.
        period: ``time_period`` of time-varying edges (default: last window + 1).
        label: names the input in warnings.
        warn_duplicates: warn when records are merged (off where merging is the point,
            e.g. aggregating SocioPatterns windows).
        refuse_reversed: undirected only: refuse records ``a b`` whose reverse ``b a``
            (same layer and window) is also listed — a file that already lists both
            directions, whose every contact would otherwise count twice.

    Returns:
        counts: ``{"records", "self_loops", "merged", "edges"}`` (edges as stored).
    """
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    records = int(src.size)
    w = np.ones(records) if weight is None else np.asarray(weight, dtype=np.float64)
    keep = src != dst
    self_loops = records - int(keep.sum())
    if self_loops:
        warnings.warn(PopulationDataWarning(
            f"{label}: dropped {self_loops} self-loop(s) (records from a person to the same person)"),
            stacklevel=3)
        src, dst, w = src[keep], dst[keep], w[keep]
        time = None if time is None else np.asarray(time)[keep]
        layer = None if layer is None else np.asarray(layer)[keep]
    if not directed and refuse_reversed:
        _refuse_reversed(src, dst, time, layer, label)
    if not directed:
        src, dst = np.minimum(src, dst), np.maximum(src, dst)
    if time is not None:
        time = np.asarray(time, dtype=np.int64)
        if period is None:
            period = int(time.max()) + 1 if time.size else 1
        elif time.size and int(time.max()) >= period:
            raise DataFileError(f"{label}: time window {int(time.max())} does not fit period={period}; "
                                f"the period must exceed the last window index")
    layer_codes = np.zeros(src.size, dtype=np.int64) if layer is None else np.asarray(layer, dtype=np.int64)
    merged_total, stored = 0, 0
    for k, name in enumerate(layer_names):
        rel = check_relation(name, label)
        sel = layer_codes == k if len(layer_names) > 1 else slice(None)
        parts = [src[sel], dst[sel]] if time is None else [time[sel], src[sel], dst[sel]]
        parts, wk, merged = _merge(parts, w[sel])
        merged_total += merged
        tk = None if time is None else parts[0]
        a, b = as_tensor(parts[-2]), as_tensor(parts[-1])
        store = data[PERSON, rel, PERSON]
        store.edge_index = _edge_index(a, b, directed)
        if weight is not None or merged:  # unweighted input without merges keeps unit weights implicit
            store.edge_weight = _repeat(as_tensor(wk).to(torch.float32), directed)
        store.undirected = not directed
        if tk is not None:
            store.time = _repeat(as_tensor(tk), directed)
            store.time_period = int(period)
        stored += int(store.edge_index.shape[1])
    if merged_total and warn_duplicates:
        how = "" if directed else " (undirected: a-b and b-a records are the same contact)"
        warnings.warn(PopulationDataWarning(
            f"{label}: merged {merged_total} duplicate record(s) into existing edges, weights summed{how}"),
            stacklevel=3)
    return {"records": records, "self_loops": self_loops, "merged": merged_total, "edges": stored}
