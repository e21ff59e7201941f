"""Sparse layouts built once per graph."""
from __future__ import annotations

import torch

from lpm_graph.data.prepare import PreparedPopulation, age_groups


def test_age_groups_are_half_open_with_open_last():
    ages = torch.tensor([0.0, 9.0, 10.0, 79.0, 80.0, 104.0])
    assert age_groups(ages, [0, 10, 20, 30, 40, 50, 60, 70, 80]).tolist() == [0, 0, 1, 7, 8, 8]


def test_stacked_venue_layout_matches_the_graph(small_population):
    g = PreparedPopulation(small_population, [0, 18, 65])
    counts = [small_population[vt].num_nodes for vt in g.venue_types]
    assert g.num_venues == sum(counts)
    assert torch.equal(g.venue_type_index.bincount(minlength=len(counts)), torch.tensor(counts))
    assert g.venue_adj.shape == (g.num_venues, g.num_people)
    assert g.venue_adj.csr.col_indices().dtype == torch.int32
    # total membership per venue equals the generator's recorded size
    for vt in g.venue_types:
        off, n = g.venue_offsets[vt], small_population[vt].num_nodes
        sizes = 1.0 / g.venue_inv_size[off:off + n]
        assert torch.allclose(sizes, small_population[vt].size.float())
    # A @ 1 counts each person's venues: one per type it belongs to
    memberships = g.venue_adj.T.matmul(torch.ones(g.num_venues, 1))[:, 0]
    expected = sum(torch.bincount(small_population["person", "member_of", vt].edge_index[0],
                                  minlength=g.num_people) for vt in g.venue_types).float()
    assert torch.equal(memberships, expected)


def test_empty_venues_get_zero_scale():
    from torch_geometric.data import HeteroData

    d = HeteroData()
    d["person"].num_nodes = 2
    d["person"].uid = torch.tensor([10, 20])
    d["person"].age = torch.tensor([1.0, 2.0])
    d["school"].num_nodes = 3
    d["person", "member_of", "school"].edge_index = torch.tensor([[0, 1], [2, 2]])
    g = PreparedPopulation(d, [0])
    assert g.venue_inv_size.tolist() == [0.0, 0.0, 0.5]
    assert g.uid.tolist() == [10, 20]
