"""Interactions: the force of infection through venues and contacts, by hand."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData

from lpm_graph.core import Model
from lpm_graph.errors import ConfigError, PopulationGraphError
from lpm_graph.models.epidemic import SEIR, ContactTransmission, Infectiousness, VenueClosure, VenueTransmission
from tests.models.epidemic.conftest import step_context

FORCE = "person.force_of_infection"


def two_households() -> HeteroData:
    """People 0,1,2 in household 0; 3,4 in household 1; all in community 0; 0->3 contact of weight 2."""
    d = HeteroData()
    d["person"].num_nodes = 5
    d["person"].uid = torch.arange(5)
    d["person"].age = torch.tensor([30.0, 32.0, 4.0, 70.0, 68.0])
    d["household"].num_nodes = 2
    d["household"].uid = torch.arange(2)
    d["community"].num_nodes = 1
    d["community"].uid = torch.arange(1)
    d["person", "member_of", "household"].edge_index = torch.tensor([[0, 1, 2, 3, 4], [0, 0, 0, 1, 1]])
    d["person", "member_of", "community"].edge_index = torch.tensor([[0, 1, 2, 3, 4], [0, 0, 0, 0, 0]])
    d["person", "contact", "person"].edge_index = torch.tensor([[0], [3]])
    d["person", "contact", "person"].edge_weight = torch.tensor([2.0])
    return d


def model_of(*interactions, environment=(), normalize=True, **params) -> Model:
    values = {"transmission": {"beta_household": 0.6, "beta_community": 0.5}, "contact": {"beta": 0.1},
              "seir": {"exposed_period": 2.0, "infectious_period": 3.0, "susceptibility": 1.0,
                       "initial_infected_fraction": 0.0}}
    processes = {"infectiousness": Infectiousness(grouping=None)}
    for p in interactions:
        processes[p.name] = p
    processes["seir"] = SEIR(grouping=None)
    values = {k: v for k, v in values.items() if k in processes}
    for ns, v in params.items():
        values.setdefault(ns, {}).update(v)
    return Model(processes, environment=environment, params=values)


def force(model, data, x, t=0, params=None) -> torch.Tensor:
    """The force of infection every interaction of ``model`` exerts from infectiousness ``x`` ([N, R])."""
    graph = model.prepare(data)
    ctx = step_context(model, graph, replicates=x.size(1), t=t, params=params)
    fields = {"person.infectiousness": x}
    for p in model.environment:
        for k, v in p(ctx, {}, fields).fields.items():
            fields[k] = fields[k] * v if k in fields else v
    total = 0.0
    for p in model.processes:
        if p.role == "interaction":
            total = total + p(ctx, {}, fields).fields[FORCE]
    return total


def test_venue_force_of_infection_by_hand():
    model = model_of(VenueTransmission(["household", "community"]))
    x = torch.tensor([[1.0], [0.0], [0.0], [0.0], [0.0]])  # person 0 infectious
    # household 0: 0.6 * 1/3; community: 0.5 * 1/5
    expect = torch.tensor([[0.6 / 3 + 0.1], [0.6 / 3 + 0.1], [0.6 / 3 + 0.1], [0.1], [0.1]])
    assert torch.allclose(force(model, two_households(), x), expect)


def test_edge_weights_enter_the_venue_sums():
    # weights w: lambda_i = sum_v w_vi beta c_v sum_j w_jv x_j, c_v = 1 / sum_j w_jv
    data = two_households()
    data["person", "member_of", "household"].edge_weight = torch.tensor([1.0, 2.0, 1.0, 1.0, 1.0])
    model = model_of(VenueTransmission(["household", "community"]), transmission={"beta_community": 0.0})
    lam = force(model, data, torch.tensor([[1.0], [0.0], [0.0], [0.0], [0.0]]))
    assert torch.allclose(lam[:, 0], torch.tensor([0.6 / 4, 2 * 0.6 / 4, 0.6 / 4, 0.0, 0.0]))


def test_unnormalised_venue_is_density_dependent():
    model = model_of(VenueTransmission(["household", "community"], normalize=False))
    x = torch.tensor([[1.0], [1.0], [0.0], [0.0], [0.0]])
    assert torch.allclose(force(model, two_households(), x)[:, 0], torch.tensor([1.2 + 1.0] * 3 + [1.0] * 2))


def test_closure_scales_its_venue_type_only():
    model = model_of(VenueTransmission(["household", "community"]),
                     environment=[VenueClosure("community", start=0, factor=0.0)])
    x = torch.tensor([[1.0], [0.0], [0.0], [0.0], [0.0]])
    assert torch.allclose(force(model, two_households(), x)[:, 0], torch.tensor([0.2, 0.2, 0.2, 0.0, 0.0]))
    half = model_of(VenueTransmission(["household", "community"]),
                    environment=[VenueClosure("household", start=0, factor=0.5)])
    assert torch.allclose(force(half, two_households(), x)[:, 0], torch.tensor([0.2, 0.2, 0.2, 0.1, 0.1]))


def test_contact_channel_follows_edge_direction_and_weight():
    model = model_of(ContactTransmission())
    x = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    expect = torch.zeros(5, 2)
    expect[3, 0] = 0.1 * 2.0  # 0 -> 3 only; person 3 infectious in replicate 1 reaches nobody
    assert torch.allclose(force(model, two_households(), x), expect)


def test_channels_add_their_forces():
    both = model_of(VenueTransmission(["household", "community"]), ContactTransmission())
    x = torch.tensor([[1.0], [0.0], [0.0], [0.0], [0.0]])
    venue = force(model_of(VenueTransmission(["household", "community"])), two_households(), x)
    contact = force(model_of(ContactTransmission()), two_households(), x)
    assert torch.allclose(force(both, two_households(), x), venue + contact)
    assert float(contact[3, 0]) == pytest.approx(0.2)


def test_channels_check_the_graph():
    data = two_households()
    with pytest.raises(PopulationGraphError, match="edge type \\('person', 'member_of', 'school'\\) is not in the "
                                                   "graph, but the model reads it"):
        model_of(VenueTransmission(["household", "community", "school"]),
                 transmission={"beta_school": 0.1}).prepare(data)
    with pytest.raises(PopulationGraphError, match="also has \\['community'\\] \\(no beta for them"):
        _household_only().prepare(data)
    with pytest.raises(PopulationGraphError, match="'knows'"):
        model_of(ContactTransmission(("person", "knows", "person")), knows={"beta": 0.1}).prepare(data)
    with pytest.raises(ConfigError, match="ContactTransmission.edge_type must be \\[src, relation, dst\\]"):
        ContactTransmission(("person", "contact"))
    with pytest.raises(ConfigError, match="venue_types is empty"):
        VenueTransmission([])


def _household_only() -> Model:
    return Model({"infectiousness": Infectiousness(grouping=None), "transmission": VenueTransmission(["household"]),
                  "seir": SEIR(grouping=None)},
                 params={"transmission": {"beta_household": 0.6},
                         "seir": {"exposed_period": 2.0, "infectious_period": 3.0, "susceptibility": 1.0,
                                  "initial_infected_fraction": 0.0}})


def test_gradient_reaches_each_beta_through_the_stacked_layout():
    model = model_of(VenueTransmission(["household", "community"]), ContactTransmission()).double()
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in model.params.as_dict().items()}
    x = torch.tensor([[1.0], [0.0], [0.0], [0.0], [0.0]], dtype=torch.float64)
    data = two_households()
    graph = model.prepare(data, torch.float64)
    ctx = step_context(model, graph, params=leaves, dtype=torch.float64)
    fields = {"person.infectiousness": x}
    lam = sum(p(ctx, {}, fields).fields[FORCE] for p in model.processes if p.role == "interaction")
    lam.sum().backward()
    # d/d beta_household: 3 members * 1/3; d/d beta_community: 5 members * 1/5; d/d contact beta: weight 2
    assert float(leaves["transmission.beta_household"].grad) == pytest.approx(1.0, rel=1e-12)
    assert float(leaves["transmission.beta_community"].grad) == pytest.approx(1.0, rel=1e-12)
    assert float(leaves["contact.beta"].grad) == pytest.approx(2.0, rel=1e-12)


def test_time_varying_contacts_use_the_window_of_the_step():
    # two windows: day 0 has the contact 0 -> 3, day 1 the contact 0 -> 4; step t reads window t mod 2
    data = two_households()
    store = data["person", "contact", "person"]
    store.edge_index = torch.tensor([[0, 0], [3, 4]])
    store.edge_weight = torch.tensor([1.0, 1.0])
    store.time = torch.tensor([0, 1])
    model = model_of(ContactTransmission())
    x = torch.tensor([[1.0], [0.0], [0.0], [0.0], [0.0]])
    reached = [force(model, data, x, t=t)[:, 0].nonzero().flatten().tolist() for t in range(4)]
    assert reached == [[3], [4], [3], [4]]
