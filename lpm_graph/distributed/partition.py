r"""Split a population graph into parts, one per process, and write each part to disk.

A **partition** assigns every node of every type to one of ``P`` parts
(:func:`partition_graph`):

* ``method="metis"`` (extra ``distributed``: ``pymetis``): METIS k-way on the
  undirected union of every edge type, one *balance constraint per node type*
  (vertex weight 1 in its type's column, 0 elsewhere: each part gets about
  ``1/P`` of the people **and** ``1/P`` of the households, schools ...), and
  edge weights from the contact intensity: the edge's ``edge_weight`` (1
  without) times an optional factor per edge type (``edge_type_weights``, e.g.
  a venue type's ``beta``), scaled to positive integers.  METIS cuts as little
  of that weight as it can; balance is its best effort and is reported;
* ``method="contiguous"``: each node type's nodes sorted by ``uid`` and cut
  into ``P`` equal ranges (the fallback without ``pymetis``, with a
  :class:`~lpm_graph.errors.SimulationWarning`);
* ``method="random"``: every node to a uniformly drawn part (seeded): the
  reference a partitioner is measured against.

**Where an edge lives.** Each edge is stored by the part that owns its
*anchor*: the endpoint of the ``home`` node type (default: the node type
with the most nodes, i.e. people), or its source when neither or both
endpoints are of that type.  So a person's memberships all live with the
person, and a venue whose members are owned by several parts has a *ghost*
copy on each of them.  A part (:func:`split`) holds its own nodes first, in
their original order, then its ghosts ordered by owner; nodes keep their
global ``uid`` (the random numbers are keyed by it,
:mod:`lpm_graph.core.random`), and every per-node and per-edge attribute.

The **halo** of a part is its ghosts: for each node type, the local rows of
the ghosts ordered by owner and how many each owner has (what it sends in a
reduction and receives in a broadcast), and the local rows of its owned nodes
that other parts ghost, ordered by the requesting part (what it receives and
sends) — :class:`Halo`, the plan :mod:`lpm_graph.distributed.halo`
exchanges with ``all_to_all_single``.

:func:`write_partition` writes ``part-<r>-of-<P>.pt`` (a population file,
:func:`~lpm_graph.data.save_population`), ``halo-<r>-of-<P>.pt`` (plain
tensors) and ``partition.json`` (the report) once; :func:`load_part` reads
one rank's files only, so no rank needs the whole graph in memory.

:func:`PartitionReport` gives, per part, the owned nodes of each type, the
edges stored, the ghosts of each type, and overall the cut (edges, and
their weight, whose endpoints lie in different parts) and the imbalance
(largest part over the mean, per node type).
"""
from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from lpm_graph.errors import ConfigError, PopulationFileError, PopulationGraphError, SimulationWarning

__all__ = ["Partition", "PartitionReport", "Halo", "partition_graph", "split", "write_partition", "load_part",
           "METHODS", "anchor_side", "home_type"]

METHODS = ("metis", "contiguous", "random")
#: a node type gets a METIS balance constraint of its own when it has at least this many nodes per part
BALANCE_MIN_PER_PART = 20
#: largest / mean owned home nodes (people) accepted from the per-type balance before balancing the home type alone
HOME_TOLERANCE = 1.05
#: METIS edge weights are integers: a weight equal to the mean maps to this many units
_WEIGHT_UNITS = 100


def home_type(data: HeteroData) -> str:
    """The node type with the most nodes (ties: the first in the graph's order): where edges live."""
    counts = {nt: int(data[nt].num_nodes) for nt in data.node_types}
    return max(counts, key=lambda nt: (counts[nt], -data.node_types.index(nt)))


def anchor_side(edge_type, home: str) -> int:
    """0 if an edge of ``edge_type`` lives with its source's owner, 1 with its destination's (module docstring)."""
    src, _, dst = edge_type
    return 1 if dst == home and src != home else 0


@dataclass
class Partition:
    """A part for every node: ``assignment[node type]`` is ``[N_type]`` (``int64`` in ``[0, parts)``)."""

    parts: int
    assignment: dict[str, Tensor]
    method: str
    home: str
    seconds: float = 0.0
    constraints: list[str] = field(default_factory=list)  # METIS: the node types balanced

    def check(self, data: HeteroData) -> None:
        for nt in data.node_types:
            a = self.assignment.get(nt)
            n = int(data[nt].num_nodes)
            if a is None or a.shape != (n,):
                raise PopulationGraphError(f"partition: node type {nt!r} needs an assignment of shape [{n}], got "
                                           f"{None if a is None else tuple(a.shape)}")
            if n and (int(a.min()) < 0 or int(a.max()) >= self.parts):
                raise PopulationGraphError(f"partition: node type {nt!r} has parts outside [0, {self.parts})")


def _check_parts(parts) -> int:
    if not isinstance(parts, int) or isinstance(parts, bool) or parts < 1:
        raise ConfigError(f"distributed.parts must be a positive integer, got {parts!r}")
    return parts


def _edge_weights(data: HeteroData, edge_type_weights: Mapping | None) -> dict:
    """Per edge type its contact weights ``[E]`` (float64): ``edge_weight`` times the edge type's factor."""
    factors = dict(edge_type_weights or {})
    known = {et[1] for et in data.edge_types} | {et[2] for et in data.edge_types} | {"__".join(et) for et in
                                                                                      data.edge_types}
    unknown = sorted(set(factors) - known)
    if unknown:
        raise ConfigError(f"distributed.edge_type_weights names {unknown}, which no edge type of the population has "
                          f"(give a destination node type, a relation or src__rel__dst)")
    out = {}
    for et in data.edge_types:
        store = data[et]
        e = store.edge_index.size(1)
        w = store.edge_weight.to(torch.float64) if "edge_weight" in store else torch.ones(e, dtype=torch.float64)
        f = factors.get("__".join(et), factors.get(et[2], factors.get(et[1], 1.0)))
        out[et] = w * float(f)
    return out


def _global_edges(data: HeteroData, weights: dict) -> tuple[dict, int, Tensor, Tensor, Tensor]:
    """Every node as one index (types concatenated in graph order) and every edge once per direction."""
    offsets, n = {}, 0
    for nt in data.node_types:
        offsets[nt] = n
        n += int(data[nt].num_nodes)
    rows, cols, ws = [], [], []
    for et in data.edge_types:
        s, d = data[et].edge_index.to(torch.int64)
        rows += [s + offsets[et[0]], d + offsets[et[2]]]
        cols += [d + offsets[et[2]], s + offsets[et[0]]]
        ws += [weights[et], weights[et]]
    row = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.int64)
    col = torch.cat(cols) if cols else torch.zeros(0, dtype=torch.int64)
    w = torch.cat(ws) if ws else torch.zeros(0, dtype=torch.float64)
    keep = row != col  # METIS takes no self loops
    return offsets, n, row[keep], col[keep], w[keep]


def _metis_parts(xadj, adjncy, eweights, vweights: Tensor, parts: int, seed: int) -> Tensor:
    import numpy as np
    import pymetis

    result = pymetis.part_graph(parts, pymetis.CSRAdjacency(xadj.numpy(), adjncy.numpy()),
                                vweights=vweights.numpy().ravel(), eweights=eweights.numpy(), recursive=False,
                                options=pymetis.Options(seed=int(seed)))
    return torch.from_numpy(np.asarray(result.vertex_part, dtype=np.int64))


def _imbalance(part: Tensor, parts: int) -> float:
    counts = torch.bincount(part, minlength=parts).double()
    return float(counts.max() / counts.mean()) if part.numel() else 1.0


def _metis(data: HeteroData, parts: int, weights: dict, seed: int, home: str) -> tuple[dict[str, Tensor], list]:
    offsets, n, row, col, w = _global_edges(data, weights)
    positive = w[w > 0]
    mean = float(positive.mean()) if positive.numel() else 1.0
    units = torch.clamp(torch.round(w / mean * _WEIGHT_UNITS), 1, 2**24).to(torch.int64)
    coo = torch.sparse_coo_tensor(torch.stack([row, col]), units, (n, n), check_invariants=False).coalesce()
    r, c = coo.indices()
    xadj = torch._convert_indices_from_coo_to_csr(r, n, out_int32=False)

    def run(types):
        vweights = torch.zeros(n, len(types), dtype=torch.int64)
        for k, nt in enumerate(types):
            vweights[offsets[nt]:offsets[nt] + int(data[nt].num_nodes), k] = 1
        return _metis_parts(xadj, c, coo.values(), vweights, parts, seed)

    # a constraint per node type with enough nodes to balance (a constraint no partition can meet, such as one
    # community venue, makes METIS give up balancing the others); if METIS leaves the home type (the people,
    # most of the work) unbalanced beyond HOME_TOLERANCE, the home type alone is balanced
    balanced = [nt for nt in data.node_types if int(data[nt].num_nodes) >= BALANCE_MIN_PER_PART * parts]
    if home not in balanced:
        balanced = [home, *balanced]
    part = run(balanced)
    home_part = part[offsets[home]:offsets[home] + int(data[home].num_nodes)]
    if len(balanced) > 1 and _imbalance(home_part, parts) > HOME_TOLERANCE:
        balanced = [home]
        part = run(balanced)
    return {nt: part[offsets[nt]:offsets[nt] + int(data[nt].num_nodes)].clone() for nt in data.node_types}, balanced


def _contiguous(data: HeteroData, parts: int) -> dict[str, Tensor]:
    out = {}
    for nt in data.node_types:
        n = int(data[nt].num_nodes)
        order = torch.argsort(data[nt].uid.to(torch.int64), stable=True)
        a = torch.empty(n, dtype=torch.int64)
        a[order] = torch.arange(n, dtype=torch.int64) * parts // max(n, 1)
        out[nt] = a
    return out


def _random(data: HeteroData, parts: int, seed: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(int(seed))
    return {nt: torch.randint(parts, (int(data[nt].num_nodes),), generator=g) for nt in data.node_types}


def partition_graph(data: HeteroData, parts: int, method: str = "metis", seed: int = 0,
                    edge_type_weights: Mapping | None = None, home: str | None = None) -> Partition:
    """Assign every node of ``data`` to one of ``parts`` parts (module docstring).

    Args:
        data (HeteroData): the population (every node type needs ``uid``).
        parts (int): the number of parts ``P`` (processes).
        method (str): ``"metis"``, ``"contiguous"`` or ``"random"``; ``"metis"``
            without ``pymetis`` installed falls back to ``"contiguous"`` with a
            :class:`~lpm_graph.errors.SimulationWarning`. (default: ``"metis"``)
        seed (int): METIS's seed, or the random partition's. (default: 0)
        edge_type_weights (Mapping, optional): a factor on the contact weight of
            the edges of a destination node type, relation or ``src__rel__dst``.
        home (str, optional): the node type whose owners store the edges.
            (default: :func:`home_type`)
    """
    parts = _check_parts(parts)
    if method not in METHODS:
        raise ConfigError(f"distributed.method must be one of {list(METHODS)}, got {method!r}")
    for nt in data.node_types:
        if "uid" not in data[nt]:
            raise PopulationGraphError(f"node type {nt!r} has no uid; a partitioned run keys its random numbers "
                                       "by uid (lpm_graph/core/random.py)")
    home = home or home_type(data)
    if home not in data.node_types:
        raise ConfigError(f"distributed.home {home!r} is not a node type of the population ({data.node_types})")
    t0 = time.perf_counter()
    constraints: list[str] = []
    if method == "metis":
        try:
            import pymetis  # noqa: F401
        except ImportError:
            warnings.warn(SimulationWarning(
                "pymetis is not installed (pip install 'lpm-graph[distributed]'): partitioning by contiguous uid "
                "ranges instead of METIS, which cuts more edges and exchanges more values per step"), stacklevel=2)
            method = "contiguous"
    if parts == 1:
        assignment = {nt: torch.zeros(int(data[nt].num_nodes), dtype=torch.int64) for nt in data.node_types}
    elif method == "metis":
        assignment, constraints = _metis(data, parts, _edge_weights(data, edge_type_weights), seed, home)
    elif method == "contiguous":
        assignment = _contiguous(data, parts)
    else:
        assignment = _random(data, parts, seed)
    return Partition(parts, assignment, method, home, time.perf_counter() - t0, constraints)


# -- the halo -------------------------------------------------------------------------------------------------------
@dataclass
class Halo:
    """One part's exchange plan of one node type (module docstring).

    Attributes:
        num_local (int): local rows (owned, then ghosts).
        num_owned (int): owned rows (the first ``num_owned``).
        ghost_rows (Tensor): local rows of the ghosts, ordered by owner (``int64``).
        ghost_counts (list[int]): per part, how many of ``ghost_rows`` it owns.
        serve_rows (Tensor): local rows of owned nodes other parts ghost, ordered by the requesting part.
        serve_counts (list[int]): per part, how many of ``serve_rows`` it ghosts.
    """

    num_local: int
    num_owned: int
    ghost_rows: Tensor
    ghost_counts: list[int]
    serve_rows: Tensor
    serve_counts: list[int]

    def to(self, device) -> "Halo":
        return Halo(self.num_local, self.num_owned, self.ghost_rows.to(device), list(self.ghost_counts),
                    self.serve_rows.to(device), list(self.serve_counts))

    def offset(self, rows: int) -> "Halo":
        """The same plan with every row shifted by ``rows`` (a block of a stack)."""
        return Halo(self.num_local, self.num_owned, self.ghost_rows + rows, list(self.ghost_counts),
                    self.serve_rows + rows, list(self.serve_counts))

    @staticmethod
    def concat(halos: Sequence["Halo"]) -> "Halo":
        """The plan of blocks laid end to end (a stack's destinations): per peer, each block's rows in order."""
        parts = len(halos[0].ghost_counts)
        offsets, total = [], 0
        for h in halos:
            offsets.append(total)
            total += h.num_local

        def joined(rows_of, counts_of):
            pieces, counts = [], []
            starts = [0] * len(halos)
            for peer in range(parts):
                n = 0
                for k, h in enumerate(halos):
                    c = counts_of(h)[peer]
                    pieces.append(rows_of(h)[starts[k]:starts[k] + c] + offsets[k])
                    starts[k] += c
                    n += c
                counts.append(n)
            return (torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.int64)), counts

        ghost_rows, ghost_counts = joined(lambda h: h.ghost_rows, lambda h: h.ghost_counts)
        serve_rows, serve_counts = joined(lambda h: h.serve_rows, lambda h: h.serve_counts)
        return Halo(total, sum(h.num_owned for h in halos), ghost_rows, ghost_counts, serve_rows, serve_counts)

    def payload(self) -> dict:
        return {"num_local": self.num_local, "num_owned": self.num_owned, "ghost_rows": self.ghost_rows,
                "ghost_counts": torch.tensor(self.ghost_counts, dtype=torch.int64), "serve_rows": self.serve_rows,
                "serve_counts": torch.tensor(self.serve_counts, dtype=torch.int64)}

    @classmethod
    def from_payload(cls, p: Mapping) -> "Halo":
        return cls(int(p["num_local"]), int(p["num_owned"]), p["ghost_rows"].to(torch.int64),
                   [int(c) for c in p["ghost_counts"]], p["serve_rows"].to(torch.int64),
                   [int(c) for c in p["serve_counts"]])


@dataclass
class PartInfo:
    """What a rank knows of the whole partition besides its own part."""

    rank: int
    parts: int
    home: str
    method: str
    num_nodes: dict[str, int]                 # global node counts per type
    has_ghosts: dict[str, bool]               # a node type with a ghost on some part: its products exchange
    halos: dict[str, Halo] = field(default_factory=dict)

    def payload(self) -> dict:
        return {"rank": self.rank, "parts": self.parts, "home": self.home, "method": self.method,
                "num_nodes": dict(self.num_nodes), "has_ghosts": dict(self.has_ghosts),
                "halos": {nt: h.payload() for nt, h in self.halos.items()}}

    @classmethod
    def from_payload(cls, p: Mapping) -> "PartInfo":
        return cls(int(p["rank"]), int(p["parts"]), str(p["home"]), str(p["method"]),
                   {k: int(v) for k, v in p["num_nodes"].items()}, {k: bool(v) for k, v in p["has_ghosts"].items()},
                   {nt: Halo.from_payload(h) for nt, h in p["halos"].items()})


def _edge_owner(data: HeteroData, partition: Partition, et) -> Tensor:
    side = anchor_side(et, partition.home)
    ends = data[et].edge_index[side].to(torch.int64)
    return partition.assignment[et[2] if side else et[0]][ends]


def _needed(data: HeteroData, partition: Partition, owners: dict) -> dict[str, list[Tensor]]:
    """Per node type and part, the sorted global indices of the nodes the part's edges touch."""
    P = partition.parts
    need: dict[str, list[list[Tensor]]] = {nt: [[] for _ in range(P)] for nt in data.node_types}
    for et in data.edge_types:
        s, d = data[et].edge_index.to(torch.int64)
        own = owners[et]
        for nt, ends in ((et[0], s), (et[2], d)):
            key = own * int(data[nt].num_nodes) + ends
            key = torch.unique(key)
            part, idx = key // max(1, int(data[nt].num_nodes)), key % max(1, int(data[nt].num_nodes))
            counts = torch.bincount(part, minlength=P).tolist()
            for r, chunk in enumerate(torch.split(idx, counts)):
                if chunk.numel():
                    need[nt][r].append(chunk)
    return {nt: [torch.unique(torch.cat(c)) if c else torch.zeros(0, dtype=torch.int64) for c in per]
            for nt, per in need.items()}


class _Layout:
    """Per node type and part: global index of every local row (owned, then ghosts by owner)."""

    def __init__(self, data: HeteroData, partition: Partition):
        self.partition = partition
        owners = {et: _edge_owner(data, partition, et) for et in data.edge_types}
        self.edge_owner = owners
        needed = _needed(data, partition, owners)
        self.rows: dict[str, list[Tensor]] = {}
        self.num_owned: dict[str, list[int]] = {}
        for nt in data.node_types:
            a = partition.assignment[nt]
            per_rows, per_owned = [], []
            for r in range(partition.parts):
                owned = (a == r).nonzero().flatten()
                touched = needed[nt][r]
                ghosts = touched[a[touched] != r]
                ghosts = ghosts[torch.argsort(a[ghosts] * max(1, a.numel()) + ghosts)]  # by owner, then index
                per_rows.append(torch.cat([owned, ghosts]))
                per_owned.append(int(owned.numel()))
            self.rows[nt], self.num_owned[nt] = per_rows, per_owned

    def halo(self, nt: str, rank: int) -> Halo:
        a = self.partition.assignment[nt]
        P = self.partition.parts
        rows = self.rows[nt][rank]
        n_owned = self.num_owned[nt][rank]
        ghosts = rows[n_owned:]
        ghost_counts = torch.bincount(a[ghosts], minlength=P).tolist()
        # the owned rows other parts ghost, in each requester's ghost order (owner, then global index)
        local_of = torch.full((a.numel(),), -1, dtype=torch.int64)
        local_of[rows[:n_owned]] = torch.arange(n_owned)
        serve, serve_counts = [], []
        for peer in range(P):
            if peer == rank:
                serve_counts.append(0)
                continue
            theirs = self.rows[nt][peer][self.num_owned[nt][peer]:]
            mine = theirs[a[theirs] == rank]
            serve.append(local_of[mine])
            serve_counts.append(int(mine.numel()))
        serve_rows = torch.cat(serve) if serve else torch.zeros(0, dtype=torch.int64)
        return Halo(int(rows.numel()), n_owned, torch.arange(n_owned, rows.numel(), dtype=torch.int64), ghost_counts,
                    serve_rows, serve_counts)


def _select_store(src_store, dst_store, index: Tensor, n: int, dim: int) -> None:
    for key, value in src_store.items():
        if key == "num_nodes":
            continue
        if isinstance(value, Tensor) and value.dim() > dim and value.size(dim) == n:
            dst_store[key] = value.index_select(dim, index)
        else:
            dst_store[key] = value


def split(data: HeteroData, partition: Partition, rank: int, layout: _Layout | None = None) -> tuple[HeteroData,
                                                                                                     PartInfo]:
    """Part ``rank`` of ``data``: its owned nodes, its ghosts and the edges it stores, with its halo plan."""
    partition.check(data)
    if not 0 <= rank < partition.parts:
        raise ConfigError(f"rank {rank} is outside the {partition.parts} parts of the partition")
    layout = layout or _Layout(data, partition)
    out = HeteroData()
    local_of = {}
    for nt in data.node_types:
        rows = layout.rows[nt][rank]
        n = int(data[nt].num_nodes)
        _select_store(data[nt], out[nt], rows, n, 0)
        out[nt].num_nodes = int(rows.numel())
        m = torch.full((n,), -1, dtype=torch.int64)
        m[rows] = torch.arange(rows.numel())
        local_of[nt] = m
    for et in data.edge_types:
        store = data[et]
        e = store.edge_index.size(1)
        keep = (layout.edge_owner[et] == rank).nonzero().flatten()
        for key, value in store.items():
            if key == "edge_index":
                s, d = value.to(torch.int64)[:, keep]
                out[et].edge_index = torch.stack([local_of[et[0]][s], local_of[et[2]][d]]).to(value.dtype)
            elif isinstance(value, Tensor) and value.dim() >= 1 and value.size(0) == e:
                out[et][key] = value.index_select(0, keep)
            else:
                out[et][key] = value
    for key, value in data._global_store.items():  # graph-level attributes (HeteroData keeps them there)
        out[key] = value
    halos = {nt: layout.halo(nt, rank) for nt in data.node_types}
    has_ghosts = {nt: any(len(layout.rows[nt][r]) > layout.num_owned[nt][r] for r in range(partition.parts))
                  for nt in data.node_types}
    info = PartInfo(rank, partition.parts, partition.home, partition.method,
                    {nt: int(data[nt].num_nodes) for nt in data.node_types}, has_ghosts, halos)
    return out, info


# -- the report -----------------------------------------------------------------------------------------------------
@dataclass
class PartitionReport:
    """Cut, balance and halo of a partition (module docstring)."""

    parts: int
    method: str
    seconds: float
    constraints: list[str]
    edges: int
    cut_edges: int
    cut_fraction: float
    cut_weight_fraction: float
    owned: list[dict[str, int]]
    ghosts: list[dict[str, int]]
    stored_edges: list[int]
    imbalance: dict[str, float]

    @classmethod
    def of(cls, data: HeteroData, partition: Partition, layout: _Layout | None = None,
           edge_type_weights: Mapping | None = None) -> "PartitionReport":
        layout = layout or _Layout(data, partition)
        weights = _edge_weights(data, edge_type_weights)
        edges = cut = 0
        w_all = w_cut = 0.0
        for et in data.edge_types:
            s, d = data[et].edge_index.to(torch.int64)
            crossing = partition.assignment[et[0]][s] != partition.assignment[et[2]][d]
            edges += s.numel()
            cut += int(crossing.sum())
            w_all += float(weights[et].sum())
            w_cut += float(weights[et][crossing].sum())
        P = partition.parts
        owned = [{nt: layout.num_owned[nt][r] for nt in data.node_types} for r in range(P)]
        ghosts = [{nt: int(layout.rows[nt][r].numel()) - layout.num_owned[nt][r] for nt in data.node_types}
                  for r in range(P)]
        stored = [sum(int((layout.edge_owner[et] == r).sum()) for et in data.edge_types) for r in range(P)]
        imbalance = {}
        for nt in data.node_types:
            counts = [o[nt] for o in owned]
            mean = sum(counts) / P
            imbalance[nt] = max(counts) / mean if mean else 1.0
        return cls(P, partition.method, round(partition.seconds, 3), list(partition.constraints), edges, cut, cut / edges if edges else 0.0,
                   w_cut / w_all if w_all else 0.0, owned, ghosts, stored, imbalance)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def summary(self) -> str:
        halo = [sum(g.values()) for g in self.ghosts]
        imb = ", ".join(f"{nt} {v:.3f}" for nt, v in self.imbalance.items())
        balanced = f", balancing {'+'.join(self.constraints)}" if self.constraints else ""
        return (f"{self.parts} parts ({self.method}{balanced}, {self.seconds:.2f} s): cut {self.cut_edges:,} of {self.edges:,} "
                f"edges ({100 * self.cut_fraction:.1f}%, {100 * self.cut_weight_fraction:.1f}% of the contact weight); "
                f"ghosts per part {halo}; imbalance (largest / mean) {imb}")


# -- files ----------------------------------------------------------------------------------------------------------
def _part_name(kind: str, rank: int, parts: int) -> str:
    return f"{kind}-{rank}-of-{parts}.pt"


def write_partition(data: HeteroData, partition: Partition, folder: str | os.PathLike,
                    edge_type_weights: Mapping | None = None) -> PartitionReport:
    """Write every part of ``data`` to ``folder`` (module docstring); returns the report (also ``partition.json``).

    ``partition.json`` is written last: a folder without it is not a complete partition.
    """
    from lpm_graph.data.io import save_population
    from lpm_graph.tasks.simulate import atomic_write

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "partition.json").unlink(missing_ok=True)
    layout = _Layout(data, partition)
    for r in range(partition.parts):
        part, info = split(data, partition, r, layout)
        save_population(part, folder / _part_name("part", r, partition.parts))
        atomic_write(folder / _part_name("halo", r, partition.parts), lambda p, info=info: torch.save(info.payload(), p))
    report = PartitionReport.of(data, partition, layout, edge_type_weights)
    meta = {"parts": partition.parts, "method": partition.method, "home": partition.home, "report": report.to_dict()}
    atomic_write(folder / "partition.json", lambda p: p.write_text(json.dumps(meta, indent=1) + "\n"))
    return report


def load_part(folder: str | os.PathLike, rank: int, parts: int) -> tuple[HeteroData, PartInfo]:
    """Read part ``rank`` of a partition written by :func:`write_partition` into ``parts`` parts."""
    from lpm_graph.data.io import load_population

    folder = Path(folder)
    meta_path = folder / "partition.json"
    if not meta_path.is_file():
        raise PopulationFileError(f"distributed.partition={folder}: no partition.json there (not a partition "
                                  "written by write_partition, or its writing did not finish); write it again")
    meta = json.loads(meta_path.read_text())
    if int(meta["parts"]) != parts:
        raise ConfigError(f"distributed.partition={folder} has {meta['parts']} parts but the run has {parts} "
                          f"processes; launch with --nproc_per_node={meta['parts']} (times the nodes) or write a "
                          f"partition into {parts} parts")
    data = load_population(folder / _part_name("part", rank, parts))
    path = folder / _part_name("halo", rank, parts)
    try:
        info = PartInfo.from_payload(torch.load(path, weights_only=True))
    except (OSError, RuntimeError, KeyError) as e:
        raise PopulationFileError(f"{path}: cannot read the halo of part {rank} ({e}); write the partition again") \
            from None
    if info.rank != rank or info.parts != parts:
        raise PopulationFileError(f"{path} holds part {info.rank} of {info.parts}, not {rank} of {parts}")
    return data, info


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m lpm_graph.distributed.partition --parts P --out DIR [--method metis] [overrides ...]``: build the
    population of the config (Hydra overrides, as for ``lpm-graph``), partition it and write the parts."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m lpm_graph.distributed.partition",
                                     description="write a population's partition for torchrun runs "
                                                 "(distributed.partition=<out>)")
    parser.add_argument("--parts", type=int, required=True, help="processes of the runs that read it")
    parser.add_argument("--out", required=True, help="folder to write (part-<r>-of-<P>.pt, halo-*, partition.json)")
    parser.add_argument("--method", default="metis", choices=METHODS)
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. population.num_people=1000000 seed=0")
    args = parser.parse_args(argv)
    from hydra import compose, initialize_config_dir

    from lpm_graph.cli import config_dir
    from lpm_graph.tasks.simulate import instantiate_config

    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(args.overrides))
        data = instantiate_config(cfg.population)
        partition = partition_graph(data, args.parts, args.method, seed=int(cfg.seed))
        report = write_partition(data, partition, args.out)
    except (ConfigError, PopulationGraphError) as e:
        print(f"lpm-graph: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"partition written to {args.out}: {report.summary()}", file=sys.stderr)


if __name__ == "__main__":
    main()
