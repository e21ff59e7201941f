"""``VenueMean`` (``lpm_graph.behavior.llm.observed``): the mean of a state over the members of one's venues."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData

from lpm_graph.behavior.llm import VenueMean
from lpm_graph.core.graph import Graph
from lpm_graph.core.process import StepContext
from lpm_graph.core.sampling import Sampler
from lpm_graph.errors import ConfigError

# person -> community memberships: person 5 belongs to none, persons 0 and 3 to two communities, community 2 has a
# single member whose weight is below 1 (a venue's size is its members' weight, whatever its scale)
SRC = [0, 0, 1, 2, 3, 3, 4, 6]
DST = [0, 1, 0, 1, 1, 2, 0, 1]
WEIGHT = [0.5, 1.5, 1.0, 0.75, 1.25, 0.375, 2.0, 0.625]   # binary fractions: exact in float32 and float64


def venues(weighted: bool) -> HeteroData:
    d = HeteroData()
    d["person"].num_nodes = 7
    d["person"].uid = torch.arange(7)
    d["community"].num_nodes = 3
    d["community"].uid = torch.arange(3)
    d["person", "member_of", "community"].edge_index = torch.tensor([SRC, DST])
    if weighted:
        d["person", "member_of", "community"].edge_weight = torch.tensor(WEIGHT)
    return d


def by_hand(x: torch.Tensor, weighted: bool) -> torch.Tensor:
    w = WEIGHT if weighted else [1.0] * len(SRC)
    out = torch.zeros_like(x)
    for i in range(x.size(0)):
        mine = [k for k, s in enumerate(SRC) if s == i]
        if not mine:
            continue  # no venue: 0
        total = 0.0
        for k in mine:
            members = [e for e, v in enumerate(DST) if v == DST[k]]
            mean = sum(w[e] * x[SRC[e]] for e in members) / sum(w[e] for e in members)
            total = total + w[k] * mean
        out[i] = total / sum(w[k] for k in mine)
    return out


def run(proc, data, x):
    graph = Graph(data, proc.requirements(), torch.float64)
    ctx = StepContext(0, graph, {}, Sampler("expected"), 1.0, x.size(1), torch.float64)
    return proc(ctx, {proc.source: x}, {}).fields


@pytest.mark.parametrize("weighted", [True, False])
def test_the_field_is_the_weighted_mean_over_the_members_of_ones_venues(weighted):
    x = torch.rand(7, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    proc = VenueMean("person.I", "community")
    fields = run(proc, venues(weighted), x)
    assert list(fields) == ["person.local_I"]
    torch.testing.assert_close(fields["person.local_I"], by_hand(x, weighted), rtol=1e-12, atol=1e-14)
    assert float(fields["person.local_I"][5].abs().max()) == 0.0


def test_the_observed_value_is_a_constant_to_autograd():
    x = torch.rand(7, 1, dtype=torch.float64, requires_grad=True)
    assert not run(VenueMean("person.I", "community"), venues(True), x)["person.local_I"].requires_grad


def test_names_and_checks():
    p = VenueMean("person.E", "household", field="person.home_E", relation="lives_in")
    assert p.role == "environment" and p.reads() == ["person.E"]
    assert [f.key for f in p.field_specs()] == ["person.home_E"]
    assert p.requirements().edge_types == {("person", "lives_in", "household")}
    with pytest.raises(ConfigError, match="VenueMean.source must be '<node type>.<name>'"):
        VenueMean("I")
    with pytest.raises(ConfigError, match="VenueMean.field must be on person"):
        VenueMean("person.I", field="household.I")
