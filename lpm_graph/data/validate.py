"""Error types and the structural validator for population graphs.

:func:`validate_population` checks the contract that the simulation code relies on
(see :mod:`lpm_graph.data.synthetic` for the schema) and raises a single
:class:`PopulationGraphError` that names the node type, edge type or attribute at
fault and what would have been accepted. Every check is a whole-tensor reduction
(``min``/``max``/``isfinite``/``unique``), so validating a graph with 10^7 edges
costs a few passes over its tensors and no Python loop over nodes or edges.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch_geometric.data import HeteroData

from lpm_graph.errors import ConfigError, PopulationGraphError

__all__ = ["validate_graph", "validate_population"]


_INTEGER_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def _is_integer_tensor(value: object) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype in _INTEGER_DTYPES


def _node_count(node_type: str, store) -> int:
    """The node count of one node store: explicit ``num_nodes`` or the agreed first dim.

    PyG would guess (with a warning) from arbitrary attributes; here the count is
    either set explicitly or implied consistently by every tensor attribute.
    """
    keys = list(store.keys())
    if "num_nodes" in keys:
        n = store["num_nodes"]
        if isinstance(n, torch.Tensor) and n.dim() == 0 and _is_integer_tensor(n):
            n = int(n)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise PopulationGraphError(
                f"node type {node_type!r}: num_nodes must be a non-negative integer, got {n!r}"
            )
        return n
    for key in keys:
        value = store[key]
        if isinstance(value, torch.Tensor) and value.dim() >= 1:
            return int(value.shape[0])
    raise PopulationGraphError(
        f"node type {node_type!r}: the node count is unknown; set "
        f"data[{node_type!r}].num_nodes = <int> or give it tensor attributes"
    )


def _check_node_store(node_type: str, store, num_nodes: int) -> None:
    for key in store.keys():
        if key == "num_nodes":
            continue
        value = store[key]
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] != num_nodes:
            raise PopulationGraphError(
                f"node type {node_type!r}: attribute {key!r} has first dimension "
                f"{value.shape[0]} (shape {tuple(value.shape)}) but {node_type!r} has "
                f"{num_nodes} nodes; node attributes must have shape [{num_nodes}, ...]"
            )
    if "uid" in store:
        _check_uid(node_type, store["uid"], num_nodes)


def _check_uid(node_type: str, uid: object, num_nodes: int) -> None:
    where = f"node type {node_type!r}: attribute 'uid'"
    if not _is_integer_tensor(uid):
        got = f"a tensor of dtype {uid.dtype}" if isinstance(uid, torch.Tensor) else type(uid).__name__
        raise PopulationGraphError(
            f"{where} must be an integer tensor of shape [{num_nodes}], got {got}"
        )
    if uid.dim() != 1 or uid.shape[0] != num_nodes:
        raise PopulationGraphError(
            f"{where} must have shape [{num_nodes}] (one id per node), got {tuple(uid.shape)}"
        )
    if num_nodes == 0:
        return
    low = int(uid.min())
    if low < 0:
        raise PopulationGraphError(f"{where} has negative id {low}; ids must be >= 0")
    if int(uid.max()) < num_nodes:
        # num_nodes ids in [0, num_nodes) are unique iff they hit every slot: O(n), no sort.
        seen = torch.zeros(num_nodes, dtype=torch.bool, device=uid.device)
        seen[uid.long()] = True
        if bool(seen.all()):
            return
    ordered = torch.sort(uid).values
    repeated = ordered[1:] == ordered[:-1]
    if bool(repeated.any()):
        dup = int(ordered[1:][repeated][0])
        raise PopulationGraphError(f"{where} must be unique, but id {dup} occurs more than once")


def _check_edge_store(edge_type: tuple, store, counts: dict[str, int]) -> None:
    src, _, dst = edge_type
    where = f"edge type {edge_type!r}"
    for role, node_type in (("source", src), ("destination", dst)):
        if node_type not in counts:
            raise PopulationGraphError(
                f"{where}: {role} node type {node_type!r} is not in the graph; "
                f"node types present: {sorted(counts)}"
            )
    if "edge_index" not in store:
        raise PopulationGraphError(f"{where}: missing 'edge_index' (an integer tensor of shape [2, E])")
    edge_index = store["edge_index"]
    if not isinstance(edge_index, torch.Tensor):
        raise PopulationGraphError(
            f"{where}: edge_index must be an integer tensor of shape [2, E], "
            f"got {type(edge_index).__name__}"
        )
    if not _is_integer_tensor(edge_index):
        raise PopulationGraphError(
            f"{where}: edge_index must be an integer tensor of shape [2, E], got dtype {edge_index.dtype}"
        )
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise PopulationGraphError(
            f"{where}: edge_index must have shape [2, E], got {tuple(edge_index.shape)}"
        )
    num_edges = int(edge_index.shape[1])
    if num_edges > 0:
        lows = edge_index.min(dim=1).values.tolist()
        highs = edge_index.max(dim=1).values.tolist()
        for row, (node_type, role) in enumerate(((src, "src"), (dst, "dst"))):
            n = counts[node_type]
            if lows[row] < 0:
                raise PopulationGraphError(
                    f"{where}: edge_index row {row} ({role} {node_type!r}) has negative index "
                    f"{lows[row]}; indices must be in [0, {n})"
                )
            if highs[row] >= n:
                raise PopulationGraphError(
                    f"{where}: edge_index row {row} ({role} {node_type!r}) has index {highs[row]} "
                    f"but {node_type!r} has {n} nodes; indices must be in [0, {n})"
                )
    if "edge_weight" in store:
        _check_edge_weight(where, store["edge_weight"], num_edges)
    if "time" in store:
        _check_edge_time(where, store["time"], num_edges, store["time_period"] if "time_period" in store else None)
    elif "time_period" in store:
        raise PopulationGraphError(f"{where}: has 'time_period' but no per-edge 'time'; set both or neither")


def _check_edge_weight(where: str, weight: object, num_edges: int) -> None:
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
        got = f"dtype {weight.dtype}" if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise PopulationGraphError(
            f"{where}: edge_weight must be a floating-point tensor of shape [{num_edges}], got {got}"
        )
    if weight.dim() != 1 or weight.shape[0] != num_edges:
        raise PopulationGraphError(
            f"{where}: edge_weight must have shape [{num_edges}] (one weight per edge), "
            f"got {tuple(weight.shape)}"
        )
    if num_edges == 0:
        return
    finite = torch.isfinite(weight)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0])
        raise PopulationGraphError(
            f"{where}: edge_weight must be finite, but edge {bad} has weight {float(weight[bad])}"
        )
    low = float(weight.min())
    if low < 0:
        raise PopulationGraphError(f"{where}: edge_weight must be >= 0, got minimum {low}")


def _check_edge_time(where: str, time: object, num_edges: int, period: object) -> None:
    """``time``: the window index of each edge (int, >= 0); ``time_period``: windows per cycle."""
    if not _is_integer_tensor(time):
        got = f"dtype {time.dtype}" if isinstance(time, torch.Tensor) else type(time).__name__
        raise PopulationGraphError(
            f"{where}: time must be an integer tensor of shape [{num_edges}] (the time window of each "
            f"edge), got {got}"
        )
    if time.dim() != 1 or time.shape[0] != num_edges:
        raise PopulationGraphError(
            f"{where}: time must have shape [{num_edges}] (one window index per edge), got {tuple(time.shape)}"
        )
    last = int(time.max()) if num_edges else -1
    if num_edges and int(time.min()) < 0:
        bad = int((time < 0).nonzero()[0, 0])
        raise PopulationGraphError(
            f"{where}: time must be >= 0 (a window index), but edge {bad} has time {int(time[bad])}"
        )
    if period is not None:
        if isinstance(period, torch.Tensor) and period.dim() == 0 and _is_integer_tensor(period):
            period = int(period)
        if isinstance(period, bool) or not isinstance(period, int) or period < 1 or period <= last:
            raise PopulationGraphError(
                f"{where}: time_period must be an integer > the last time window ({last}), got {period!r}"
            )


def validate_graph(data: HeteroData, required: Mapping[str, Iterable[str]] | None = None) -> dict[str, int]:
    """Check the structure of any heterogeneous graph; return the node count of every node type.

    Checks, for every node type, a known node count, node attributes of first
    dimension equal to it, and (where present) a ``uid`` that is a unique,
    non-negative integer tensor of shape [num_nodes]; for every edge type,
    source and destination node types that exist, an integer ``edge_index``
    of shape [2, E] whose row 0 indexes the source and row 1 the destination
    type, an optional ``edge_weight`` that is a finite, non-negative floating
    tensor of shape [E], and an optional ``time`` (time-varying edges: the
    integer window index >= 0 of each edge, shape [E]) with an optional
    ``time_period`` (an int greater than the last window; see
    :class:`~lpm_graph.core.graph.Graph`).  ``required`` names, per node
    type, the attributes a model reads (e.g. ``{'person': ['uid', 'age']}``);
    a missing node type or attribute is an error that says which.

    Raises:
        PopulationGraphError: on the first violation found.
    """
    if not isinstance(data, HeteroData):
        raise PopulationGraphError(
            f"a population graph must be a torch_geometric.data.HeteroData, got {type(data).__name__}"
        )
    node_types = list(data.node_types)
    for node_type, attrs in dict(required or {}).items():
        if node_type not in node_types:
            raise PopulationGraphError(
                f"the graph has no {node_type!r} node type, which the model reads; node types present: "
                f"{sorted(node_types)}"
            )
        store = data[node_type]
        missing = [a for a in attrs if a not in store]
        if missing:
            raise PopulationGraphError(
                f"node type {node_type!r} is missing attribute(s) {missing} that the model reads; "
                f"present: {sorted(store.keys())}"
                + ("; give every node a stable id, e.g. data[%r].uid = torch.arange(n)" % node_type
                   if "uid" in missing else "")
            )
    counts: dict[str, int] = {}
    for node_type in node_types:
        store = data[node_type]
        counts[node_type] = _node_count(node_type, store)
        _check_node_store(node_type, store, counts[node_type])
    for edge_type in data.edge_types:
        _check_edge_store(edge_type, data[edge_type], counts)
    return counts


def validate_population(
    data: HeteroData, required_person_attrs: Iterable[str] = ("uid", "age")
) -> None:
    """Check a population graph as the importers build it: :func:`validate_graph` with a
    ``person`` node type that has every attribute in ``required_person_attrs``.

    Raises:
        PopulationGraphError: on the first violation found.
    """
    validate_graph(data, {"person": tuple(required_person_attrs)})
