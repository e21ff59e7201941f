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

Nothing here depends on the node order beyond the indices themselves, so a
permuted graph with the same uids simulates identically.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from lpm_graph.data.validate import PopulationGraphError, validate_population
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
        :class:`SparseAdjacency` ``[N, N]``).
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
        for et in data.edge_types:
            if et[0] == PERSON and et[2] == PERSON:
                store = data[et]
                self.contacts[et] = SparseAdjacency.from_edge_index(
                    store.edge_index, getattr(store, "edge_weight", None), (self.num_people, self.num_people), dtype)

    def contact_adjacency(self, edge_type: tuple[str, str, str], t: int | None = None) -> SparseAdjacency:
        """The contact layout of ``edge_type`` in effect at step ``t``."""
        try:
            return self.contacts[tuple(edge_type)]
        except KeyError:
            raise PopulationGraphError(
                f"edge type {tuple(edge_type)} is not in the population graph; person-person edge types "
                f"present: {sorted(self.contacts)}. Add the edges or remove the contact interaction "
                "from model.interactions") from None

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
        return out

    def nbytes(self) -> int:
        """Bytes held by the sparse layouts and per-node tensors."""
        total = sum(t.numel() * t.element_size() for t in
                    (self.uid, self.age, self.age_group, self.venue_type_index, self.venue_inv_size))
        total += self.venue_adj.nbytes() if self.venue_adj is not None else 0
        return total + sum(a.nbytes() for a in self.contacts.values())

    def __repr__(self) -> str:
        return (f"PreparedPopulation(num_people={self.num_people}, venue_types={self.venue_types}, "
                f"num_venues={self.num_venues}, contacts={list(self.contacts)})")
