r"""A heterogeneous graph laid out for simulation, built once per graph and model.

:class:`Graph` turns any ``torch_geometric.data.HeteroData`` into what the
processes of a model read, and nothing more:

* per node type: its count and stable ``uid`` (keys the random numbers:
  :mod:`lpm_graph.core.random`), and the node attributes a process reads;
* per edge type ``(src, rel, dst)`` that a process reads — any pair of node
  types, e.g. person → venue, venue → venue, firm → retailer — a
  :class:`~lpm_graph.nn.SparseAdjacency` (CSR with ``int32`` indices and its
  cached transpose) of shape ``[num_dst, num_src]``;
* *stacks*: several edge types from one source type laid side by side over
  their concatenated destinations, so that (for example) transmission
  through every venue type is two sparse products per step, not two per type;
* *groupings* of one node type into categories — a categorical attribute
  (sector, borough) or bins of a numeric one (age) — for per-group
  parameters and grouped observables.

What a graph must contain comes from what the model's processes declare they
read (:meth:`lpm_graph.core.process.Process.requirements`): ``person.age``
is needed only by a process or observable that groups people by age.

**Edge values that change during a run** (contact weights scaled by
behaviour) are passed to :func:`~lpm_graph.nn.spmm` as ``values`` in the
layout's CSR order; :meth:`SparseAdjacency.values_from_edges` maps per-edge
values of the ``HeteroData`` order there.  Their gradient is the SDDMM on the
edges, with no per-edge autograd state.

**Time-varying edges.** An edge type with a per-edge integer ``time``
attribute (the window of each edge: a day, or whatever window the importer
aggregated to) becomes one layout per distinct window. Step ``t`` uses
window ``t mod P``, where ``P`` is the edge store's ``time_period`` if set,
else the last window + 1: the recorded windows **repeat cyclically**, so a
3-day contact study drives a 120-day simulation as days 0, 1, 2, 0, 1, 2, ...
A window with no edges (within the period) is an empty layout: no contact
that step. One step consumes one window, whatever its length (steps are
``model.dt`` days; match the importer's window to it).

Nothing here depends on the node order beyond the indices themselves, so a
permuted graph with the same uids simulates identically.

**A part of a partitioned graph** (:mod:`lpm_graph.distributed`) is a Graph
of one process's nodes and ghosts whose layouts exchange their ghost rows
(``SparseAdjacency.src_halo`` / ``dst_halo``) and whose ``partition``
reduces across processes; in one process ``partition`` is ``None``,
:meth:`Graph.all_sum` is the identity and :meth:`Graph.total_nodes` the
node counts.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from lpm_graph.data.validate import validate_graph
from lpm_graph.errors import ConfigError, PopulationGraphError
from lpm_graph.nn.sparse import SparseAdjacency

__all__ = ["Graph", "Grouping", "Requirements", "Stack", "EdgeType", "bin_labels", "bin_index"]

EdgeType = tuple[str, str, str]


def bin_labels(bins: Sequence[float]) -> list[str]:
    """``["0-10", "10-20", ..., "80+"]`` from the lower edges of bins."""
    b = [int(x) if float(x).is_integer() else x for x in bins]
    return [f"{lo}-{hi}" for lo, hi in zip(b[:-1], b[1:])] + [f"{b[-1]}+"]


def bin_index(values: Tensor, bins: Sequence[float]) -> Tensor:
    """Index of the bin of each value: bin ``g`` is ``[bins[g], bins[g+1])``, the last open."""
    if not values.is_floating_point():  # integer edges would truncate a fractional bin edge (2.5 -> 2)
        values = values.to(torch.float64)
    edges = torch.as_tensor(list(bins)[1:], dtype=values.dtype, device=values.device)
    return torch.bucketize(values, edges, right=True)


@dataclass(frozen=True)
class Grouping:
    """Categories of the nodes of one type, for per-group parameters and grouped observables.

    Args:
        name (str): how processes and observables refer to it (e.g. ``"age"``).
        node_type (str): the node type grouped (default ``"person"``).
        attribute (str): the node attribute read (default: ``name``).
        bins (Sequence[float], optional): lower edges of bins of a numeric
            attribute, strictly increasing (``[0, 10, ..., 80]``: ten-year age
            groups, the last open).  Without bins the attribute holds integer
            category codes ``0..K-1`` (importers write string attributes so,
            with the labels in ``<attribute>_categories``).
        labels (Sequence[str], optional): category labels; default from the
            bins, or from ``<attribute>_categories``, or the codes.
    """

    name: str
    node_type: str = "person"
    attribute: str | None = None
    bins: tuple[float, ...] | None = None
    labels: tuple[str, ...] | None = None

    def __post_init__(self):
        object.__setattr__(self, "attribute", self.attribute or self.name)
        if self.bins is not None:
            bins = tuple(float(b) for b in self.bins)
            if not bins or any(b <= a for a, b in zip(bins, bins[1:])):
                raise ConfigError(f"model.groupings.{self.name}.bins must be strictly increasing lower edges, "
                                  f"got {list(self.bins)}")
            object.__setattr__(self, "bins", bins)
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
            if self.bins is not None and len(self.labels) != len(self.bins):
                raise ConfigError(f"model.groupings.{self.name}: {len(self.labels)} labels for "
                                  f"{len(self.bins)} bins")

    @property
    def size(self) -> int | None:
        """Number of groups if known without the graph (binned or labelled), else ``None``."""
        if self.bins is not None:
            return len(self.bins)
        return len(self.labels) if self.labels is not None else None

    @classmethod
    def from_config(cls, name: str, spec) -> "Grouping":
        if isinstance(spec, Grouping):
            return spec
        spec = dict(spec or {})
        unknown = set(spec) - {"node_type", "attribute", "bins", "labels"}
        if unknown:
            raise ConfigError(f"model.groupings.{name}: unknown keys {sorted(unknown)}; "
                              "use node_type, attribute, bins, labels")
        return cls(name=name, **spec)


@dataclass
class Stack:
    """Edge types from one source type side by side over their concatenated destinations.

    Attributes:
        edge_types (list): the stacked edge types, in order.
        adjacency (SparseAdjacency): ``[sum of destination counts, num_src]``.
        offsets (dict): edge type -> the first row of its destinations.
        type_index (Tensor): ``[V]`` position in ``edge_types`` of each row's type.
        inverse_weight (Tensor): ``[V]``, ``1 / (total incoming weight)``, 0 for rows without edges.
    """

    edge_types: list[EdgeType]
    adjacency: SparseAdjacency
    offsets: dict[EdgeType, int]
    type_index: Tensor
    inverse_weight: Tensor

    @property
    def num_rows(self) -> int:
        return self.adjacency.shape[0]

    def to(self, device) -> "Stack":
        return Stack(self.edge_types, self.adjacency.to(device), self.offsets, self.type_index.to(device),
                     self.inverse_weight.to(device))

    def nbytes(self) -> int:
        return self.adjacency.nbytes() + sum(t.numel() * t.element_size()
                                             for t in (self.type_index, self.inverse_weight))


@dataclass
class Requirements:
    """What a model reads from a graph: collected from its processes and observables."""

    attributes: dict[str, set[str]] = field(default_factory=dict)   # node type -> attributes
    edge_types: set[EdgeType] = field(default_factory=set)
    stacks: set[frozenset] = field(default_factory=set)   # each a frozenset of edge types
    groupings: dict[str, Grouping | None] = field(default_factory=dict)  # None: the model's grouping of that name

    def need(self, node_type: str, *attributes: str) -> None:
        self.attributes.setdefault(node_type, set()).update(attributes)

    def merge(self, other: "Requirements") -> None:
        for nt, attrs in other.attributes.items():
            self.need(nt, *attrs)
        self.edge_types |= other.edge_types
        self.stacks |= other.stacks
        self.groupings.update(other.groupings)


class Graph:
    """A ``HeteroData`` graph laid out for the processes of one model.

    Args:
        data (HeteroData): the graph (validated here).
        requirements (Requirements): what the model reads.
        dtype: floating type of edge weights and per-node factors. (default: float32)

    Use :meth:`lpm_graph.core.Model.prepare` rather than building one by hand.
    """

    def __init__(self, data: HeteroData, requirements: Requirements | None = None,
                 dtype: torch.dtype = torch.float32):
        req = requirements or Requirements()
        need = {nt: {"uid", *attrs} for nt, attrs in req.attributes.items()}
        for g in req.groupings.values():
            need.setdefault(g.node_type, {"uid"}).add(g.attribute)
        for et in [*sorted(req.edge_types), *(et for s in req.stacks for et in sorted(s))]:
            if et not in data.edge_types:
                present = sorted(data.edge_types)
                raise PopulationGraphError(
                    f"edge type {tuple(et)} is not in the graph, but the model reads it; edge types present: "
                    f"{present}. Add the edges or remove the process that reads them")
            for nt in (et[0], et[2]):
                need.setdefault(nt, {"uid"})
        counts = validate_graph(data, {nt: sorted(a) for nt, a in need.items()})
        self.data = data
        self.dtype = dtype
        self.requirements = req
        self.num_nodes: dict[str, int] = {nt: counts[nt] for nt in need}
        self.uid: dict[str, Tensor] = {nt: data[nt].uid.to(torch.int64) for nt in need}
        self._layouts: dict[EdgeType, SparseAdjacency] = {}
        self._windows: dict[EdgeType, tuple[int, dict[int, SparseAdjacency]]] = {}
        self._empty: dict[EdgeType, SparseAdjacency] = {}
        for et in sorted(req.edge_types):
            self._build_layout(et)
        # a stack's rows follow the graph's own edge-type order, whatever order the process lists them in
        self._stacks: dict[frozenset, Stack] = {
            s: self._build_stack(tuple(et for et in data.edge_types if et in s)) for s in req.stacks}
        self._groups: dict[str, tuple[Tensor, list[str]]] = {}
        self._group_counts: dict[str, Tensor] = {}
        self._group_adj: dict[str, SparseAdjacency] = {}
        self.groupings = dict(req.groupings)
        for name in self.groupings:
            self._build_group(name)
        #: the partition this graph is a part of (lpm_graph.distributed.halo.PartitionedGraph); None in one process
        self.partition = None

    # -- the whole of a partitioned graph ------------------------------------
    def all_sum(self, x: Tensor) -> Tensor:
        """The sum of a per-part tensor over every part (differentiable); ``x`` itself in one process."""
        return x if self.partition is None else self.partition.all_sum(x)

    def total_nodes(self) -> dict[str, int]:
        """Nodes per type in the whole graph (of a part: over every part, ghosts not counted)."""
        return dict(self.num_nodes) if self.partition is None else self.partition.total_nodes(self.num_nodes)

    # -- nodes ---------------------------------------------------------------
    def attribute(self, node_type: str, name: str) -> Tensor:
        """A node attribute (declared in the model's requirements)."""
        if name not in self.requirements.attributes.get(node_type, set()) and not any(
                g.node_type == node_type and g.attribute == name for g in self.groupings.values()):
            raise PopulationGraphError(f"node attribute {node_type}.{name} was not declared by any process; "
                                       "declare it in the process's requirements()")
        return self.data[node_type][name].to(self.device)

    # -- edges ---------------------------------------------------------------
    def _build_layout(self, et: EdgeType) -> None:
        store = self.data[et]
        size = (self.data[et[0]].num_nodes, self.data[et[2]].num_nodes)
        weight = getattr(store, "edge_weight", None)
        if "time" in store:
            time = store.time.to(torch.int64)
            period = int(store.time_period) if "time_period" in store else (int(time.max()) + 1 if time.numel() else 1)
            order = torch.argsort(time, stable=True)
            windows, counts = torch.unique_consecutive(time[order], return_counts=True)
            layouts, start = {}, 0
            for window, count in zip(windows.tolist(), counts.tolist()):
                idx = order[start:start + count]
                start += count
                layouts[window] = SparseAdjacency.from_edge_index(
                    store.edge_index[:, idx], None if weight is None else weight[idx], size, self.dtype)
            self._windows[et] = (period, layouts)
            self._empty[et] = SparseAdjacency.from_edge_index(torch.zeros(2, 0, dtype=torch.int64), None, size,
                                                              self.dtype)
        else:
            self._layouts[et] = SparseAdjacency.from_edge_index(store.edge_index, weight, size, self.dtype)

    def window(self, edge_type: EdgeType, t: int | None) -> int | None:
        """The window of a time-varying edge type used at step ``t`` (``t mod period``); None if static."""
        entry = self._windows.get(tuple(edge_type))
        if entry is None:
            return None
        return 0 if t is None else int(t) % entry[0]

    def time_varying(self, edge_type: EdgeType) -> bool:
        return tuple(edge_type) in self._windows

    def layout(self, edge_type: EdgeType, t: int | None = None) -> SparseAdjacency:
        """The ``[num_dst, num_src]`` layout of ``edge_type`` in effect at step ``t``."""
        edge_type = tuple(edge_type)
        static = self._layouts.get(edge_type)
        if static is not None:
            return static
        entry = self._windows.get(edge_type)
        if entry is not None:
            return entry[1].get(self.window(edge_type, t), self._empty[edge_type])
        raise PopulationGraphError(f"edge type {edge_type} was not declared by any process of the model "
                                   f"(declared: {sorted([*self._layouts, *self._windows])})")

    def _build_stack(self, edge_types: tuple[EdgeType, ...]) -> Stack:
        srcs = {et[0] for et in edge_types}
        if len(srcs) != 1:
            raise ConfigError(f"a stack of edge types needs one source node type, got {sorted(srcs)}")
        for et in edge_types:
            if "time" in self.data[et]:
                raise PopulationGraphError(
                    f"edge type {et}: time-varying edges cannot be stacked with others; drop its 'time' "
                    "attribute, or model the changing contacts as an edge type of their own")
        src = srcs.pop()
        dtype = self.dtype
        rows, cols, weights, type_index, offsets = [], [], [], [], {}
        offset = 0
        for k, et in enumerate(edge_types):
            store = self.data[et]
            n_v = int(self.data[et[2]].num_nodes)
            s, d = store.edge_index
            w = getattr(store, "edge_weight", None)
            rows.append(s)
            cols.append(d + offset)
            weights.append(torch.ones(s.numel(), dtype=dtype) if w is None else w.to(dtype))
            type_index.append(torch.full((n_v,), k, dtype=torch.int64))
            offsets[et] = offset
            offset += n_v
        edge_index = torch.stack([torch.cat(rows), torch.cat(cols)])
        weight = torch.cat(weights)
        adj = SparseAdjacency.from_edge_index(edge_index, weight, (int(self.data[src].num_nodes), offset), dtype)
        total = torch.zeros(offset, dtype=dtype).index_add_(0, edge_index[1], weight)
        inverse = torch.where(total > 0, 1.0 / total.clamp_min(torch.finfo(dtype).tiny), torch.zeros((), dtype=dtype))
        return Stack(list(edge_types), adj, offsets, torch.cat(type_index), inverse)

    def stack(self, edge_types: Iterable[EdgeType]) -> Stack:
        """The stacked layout of ``edge_types`` (declared as a stack in the model's requirements); its
        rows follow the graph's edge-type order (:attr:`Stack.edge_types`)."""
        key = frozenset(tuple(et) for et in edge_types)
        if key not in self._stacks:
            raise PopulationGraphError(f"the stack {sorted(key)} was not declared by any process of the model")
        return self._stacks[key]

    # -- groupings -----------------------------------------------------------
    def _build_group(self, name: str) -> None:
        g = self.groupings[name]
        values = self.data[g.node_type][g.attribute]
        where = f"grouping {name!r} (attribute {g.node_type}.{g.attribute})"
        if g.bins is not None:
            if not values.is_floating_point() and values.dtype not in (torch.int32, torch.int64):
                raise PopulationGraphError(f"{where} needs a numeric attribute for its bins, got {values.dtype}")
            index = bin_index(values, g.bins)
            labels = list(g.labels) if g.labels else bin_labels(g.bins)
        else:
            if values.is_floating_point() or values.dim() != 1:
                raise PopulationGraphError(f"{where} must hold integer category codes of shape [N], got "
                                           f"{values.dtype} {tuple(values.shape)}; give bins for a numeric one")
            index = values.to(torch.int64)
            if index.numel() and int(index.min()) < 0:
                bad = int((index < 0).nonzero()[0])
                raise PopulationGraphError(f"{where}: node {bad} has code {int(index[bad])} (missing); every node "
                                           "needs a category")
            categories = None
            key = f"{g.attribute}_categories"
            if key in self.data[g.node_type]:
                categories = json.loads(self.data[g.node_type][key])
            labels = list(g.labels) if g.labels else ([str(c) for c in categories] if categories is not None else
                                                      [str(c) for c in range(int(index.max()) + 1 if index.numel()
                                                                             else 0)])
            if index.numel() and int(index.max()) >= len(labels):
                raise PopulationGraphError(f"{where}: code {int(index.max())} has no label among {labels}")
        self._groups[name] = (index, labels)
        self._group_counts[name] = torch.bincount(index, minlength=len(labels))

    def group_index(self, name: str) -> Tensor:
        """``[N]`` group of every node of the grouping's node type."""
        return self._groups[name][0]

    def group_labels(self, name: str) -> list[str]:
        return list(self._groups[name][1])

    def group_counts(self, name: str) -> Tensor:
        """``[G]`` nodes per group (``int64``), counted once when the graph is built."""
        return self._group_counts[name]

    def group_sizes(self) -> dict[str, int]:
        return {name: len(labels) for name, (_, labels) in self._groups.items()}

    def group_adjacency(self, name: str) -> SparseAdjacency:
        """The ``[G, N]`` node -> group indicator as a CSR layout (a grouped sum is one sparse product)."""
        adj = self._group_adj.get(name)
        if adj is None:
            index = self.group_index(name)
            n = index.numel()
            nodes = torch.arange(n, device=index.device)
            adj = SparseAdjacency.from_edge_index(torch.stack([nodes, index]), None, (n, len(self._groups[name][1])),
                                                  self.dtype)
            self._group_adj[name] = adj
        return adj

    # -- device, size --------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(iter(self.uid.values())).device if self.uid else torch.device("cpu")

    def to(self, device) -> "Graph":
        out = object.__new__(Graph)
        out.__dict__.update(self.__dict__)
        out.uid = {k: v.to(device) for k, v in self.uid.items()}
        out._layouts = {k: v.to(device) for k, v in self._layouts.items()}
        out._windows = {k: (p, {w: a.to(device) for w, a in layouts.items()}) for k, (p, layouts) in
                        self._windows.items()}
        out._empty = {k: v.to(device) for k, v in self._empty.items()}
        out._stacks = {k: v.to(device) for k, v in self._stacks.items()}
        out._groups = {k: (i.to(device), labels) for k, (i, labels) in self._groups.items()}
        out._group_counts = {k: c.to(device) for k, c in self._group_counts.items()}
        out._group_adj = {k: v.to(device) for k, v in self._group_adj.items()}
        out.partition = None if self.partition is None else self.partition.to(device)
        return out

    def layouts(self) -> list[SparseAdjacency]:
        """Every layout held (static, per window, stacked)."""
        out = [*self._layouts.values(), *(a for _, ws in self._windows.values() for a in ws.values())]
        return out + [s.adjacency for s in self._stacks.values()]

    def num_edges(self) -> int:
        return sum(a.num_edges for a in self.layouts())

    def edge_counts(self) -> dict[EdgeType, int]:
        """Stored edges per declared edge type (of a time-varying one, its largest window; of a stacked one,
        its rows' edges in the stack): what a per-edge workspace (:meth:`Process.workspace` keyed by an edge
        type) and a kept copy of a layout (:meth:`Process.layout_copies`) are sized by."""
        out = {et: a.num_edges for et, a in self._layouts.items()}
        for et, (_, windows) in self._windows.items():
            out[et] = max([0, *(a.num_edges for a in windows.values())])
        for stack in self._stacks.values():
            crow = stack.adjacency.csr.crow_indices()
            rows = torch.bincount(stack.type_index, minlength=len(stack.edge_types)).tolist()
            for et, n in zip(stack.edge_types, rows):
                off = stack.offsets[et]
                out.setdefault(et, int(crow[off + n]) - int(crow[off]))
        return out

    def nbytes(self) -> int:
        """Bytes held by the layouts and per-node tensors built here."""
        total = sum(u.numel() * u.element_size() for u in self.uid.values())
        total += sum(a.nbytes() for a in [*self._layouts.values(), *(a for _, ws in self._windows.values()
                                                                      for a in ws.values())])
        total += sum(s.nbytes() for s in self._stacks.values())
        return total + sum(i.numel() * i.element_size() for i, _ in self._groups.values())

    def __repr__(self) -> str:
        return (f"Graph(num_nodes={self.num_nodes}, edge_types={sorted([*self._layouts, *self._windows])}, "
                f"stacks={[list(s) for s in self._stacks]}, groupings={self.group_sizes()})")
