"""The vaccine network (lpm_graph.models.vaccine_logistics.population): clinics per community and district, their
catchments in household order, depots and their edges."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData

from lpm_graph.errors import ConfigError
from lpm_graph.models.vaccine_logistics import vaccine_network
from lpm_graph.models.vaccine_logistics.population import add_clinics


def test_the_population_adds_clinics_and_depots_to_the_synthetic_one():
    data = vaccine_network(num_people=3000, seed=5, community={"mean_size": 500},
                           people_per_clinic=[500, 250, 250, 125])
    n = data["person"].num_nodes
    assert data["clinic"].population.sum() == n and data["clinic"].district.unique().tolist() == [0, 1, 2, 3]
    members = data["person", "registered_at", "clinic"].edge_index
    assert torch.equal(members[1], data["person"].clinic) and members.size(1) == n
    # rural clinics are smaller: the first district's catchments are about 4x the last's
    pop, district = data["clinic"].population, data["clinic"].district
    assert pop[district == 0].mean() > 3 * pop[district == 3].mean()
    # every clinic buys from every depot; daily supply 0.5% of the people
    assert data["depot", "supplies", "clinic"].edge_index.size(1) == 2 * data["clinic"].num_nodes
    assert float(data["depot"].capacity.sum()) == pytest.approx(0.005 * n)
    again = vaccine_network(num_people=3000, seed=5, community={"mean_size": 500},
                            people_per_clinic=[500, 250, 250, 125])
    assert torch.equal(again["depot", "supplies", "clinic"].lead_time, data["depot", "supplies", "clinic"].lead_time)


def _people(households, communities):
    """People 0..N-1 with the given household and community of each."""
    n = len(households)
    data = HeteroData()
    data["person"].num_nodes = n
    data["person"].uid = torch.arange(n)
    for vt, of in (("household", households), ("community", communities)):
        data[vt].num_nodes = max(of) + 1
        data[vt].uid = torch.arange(max(of) + 1)
        data["person", "member_of", vt].edge_index = torch.tensor([list(range(n)), list(of)])
    return data


def test_clinics_per_community_follow_the_districts_people_per_clinic():
    # 4 communities in 2 districts (communities 0, 1 | 2, 3) of 8, 8, 6, 2 people; a clinic per 4 people in the
    # first district, per 3 in the second: round(8/4) = 2, 2, then round(6/3) = 2 and max(1, round(2/3)) = 1
    communities = [0] * 8 + [1] * 8 + [2] * 6 + [3] * 2
    households = [k // 2 for k in range(24)]  # couples
    data = add_clinics(_people(households, communities), people_per_clinic=[4, 3], districts=2, depots=3,
                       capacity_per_person=[0.5, 0.25], supply=0.1, lead_time=2, spread=1, seed=4)
    clinic = data["person"].clinic
    assert data["clinic"].num_nodes == 7
    assert data["clinic"].population.tolist() == [4, 4, 4, 4, 3, 3, 2]
    assert data["clinic"].district.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert data["clinic"].capacity.tolist() == pytest.approx([2, 2, 2, 2, 0.75, 0.75, 0.5])
    # consecutive catchments in household order, a community's people in its own clinics: couples stay together
    # where the catchments are even (the first district), a catchment of 3 splits one
    assert all(int(clinic[2 * h]) == int(clinic[2 * h + 1]) for h in range(8))
    assert clinic.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 3 + [5] * 3 + [6] * 2
    members = data["person", "registered_at", "clinic"].edge_index
    serve = data["clinic", "serves", "person"]
    assert torch.equal(members, torch.stack([torch.arange(24), clinic]))
    assert torch.equal(serve.edge_index, members.flip(0)) and bool((serve.lead_time == 0).all())
    # depots: the daily supply 0.1 x 24 people split equally; every clinic buys from each, lead 2 + U{0, 1}
    assert data["depot"].capacity.tolist() == pytest.approx([0.8] * 3)
    ship = data["depot", "supplies", "clinic"]
    assert ship.edge_index.size(1) == 3 * 7 and len({tuple(e) for e in ship.edge_index.t().tolist()}) == 21
    assert set(ship.lead_time.tolist()) <= {2, 3}


def test_households_are_kept_in_order_within_a_community_whatever_the_person_order():
    # the people of household 0 listed apart: the catchments still cut between households
    households = [0, 1, 1, 0, 2, 2, 3, 3]
    data = add_clinics(_people(households, [0] * 8), people_per_clinic=4, districts=1, depots=1)
    clinic = data["person"].clinic.tolist()
    assert clinic[0] == clinic[3] and clinic[1] == clinic[2] == clinic[0]  # households 0 and 1: the first clinic
    assert clinic[4:] == [1, 1, 1, 1]


def test_bad_arguments_are_refused_by_name():
    data = _people([0, 0, 1, 1], [0, 0, 0, 0])
    for kwargs, match in (({"people_per_clinic": [10, 10]}, "people_per_clinic must be one number or one per"),
                          ({"capacity_per_person": -1.0}, "capacity_per_person must be a finite number >= 0"),
                          ({"depots": 0}, "depots must be an integer >= 1"),
                          ({"catchment_relation": "member_of"}, "catchment_relation must not be 'member_of'"),
                          ({"relation": "a.b"}, "relation must be a name without dots")):
        with pytest.raises(ConfigError, match=match):
            add_clinics(data.clone(), districts=1, **kwargs)
    lonely = HeteroData()
    lonely["person"].num_nodes = 2
    with pytest.raises(ConfigError, match="needs people in communities"):
        add_clinics(lonely)
