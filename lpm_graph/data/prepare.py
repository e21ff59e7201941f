r"""A population graph laid out for simulation, built once per graph.

:class:`PreparedPopulation` turns a validated ``HeteroData`` into the sparse
layouts the step reads:

* all membership edge types ``('person', 'member_of', <venue>)`` stacked into
  one bipartite adjacency over the concatenated venues (``[V, N]``, CSR with
  its transpose, ``int32`` indices), so that transmission through every venue
  type is two sparse products per step, not two per type;
* per venue: its type (an index into ``venue_types``) and the inverse of its
  total membership weight (for frequency-dependent mixing);
* every person → person edge type as its own :class:`SparseAdjacency`;
* per person: ``uid`` (keys the random numbers) and ``age_group``.

**Time-varying contacts.** A person → person edge type with a per-edge integer
``time`` attribute (the window of each edge: a day, or whatever window the importer
aggregated to) becomes one :class:`SparseAdjacency` per distinct window. Step ``t``
uses window ``t mod P``, where ``P`` is the edge store's ``time_period`` if set,
else the last window + 1: the recorded windows **repeat cyclically**, so a 3-day
contact study drives a 120-day simulation as days 0, 1, 2, 0, 1, 2, ... A window
with no edges (within the period) is an empty layout: no contact that step. One
step consumes one window, whatever its length (steps are ``model.dt`` days; match
the importer's window to it). ``contact_adjacency(edge_type)`` without ``t`` gives
step 0's layout.

Nothing here depends on the node order beyond the indices themselves, so a
permuted graph with the same uids simulates identically.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from lpm_graph.data.validate import validate_population
from lpm_graph.errors import PopulationGraphError
from lpm_graph.nn.sparse import SparseAdjacency

__all__ = ["PreparedPopulation", "age_groups"]

PERSON = "person"
MEMBER_OF = "member_of"


def age_groups(age: Tensor, age_bins: Sequence[float]) -> Tensor:
    """Index of the age group of each age: group ``g`` is ``[bins[g], bins[g+1])``, the last open."""
    edges = torch.as_tensor(list(age_bins)[1:], dtype=age.dtype, device=age.device)
    return torch.bucketize(age, edges, right=True)


class PreparedPopulation:
    """Sparse layouts of a population graph for the simulation step.

    Args:
        data (HeteroData): a population graph (validated here).
        age_bins (Sequence[float]): lower edges of the age groups, starting at 0.
        dtype: floating type of edge weights and scales. (default: float32)

    Attributes:
        num_people (int), uid (Tensor ``[N]``), age_group (Tensor ``[N]``),
        venue_types (list[str]), venue_adj (:class:`SparseAdjacency` ``[V, N]``
        or ``None`` without venues), venue_type_index (Tensor ``[V]``),
        venue_inv_size (Tensor ``[V]``), contacts (dict of edge type to
        :class:`SparseAdjacency` ``[N, N]``: the static contact edge types),
        contact_windows (dict of edge type to ``(period, {window: SparseAdjacency})``:
        the time-varying ones; see the module docstring).
    """

    def __init__(self, data: HeteroData, age_bins: Sequence[float], dtype: torch.dtype = torch.float32):
        validate_population(data)
        person = data[PERSON]
        self.num_people = int(person.num_nodes)
        self.uid = person.uid.to(torch.int64)
        self.age = person.age
        self.age_bins = [float(a) for a in age_bins]
        self.num_age_groups = len(self.age_bins)
        self.age_group = age_groups(person.age, self.age_bins)

        member_types = [et for et in data.edge_types if et[0] == PERSON and et[1] == MEMBER_OF]
        timed = [et for et in member_types if "time" in data[et]]
        if timed:
            raise PopulationGraphError(
                f"edge type {timed[0]}: time-varying venue memberships are not supported; drop its 'time' "
                "attribute, or model the changing contacts as a ('person', <relation>, 'person') edge type")
        self.venue_types = [et[2] for et in member_types]
        rows, cols, weights, type_index, offsets = [], [], [], [], {}
        offset = 0
        for k, et in enumerate(member_types):
            store = data[et]
            n_v = int(data[et[2]].num_nodes)
            src, dst = store.edge_index
            w = getattr(store, "edge_weight", None)
            rows.append(src)
            cols.append(dst + offset)
            weights.append(torch.ones(src.numel(), dtype=dtype) if w is None else w.to(dtype))
            type_index.append(torch.full((n_v,), k, dtype=torch.int64))
            offsets[et[2]] = offset
            offset += n_v
        self.num_venues = offset
        self.venue_offsets = offsets
        if member_types:
            edge_index = torch.stack([torch.cat(rows), torch.cat(cols)])
            weight = torch.cat(weights)
            self.venue_adj = SparseAdjacency.from_edge_index(edge_index, weight, (self.num_people, offset), dtype)
            self.venue_type_index = torch.cat(type_index)
            size = torch.zeros(offset, dtype=dtype).index_add_(0, edge_index[1], weight)
            self.venue_inv_size = torch.where(size > 0, 1.0 / size.clamp_min(torch.finfo(dtype).tiny),
                                              torch.zeros((), dtype=dtype))
        else:
            self.venue_adj = None
            self.venue_type_index = torch.zeros(0, dtype=torch.int64)
            self.venue_inv_size = torch.zeros(0, dtype=dtype)

        self.contacts: dict[tuple[str, str, str], SparseAdjacency] = {}
        self.contact_windows: dict[tuple[str, str, str], tuple[int, dict[int, SparseAdjacency]]] = {}
        size = (self.num_people, self.num_people)
        self._empty_contacts: SparseAdjacency | None = None  # built once if a window has no edges
        for et in data.edge_types:
            if et[0] == PERSON and et[2] == PERSON:
                store = data[et]
                weight = getattr(store, "edge_weight", None)
                if "time" in store:
                    self.contact_windows[et] = self._windows(store, weight, size, dtype)
                    if self._empty_contacts is None:
                        self._empty_contacts = SparseAdjacency.from_edge_index(
                            torch.zeros(2, 0, dtype=torch.int64), None, size, dtype)
                else:
                    self.contacts[et] = SparseAdjacency.from_edge_index(store.edge_index, weight, size, dtype)

    @staticmethod
    def _windows(store, weight, size, dtype) -> tuple[int, dict[int, SparseAdjacency]]:
        """One layout per distinct window of a time-varying edge type, and the period."""
        time = store.time.to(torch.int64)
        period = int(store.time_period) if "time_period" in store else (int(time.max()) + 1 if time.numel() else 1)
        order = torch.argsort(time, stable=True)
        windows, counts = torch.unique_consecutive(time[order], return_counts=True)
        layouts = {}
        start = 0
        for window, count in zip(windows.tolist(), counts.tolist()):
            idx = order[start:start + count]
            start += count
            layouts[window] = SparseAdjacency.from_edge_index(
                store.edge_index[:, idx], None if weight is None else weight[idx], size, dtype)
        return period, layouts

    def window(self, edge_type: tuple[str, str, str], t: int | None) -> int | None:
        """The window of a time-varying edge type used at step ``t`` (``t mod period``); None if static."""
        entry = self.contact_windows.get(tuple(edge_type))
        if entry is None:
            return None
        return 0 if t is None else int(t) % entry[0]

    def contact_adjacency(self, edge_type: tuple[str, str, str], t: int | None = None) -> SparseAdjacency:
        """The contact layout of ``edge_type`` in effect at step ``t`` (window ``t mod period`` if time-varying)."""
        edge_type = tuple(edge_type)
        static = self.contacts.get(edge_type)
        if static is not None:
            return static
        entry = self.contact_windows.get(edge_type)
        if entry is not None:
            return entry[1].get(self.window(edge_type, t), self._empty_contacts)
        present = sorted([*self.contacts, *self.contact_windows])
        raise PopulationGraphError(
            f"edge type {edge_type} is not in the population graph; person-person edge types "
            f"present: {present}. Add the edges or remove the contact interaction "
            "from model.interactions")

    def venue_adjacency(self, t: int | None = None) -> SparseAdjacency:
        """The stacked person → venue layout in effect at step ``t`` (``[V, N]``)."""
        if self.venue_adj is None:
            raise PopulationGraphError("the population graph has no ('person', 'member_of', <venue>) edge types; "
                                       "add venue memberships or remove the venue interaction from model.interactions")
        return self.venue_adj

    def to(self, device) -> "PreparedPopulation":
        out = object.__new__(PreparedPopulation)
        out.__dict__.update(self.__dict__)
        for name in ("uid", "age", "age_group", "venue_type_index", "venue_inv_size"):
            setattr(out, name, getattr(self, name).to(device))
        out.venue_adj = None if self.venue_adj is None else self.venue_adj.to(device)
        out.contacts = {k: v.to(device) for k, v in self.contacts.items()}
        out.contact_windows = {k: (p, {w: a.to(device) for w, a in layouts.items()})
                               for k, (p, layouts) in self.contact_windows.items()}
        out._empty_contacts = None if self._empty_contacts is None else self._empty_contacts.to(device)
        return out

    def nbytes(self) -> int:
        """Bytes held by the sparse layouts and per-node tensors."""
        total = sum(t.numel() * t.element_size() for t in
                    (self.uid, self.age, self.age_group, self.venue_type_index, self.venue_inv_size))
        total += self.venue_adj.nbytes() if self.venue_adj is not None else 0
        total += sum(a.nbytes() for _, layouts in self.contact_windows.values() for a in layouts.values())
        return total + sum(a.nbytes() for a in self.contacts.values())

    def __repr__(self) -> str:
        return (f"PreparedPopulation(num_people={self.num_people}, venue_types={self.venue_types}, "
                f"num_venues={self.num_venues}, contacts={list(self.contacts)}, "
                f"time_varying_contacts={ {k: p for k, (p, _) in self.contact_windows.items()} })")
