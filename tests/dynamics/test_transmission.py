"""Interaction channels: force of infection through venues and contacts."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData

from lpm_graph.data import ConfigError, PopulationGraphError
from lpm_graph.data.prepare import PreparedPopulation
from lpm_graph.dynamics import ContactTransmission, Environment, VenueTransmission
from lpm_graph.params import ParameterSet


def two_households() -> HeteroData:
    """People 0,1,2 in household 0; 3,4 in household 1; all in community 0; 0->3 contact of weight 2."""
    d = HeteroData()
    d["person"].num_nodes = 5
    d["person"].uid = torch.arange(5)
    d["person"].age = torch.tensor([30.0, 32.0, 4.0, 70.0, 68.0])
    d["household"].num_nodes = 2
    d["community"].num_nodes = 1
    d["person", "member_of", "household"].edge_index = torch.tensor([[0, 1, 2, 3, 4], [0, 0, 0, 1, 1]])
    d["person", "member_of", "community"].edge_index = torch.tensor([[0, 1, 2, 3, 4], [0, 0, 0, 0, 0]])
    d["person", "contact", "person"].edge_index = torch.tensor([[0], [3]])
    d["person", "contact", "person"].edge_weight = torch.tensor([2.0])
    return d


PARAMS = ParameterSet({"beta_household": 0.6, "beta_community": 0.5, "beta_contact": 0.1})


def test_venue_force_of_infection_by_hand():
    graph = PreparedPopulation(two_households(), [0])
    x = torch.tensor([[1.0], [0.0], [0.0], [0.0], [0.0]])  # person 0 infectious
    lam = VenueTransmission(["household", "community"])(x, graph, PARAMS.as_dict(), Environment(), 0)
    # household 0: 0.6 * 1/3; community: 0.5 * 1/5
    expect = torch.tensor([[0.6 / 3 + 0.1], [0.6 / 3 + 0.1], [0.6 / 3 + 0.1], [0.1], [0.1]])
    assert torch.allclose(lam, expect)


def test_unnormalised_venue_is_density_dependent():
    graph = PreparedPopulation(two_households(), [0])
    x = torch.tensor([[1.0], [1.0], [0.0], [0.0], [0.0]])
    lam = VenueTransmission(["household", "community"], normalize=False)(x, graph, PARAMS.as_dict(), Environment(), 0)
    assert torch.allclose(lam[:, 0], torch.tensor([1.2 + 1.0] * 3 + [1.0] * 2))


def test_environment_scale_closes_a_venue_type():
    graph = PreparedPopulation(two_households(), [0])
    x = torch.tensor([[1.0], [0.0], [0.0], [0.0], [0.0]])
    env = Environment().with_scale("community", 0.0)
    lam = VenueTransmission(["household", "community"])(x, graph, PARAMS.as_dict(), env, 0)
    assert torch.allclose(lam[:, 0], torch.tensor([0.2, 0.2, 0.2, 0.0, 0.0]))


def test_contact_channel_follows_edge_direction_and_weight():
    graph = PreparedPopulation(two_households(), [0])
    x = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    lam = ContactTransmission()(x, graph, PARAMS.as_dict(), Environment(), 0)
    expect = torch.zeros(5, 2)
    expect[3, 0] = 0.1 * 2.0  # 0 -> 3 only
    assert torch.allclose(lam, expect)


def test_channels_check_the_graph():
    graph = PreparedPopulation(two_households(), [0])
    with pytest.raises(PopulationGraphError, match="missing \\['school'\\]"):
        VenueTransmission(["household", "community", "school"]).check_graph(graph)
    with pytest.raises(PopulationGraphError, match="not covered \\['community'\\]"):
        VenueTransmission(["household"]).check_graph(graph)
    with pytest.raises(PopulationGraphError, match="'knows'"):
        ContactTransmission(("person", "knows", "person")).check_graph(graph)
    with pytest.raises(ConfigError, match="ContactTransmission.edge_type"):
        ContactTransmission(("person", "member_of", "household"))


def test_gradient_reaches_beta_through_the_fused_path():
    graph = PreparedPopulation(two_households(), [0], dtype=torch.float64)
    params = ParameterSet({"beta_household": 0.6, "beta_community": 0.5}, learnable=["beta_household", "beta_community"],
                          dtype=torch.float64)
    x = torch.tensor([[1.0], [0.0], [0.0], [0.0], [0.0]], dtype=torch.float64)
    lam = VenueTransmission(["household", "community"])(x, graph, params.as_dict(), Environment(), 0)
    lam.sum().backward()
    # d/d beta_household: 3 members * 1/3; d/d beta_community: 5 members * 1/5
    assert torch.allclose(params["beta_household"].grad, torch.tensor(1.0, dtype=torch.float64))
    assert torch.allclose(params["beta_community"].grad, torch.tensor(1.0, dtype=torch.float64))
