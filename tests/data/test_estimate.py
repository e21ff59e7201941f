"""The size of a population before it is built (lpm_graph.data.estimate)."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.data import generate_population
from lpm_graph.data.estimate import population_size
from tests.conftest import compose_config


def test_population_size_of_a_synthetic_spec_matches_a_generated_population():
    # 1M people: workplace sizes are heavy-tailed (tail exponent 1.06, cut at 5000), so their count K over W
    # workers has a relative sd of about sd(size) / mean(size) / sqrt(K) ~ 4.8 / 255 ~ 2%; allow 5 sd.
    # Memberships and the other venue counts vary far less.
    cfg = compose_config(["population.num_people=1000000", "seed=3"])
    size = population_size(cfg.population)
    data = generate_population(1_000_000, seed=3)
    for et in data.edge_types:
        if et[1] == "member_of":
            assert size.edges[et] == pytest.approx(data[et].edge_index.size(1), rel=0.02), et
    for nt in data.node_types:
        assert size.nodes[nt] == pytest.approx(data[nt].num_nodes, rel=0.1), nt
    tensors = sum(v.numel() * v.element_size() for store in data.stores for v in store.values()
                  if torch.is_tensor(v))
    assert size.bytes == pytest.approx(tensors, rel=0.05)



def test_sources_whose_size_is_in_a_file_are_unknown_unbuilt():
    assert population_size(compose_config(["population=file", "population.path=x.pt"]).population) is None
    assert population_size(None) is None


def test_the_size_grows_with_the_spec():
    small = population_size(compose_config(["population.num_people=10000"]).population)
    large = population_size(compose_config(["population.num_people=20000"]).population)
    assert large.nodes["person"] == 2 * small.nodes["person"]
    assert large.bytes == pytest.approx(2 * small.bytes, rel=0.01)
