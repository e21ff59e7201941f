r"""The halo exchange: sums through a graph split across processes, with gradients.

A part (:mod:`lpm_graph.distributed.partition`) holds its own nodes and
*ghost* rows of the nodes other parts own that its edges touch.  A sparse
product :math:`\mathbf{Y} = \mathbf{A}\mathbf{X}` of a layout whose source or
destination type has ghosts becomes

.. math::

    \mathbf{Y} = \mathcal{R}\big(\mathbf{A}_{\mathrm{local}}\,\mathcal{B}(\mathbf{X})\big)

with two exchanges over ``all_to_all_single`` (uneven splits; gloo on CPU,
nccl on GPU):

* :math:`\mathcal{B}` (*broadcast*, :class:`HaloBroadcast`): each ghost row of
  the source takes its owner's value, so a part's sum reads its ghosts'
  current values;
* :math:`\mathcal{R}` (*reduce*, :class:`HaloReduce`): each ghost row of the
  destination, a partial sum over this part's edges, is sent to its owner and
  added there; the ghost rows of the result are 0 (not this part's to hold).

The partial sums of a venue whose members live on several parts thus go to
the venue's owner, which adds them; the venue's value returns to its ghosts
through the broadcast of the next product that reads it (``λ = Aᵀ p``).  The
two maps are each other's adjoints, so each is the other's backward
(:math:`\mathcal{R}^\top = \mathcal{B}`): gradients flow through the
exchange, and a loss computed on every rank from the reduced observables
(:func:`all_sum`, whose backward sums the ranks' gradients) gives each rank
``P`` times its share of the parameter gradient: :func:`average_gradients`
all-reduces the gradients and divides by ``P``, as data-parallel training does.

:class:`PartitionedGraph` is what a :class:`~lpm_graph.core.graph.Graph`
holds as ``graph.partition`` on a part: the global node counts, the
reduction of every observable across ranks every step (:meth:`observe`), and
:func:`attach`, which gives every layout its exchanges and recomputes what
a layout caches from its own edges (a stack's venue sizes, the group counts)
over the whole graph.
"""
from __future__ import annotations

import time
from collections.abc import Mapping

import torch
import torch.distributed as dist
from torch import Tensor

from lpm_graph.distributed.partition import Halo, PartInfo
from lpm_graph.errors import ConfigError, PopulationGraphError
from lpm_graph.nn.sparse import SparseAdjacency, spmm

__all__ = ["Exchange", "HaloReduce", "HaloBroadcast", "all_sum", "average_gradients", "PartitionedGraph", "attach"]


#: time in and volume through the collectives of this process (``reset_stats``/``STATS``): the exchange's share
#: of a step, for the scaling measurements (scripts/bench_distributed.py)
STATS = {"seconds": 0.0, "collectives": 0, "values_sent": 0}


def reset_stats() -> dict:
    out = dict(STATS)
    STATS.update(seconds=0.0, collectives=0, values_sent=0)
    return out


def _timed(fn, values: int):
    t0 = time.perf_counter()
    out = fn()
    STATS["seconds"] += time.perf_counter() - t0
    STATS["collectives"] += 1
    STATS["values_sent"] += int(values)
    return out


def _all_to_all(send: Tensor, send_counts: list[int], recv_counts: list[int], group) -> Tensor:
    out = send.new_empty((sum(recv_counts), *send.shape[1:]))
    _timed(lambda: dist.all_to_all_single(out, send.contiguous(), output_split_sizes=recv_counts,
                                          input_split_sizes=send_counts, group=group), send.numel())
    return out


class Exchange:
    """The exchanges of one node type's rows (or of a stack's destinations) on one part: a :class:`Halo` and the
    process group they run in."""

    def __init__(self, halo: Halo, group=None):
        self.halo, self.group = halo, group

    def to(self, device) -> "Exchange":
        return Exchange(self.halo.to(device), self.group)

    def reduce(self, y: Tensor) -> Tensor:
        """:math:`\\mathcal{R}`: ghost partial sums added at their owners; ghost rows 0 (differentiable)."""
        return HaloReduce.apply(y, self)

    def broadcast(self, x: Tensor) -> Tensor:
        """:math:`\\mathcal{B}`: ghost rows take their owners' values (differentiable)."""
        return HaloBroadcast.apply(x, self)

    def _reduce(self, y: Tensor) -> Tensor:
        h = self.halo
        if y.size(0) != h.num_local:
            raise ValueError(f"halo reduce: {y.size(0)} rows, the part holds {h.num_local}")
        recv = _all_to_all(y.index_select(0, h.ghost_rows), h.ghost_counts, h.serve_counts, self.group)
        out = y.index_add(0, h.serve_rows, recv.to(y.dtype))
        return out.index_fill_(0, h.ghost_rows, 0)

    def _broadcast(self, x: Tensor) -> Tensor:
        h = self.halo
        if x.size(0) != h.num_local:
            raise ValueError(f"halo broadcast: {x.size(0)} rows, the part holds {h.num_local}")
        recv = _all_to_all(x.index_select(0, h.serve_rows), h.serve_counts, h.ghost_counts, self.group)
        return x.index_copy(0, h.ghost_rows, recv)


class HaloReduce(torch.autograd.Function):
    """:math:`\\mathcal{R}` forward, :math:`\\mathcal{B}` backward (its adjoint)."""

    @staticmethod
    def forward(ctx, y: Tensor, exchange: Exchange) -> Tensor:
        ctx.exchange = exchange
        return exchange._reduce(y)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return ctx.exchange._broadcast(grad.contiguous()), None


class HaloBroadcast(torch.autograd.Function):
    """:math:`\\mathcal{B}` forward, :math:`\\mathcal{R}` backward (its adjoint)."""

    @staticmethod
    def forward(ctx, x: Tensor, exchange: Exchange) -> Tensor:
        ctx.exchange = exchange
        return exchange._broadcast(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return ctx.exchange._reduce(grad.contiguous()), None


class _AllSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, group) -> Tensor:
        ctx.group = group
        out = x.detach().clone().contiguous()
        _timed(lambda: dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group), out.numel())
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        out = grad.detach().clone().contiguous()
        _timed(lambda: dist.all_reduce(out, op=dist.ReduceOp.SUM, group=ctx.group), out.numel())
        return out, None


def all_sum(x: Tensor, group=None) -> Tensor:
    """The sum of ``x`` over every rank, on every rank; its backward sums the ranks' gradients (the adjoint)."""
    return _AllSum.apply(x, group)


def average_gradients(parameters, group=None) -> None:
    """Every parameter's gradient replaced by the mean over the ranks (module docstring: the sum of each rank's
    share, since each rank's loss is the whole loss)."""
    world = dist.get_world_size(group)
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    flat /= world
    start = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[start:start + n].view_as(g))
        start += n


class PartitionedGraph:
    """What a part's :class:`~lpm_graph.core.graph.Graph` knows of the whole (``graph.partition``).

    Attributes:
        info (PartInfo): rank, parts, global node counts, halos.
        group: the process group of the exchanges (the default group when ``None``).
    """

    def __init__(self, info: PartInfo, group=None, device=None):
        self.info, self.group = info, group
        self.rank, self.parts = info.rank, info.parts
        self._masks: dict[str, Tensor] = {}
        self.device = device

    # -- counts ----------------------------------------------------------------
    def total_nodes(self, node_types) -> dict[str, int]:
        return {nt: self.info.num_nodes[nt] for nt in node_types}

    def num_owned(self, node_type: str) -> int:
        return self.info.halos[node_type].num_owned

    def owned(self, node_type: str, x: Tensor) -> Tensor:
        """``x`` with its ghost rows 0 (a part's own contribution to a sum over nodes)."""
        h = self.info.halos.get(node_type)
        if h is None or h.num_owned == h.num_local:
            return x
        mask = self._masks.get(node_type)
        if mask is None or mask.device != x.device:
            mask = torch.zeros(h.num_local, dtype=torch.bool, device=x.device)
            mask[:h.num_owned] = True
            self._masks[node_type] = mask
        return x * mask.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)

    def all_sum(self, x: Tensor) -> Tensor:
        return all_sum(x, self.group)

    # -- observables -----------------------------------------------------------
    def observe(self, observables: Mapping, specs: Mapping, state: Mapping, events: Mapping, graph, replicates: int,
                dtype) -> tuple[dict, dict]:
        """Every observable of the step over the whole population: each part's sums over its own nodes, added
        across the ranks in one collective (a variance in a second one, around the global mean)."""
        local: list[tuple[str, str | None, Tensor]] = []   # (name, grouping, local sum)
        values: dict[str, Tensor] = {}
        for name, o in observables.items():
            x = state.get(o.source)
            if x is None:
                x = events.get(o.source)
            if x is None:
                zeros = torch.zeros(replicates, dtype=dtype, device=graph.device)
                local.append((name, None, zeros))
                for g in o.by:
                    local.append((name, g, torch.zeros(len(graph.group_labels(g)), replicates, dtype=dtype,
                                                       device=graph.device)))
                continue
            categories = specs[o.source].categories if o.source in specs else ()
            v = self.owned(o.node_type, o._values(x, categories))
            values[name] = v
            local.append((name, None, v.sum(0)))
            for g in o.by:
                adj = graph.group_adjacency(g)
                local.append((name, g, spmm(adj, v)))
                if o.kind == "var":
                    local.append((name, g + "\0sq", spmm(adj, v * v)))
        total = self._sum_all([t for _, _, t in local])
        series: dict[str, Tensor] = {}
        grouped: dict[str, dict[str, Tensor]] = {}
        sums = {(name, g): t for (name, g, _), t in zip(local, total)}
        second = []
        for name, o in observables.items():
            s = sums[(name, None)]
            if o.kind in ("count", "sum") or name not in values:
                series[name] = s
            else:
                n = self.info.num_nodes[o.node_type]
                mean = s / n if n else s
                series[name] = mean
                if o.kind == "var":
                    second.append((name, self.owned(o.node_type, (values[name] - mean) ** 2)))
            for g in o.by:
                t = sums[(name, g)]
                if o.kind in ("count", "sum") or name not in values:
                    grouped.setdefault(g, {})[name] = t
                    continue
                sizes = graph.group_counts(g).to(dtype)
                inv = torch.where(sizes > 0, 1.0 / sizes.clamp_min(1), torch.zeros_like(sizes)).unsqueeze(1)
                mean = t * inv
                grouped.setdefault(g, {})[name] = mean if o.kind == "mean" else sums[(name, g + "\0sq")] * inv - \
                    mean * mean
        if second:
            total = self._sum_all([v.sum(0) for _, v in second])
            for (name, _), t in zip(second, total):
                n = self.info.num_nodes[observables[name].node_type]
                series[name] = t / n if n else t
        return series, grouped

    def _sum_all(self, tensors: list[Tensor]) -> list[Tensor]:
        """One all-reduce for many tensors (flattened, concatenated, split back)."""
        if not tensors:
            return []
        shapes = [t.shape for t in tensors]
        flat = all_sum(torch.cat([t.reshape(-1) for t in tensors]), self.group)
        out, start = [], 0
        for shape in shapes:
            n = shape.numel()
            out.append(flat[start:start + n].view(shape))
            start += n
        return out

    def to(self, device) -> "PartitionedGraph":
        return PartitionedGraph(self.info, self.group, device)


def _exchanges(adj: SparseAdjacency, src: Exchange | None, dst: Exchange | None) -> SparseAdjacency:
    adj.src_halo, adj.dst_halo = src, dst
    return adj


def attach(graph, info: PartInfo, group=None, cpu_group=None):
    """Make ``graph`` (a :class:`~lpm_graph.core.graph.Graph` of part ``info.rank``) a part of the whole: its
    layouts exchange their ghost rows (module docstring), a stack's venue sizes and the group counts are those of
    the whole graph, and ``graph.partition`` reduces the observables across ranks.  ``group`` runs the exchanges
    (on the graph's device), ``cpu_group`` the setup's reductions of counts (CPU). Returns ``graph``."""
    device = graph.device
    for nt in graph.num_nodes:
        h = info.halos.get(nt)
        if h is None:
            raise PopulationGraphError(f"node type {nt!r} is not in the partition (its node types: "
                                       f"{sorted(info.halos)}); partition the population the model reads")
        if h.num_local != graph.num_nodes[nt]:
            raise PopulationGraphError(f"part {info.rank}: node type {nt!r} has {graph.num_nodes[nt]} rows but its "
                                       f"halo plan {h.num_local}; the part and its halo file do not match")
    exchange = {nt: Exchange(info.halos[nt].to(device), group) for nt in graph.num_nodes if info.has_ghosts.get(nt)}

    def wrap(adj: SparseAdjacency, et) -> SparseAdjacency:
        return _exchanges(adj, exchange.get(et[0]), exchange.get(et[2]))

    for et, adj in graph._layouts.items():
        wrap(adj, et)
    for et, (_, windows) in graph._windows.items():
        for adj in windows.values():
            wrap(adj, et)
    for et, adj in graph._empty.items():
        wrap(adj, et)
    for stack in graph._stacks.values():
        src = stack.edge_types[0][0]
        dst = None
        if any(info.has_ghosts.get(et[2]) for et in stack.edge_types):
            dst = Exchange(Halo.concat([info.halos[et[2]] for et in stack.edge_types]).to(device), group)
        _exchanges(stack.adjacency, exchange.get(src), dst)
        # the venue sizes of a stack are over every member, on every part
        ones = torch.ones(stack.adjacency.shape[1], 1, dtype=graph.dtype, device=device)
        total = spmm(stack.adjacency, ones).squeeze(1)
        stack.inverse_weight = torch.where(total > 0, 1.0 / total.clamp_min(torch.finfo(graph.dtype).tiny),
                                           torch.zeros((), dtype=graph.dtype, device=device))
    partition = PartitionedGraph(info, group, device)
    for name in list(graph._groups):
        index, labels = graph._groups[name]
        g = graph.groupings[name]
        sizes = torch.tensor([len(labels)], dtype=torch.int64)
        gathered = [torch.zeros_like(sizes) for _ in range(info.parts)]
        dist.all_gather(gathered, sizes, group=cpu_group)
        if len({int(s) for s in gathered}) != 1:
            raise PopulationGraphError(
                f"grouping {name!r} (attribute {g.node_type}.{g.attribute}) has {[int(s) for s in gathered]} groups "
                f"on the parts: its labels come from each part's largest code; give model.groupings.{name}.labels")
        owned = index[:partition.num_owned(g.node_type)].cpu()
        counts = torch.bincount(owned, minlength=len(labels)).to(torch.int64)
        dist.all_reduce(counts, group=cpu_group)
        graph._group_counts[name] = counts.to(device)
    graph.partition = partition
    return graph


def check_partitionable(model) -> None:
    """Refuse a model with a process whose step is not known to be correct on a part (``Process.partitionable``)."""
    bad = [f"{p.name!r} ({type(p).__name__})" for p in model.order if not getattr(p, "partitionable", False)]
    if bad:
        raise ConfigError(
            f"a partitioned run (torchrun, more than one process) supports only processes whose step is correct on a "
            f"part of the graph (per-node work, random draws by uid, sums through the graph's layouts); not "
            f"{', '.join(bad)}. Run it in one process, or remove them")
