"""Time-varying contact edges: validation of ``time``, one layout per window, cyclic steps."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData

from lpm_graph.data.prepare import PreparedPopulation
from lpm_graph.data.validate import PopulationGraphError, validate_population
from lpm_graph.dynamics import SEIR, ContactTransmission
from lpm_graph.model import PopulationModel

CONTACT = ("person", "contact", "person")


def _graph(time, period=None, n=4):
    d = HeteroData()
    d["person"].num_nodes = n
    d["person"].uid = torch.arange(n)
    d["person"].age = torch.full((n,), 30.0)
    d[CONTACT].edge_index = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    d[CONTACT].edge_weight = torch.tensor([1.0, 1.0, 2.0, 2.0, 3.0, 3.0])
    d[CONTACT].time = torch.as_tensor(time)
    if period is not None:
        d[CONTACT].time_period = period
    return d


def _edges(adj):
    return sorted(zip(*adj.csr.to_sparse_coo().coalesce().indices().tolist()))


def test_one_layout_per_window_cycling_with_the_period():
    g = PreparedPopulation(_graph([0, 0, 1, 1, 3, 3]), [0])
    assert g.contact_windows[CONTACT][0] == 4 and sorted(g.contact_windows[CONTACT][1]) == [0, 1, 3]
    assert _edges(g.contact_adjacency(CONTACT, 0)) == [(0, 1), (1, 0)]
    assert _edges(g.contact_adjacency(CONTACT, 1)) == [(1, 2), (2, 1)]
    assert g.contact_adjacency(CONTACT, 2).num_edges == 0                 # a window without contacts
    assert g.contact_adjacency(CONTACT, 7) is g.contact_adjacency(CONTACT, 3)
    assert g.contact_adjacency(CONTACT, 8) is g.contact_adjacency(CONTACT, 0)
    assert g.contact_adjacency(CONTACT) is g.contact_adjacency(CONTACT, 0)  # no t: step 0
    assert g.window(CONTACT, 9) == 1 and CONTACT not in g.contacts
    moved = g.to("cpu")
    assert moved.contact_adjacency(CONTACT, 1).num_edges == 2
    assert g.nbytes() > PreparedPopulation(_graph([0] * 6), [0]).nbytes() - 1


def test_explicit_period_extends_the_cycle():
    g = PreparedPopulation(_graph([0, 0, 1, 1, 1, 1], period=7), [0])
    assert g.window(CONTACT, 6) == 6 and g.contact_adjacency(CONTACT, 6).num_edges == 0
    assert g.window(CONTACT, 8) == 1


def test_unknown_contact_type_lists_static_and_timed_types():
    g = PreparedPopulation(_graph([0] * 6), [0])
    with pytest.raises(PopulationGraphError, match=r"\('person', 'contact', 'person'\)"):
        g.contact_adjacency(("person", "work", "person"), 0)


@pytest.mark.parametrize("time, period, match", [
    ([0, 0, -1, 1, 1, 1], None, r"time must be >= 0 .* edge 2 has time -1"),
    ([0.0] * 6, None, r"time must be an integer tensor"),
    ([0, 1], None, r"time must have shape \[6\]"),
    ([0, 0, 3, 3, 1, 1], 3, r"time_period must be an integer > the last time window \(3\)"),
    ([0] * 6, 0, r"time_period must be an integer"),
])
def test_validation_of_time(time, period, match):
    with pytest.raises(PopulationGraphError, match=match):
        validate_population(_graph(time, period))


def test_period_without_time_and_timed_memberships_are_refused():
    d = _graph([0] * 6)
    del d[CONTACT].time
    d[CONTACT].time_period = 3
    with pytest.raises(PopulationGraphError, match="'time_period' but no per-edge 'time'"):
        validate_population(d)
    d = _graph([0] * 6)
    d["household"].num_nodes = 1
    d["person", "member_of", "household"].edge_index = torch.tensor([[0, 1], [0, 0]])
    d["person", "member_of", "household"].time = torch.tensor([0, 1])
    with pytest.raises(PopulationGraphError, match="time-varying venue memberships are not supported"):
        PreparedPopulation(d, [0])


def test_simulation_infects_only_on_days_with_contacts():
    # contacts exist on even days only (window 0 of period 2); mean field from 10% infectious
    d = HeteroData()
    d["person"].num_nodes = 2
    d["person"].uid = torch.arange(2)
    d["person"].age = torch.full((2,), 30.0)
    d[CONTACT].edge_index = torch.tensor([[0, 1], [1, 0]])
    d[CONTACT].edge_weight = torch.tensor([1.0, 1.0])
    d[CONTACT].time = torch.tensor([0, 0])
    d[CONTACT].time_period = 2
    params = dict(beta_contact=0.5, exposed_period=3.0, infectious_period=10.0, susceptibility=1.0,
                  infectiousness=1.0, initial_infected_fraction=0.1)
    model = PopulationModel([ContactTransmission()], SEIR(), params, mode="expected")
    new = model(d, steps=6).series["new_infections"][1:, 0]       # step t -> row t
    assert torch.all(new[0::2] > 0)                                # days 0, 2, 4: contact
    assert torch.all(new[1::2] == 0)                               # days 1, 3, 5: window 1 has no edges
