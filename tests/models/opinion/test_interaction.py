"""NeighbourMean: the neighbours' weighted mean is W x with the row-stochastic W; no neighbours, own opinion."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.core import Graph, Requirements, Sampler, StepContext
from lpm_graph.errors import ConfigError
from lpm_graph.models.opinion import NeighbourMean
from tests.models.opinion.helpers import CONTACT, dense_w, graph

# 0..3 a weighted directed cycle with a chord; 4 hears only from a weight-0 edge; 5 hears no one
EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (1, 0), (5, 3), (2, 4)]
WEIGHTS = [1.0, 2.0, 0.5, 1.5, 3.0, 0.25, 2.0, 0.0]


def _context(data, replicates=3):
    g = Graph(data, Requirements(edge_types={CONTACT}), torch.float64)
    return StepContext(t=0, graph=g, params={}, sampler=Sampler("expected"), dt=1.0, replicates=replicates,
                       dtype=torch.float64)


def test_weighted_mean_equals_the_row_stochastic_matrix_times_the_opinions():
    data = graph(EDGES, 6, WEIGHTS)
    x = torch.rand(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = NeighbourMean()(_context(data), {"person.opinion": x}, {})
    m = out.fields["person.neighbour_opinion"]
    torch.testing.assert_close(m, dense_w(data) @ x, rtol=1e-12, atol=1e-12)


def test_nodes_without_incoming_weight_see_their_own_opinion():
    data = graph(EDGES, 6, WEIGHTS)
    x = torch.rand(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    m = NeighbourMean()(_context(data, 2), {"person.opinion": x}, {}).fields["person.neighbour_opinion"]
    # node 4: only a weight-0 edge; node 5: no incoming edge at all
    torch.testing.assert_close(m[4], x[4], rtol=0, atol=0)
    torch.testing.assert_close(m[5], x[5], rtol=0, atol=0)
    assert not torch.equal(m[0], x[0])


def test_every_node_has_neighbours_no_correction():
    data = graph([(0, 1), (1, 0), (1, 2), (2, 1)], 3)
    ctx = _context(data, 1)
    adj = ctx.graph.layout(CONTACT)
    assert NeighbourMean.isolated(adj, torch.float64) is None
    x = torch.tensor([[0.0], [1.0], [4.0]], dtype=torch.float64)
    m = NeighbourMean()(ctx, {"person.opinion": x}, {}).fields["person.neighbour_opinion"]
    torch.testing.assert_close(m, torch.tensor([[1.0], [2.0], [1.0]], dtype=torch.float64))


def test_gradient_is_the_transposed_product():
    """The fused sparse path: d(sum g * m)/dx = W^T g, and nothing per edge requires grad."""
    data = graph(EDGES, 6, WEIGHTS)
    x = torch.rand(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    g = torch.rand(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    m = NeighbourMean()(_context(data, 2), {"person.opinion": x}, {}).fields["person.neighbour_opinion"]
    (m * g).sum().backward()
    torch.testing.assert_close(x.grad, dense_w(data).T @ g, rtol=1e-12, atol=1e-12)


def test_declarations():
    p = NeighbourMean(edge_type=("person", "follows", "person"), name="feed")
    assert p.role == "interaction"
    assert [f.key for f in p.field_specs()] == ["person.neighbour_opinion"]
    assert list(p.reads()) == ["person.opinion"]
    assert p.requirements().edge_types == {("person", "follows", "person")}


@pytest.mark.parametrize("kwargs, match", [
    ({"edge_type": ("person", "contact")}, "edge_type"),
    ({"source": "opinion"}, "source"),
    ({"edge_type": ("person", "contact", "venue")}, "destination"),
    ({"edge_type": ("venue", "x", "person"), "source": "venue.opinion"}, "one node type"),
])
def test_bad_arguments_name_the_field(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        NeighbourMean(**kwargs)
