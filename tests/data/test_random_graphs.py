"""The random person-person graph: symmetric, simple, mean degree k, deterministic by seed, checked arguments."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from lpm_graph.data import random_graph
from lpm_graph.data.estimate import population_size
from lpm_graph.data.validate import validate_graph
from lpm_graph.errors import ConfigError

CONTACT = ("person", "contact", "person")


def _pairs(data, relation="contact"):
    src, dst = data["person", relation, "person"].edge_index
    return src, dst


@pytest.mark.parametrize("n, k", [(2000, 10.0), (500, 3.0), (50, 49.0), (7, 2.5)])
def test_symmetric_without_self_loops_or_duplicates_and_mean_degree_k(n, k):
    data = random_graph(n, k, seed=1)
    src, dst = _pairs(data)
    n_edges = src.numel()
    assert int(data["person"].num_nodes) == n and torch.equal(data["person"].uid, torch.arange(n))
    assert not bool((src == dst).any())
    keys = src * n + dst
    assert keys.unique().numel() == n_edges                                 # no duplicate directed edge
    assert torch.equal((dst * n + src).sort().values, keys.sort().values)   # every edge stored both ways
    # exactly round(N k / 2) ties: the mean degree is k to within 1/N
    assert n_edges == 2 * round(n * k / 2)
    assert abs(n_edges / n - k) <= 1.0 / n + 1e-12
    assert data[CONTACT].undirected is True
    validate_graph(data, {"person": ["uid", "age"]})


def test_degrees_are_close_to_poisson():
    n, k = 20000, 8.0
    src, _ = _pairs(random_graph(n, k, seed=2))
    degree = torch.bincount(src, minlength=n).double()
    assert float(degree.var()) == pytest.approx(k, rel=0.05)     # Poisson: variance = mean
    assert float((degree == 0).double().mean()) == pytest.approx(torch.exp(torch.tensor(-k)).item(), abs=3e-4)


def test_deterministic_by_seed():
    a, b, c = random_graph(1000, 6.0, seed=5), random_graph(1000, 6.0, seed=5), random_graph(1000, 6.0, seed=6)
    assert torch.equal(a[CONTACT].edge_index, b[CONTACT].edge_index)
    assert torch.equal(a["person"].age, b["person"].age)
    assert not torch.equal(a[CONTACT].edge_index, c[CONTACT].edge_index)


def test_options_weights_relation_age_and_empty_graphs():
    data = random_graph(300, 4.0, seed=0, weighted=True, relation="follows", age=False)
    store = data["person", "follows", "person"]
    w = store.edge_weight
    assert w.dtype == torch.float32 and float(w.min()) > 0 and float(w.max()) <= 1
    half = w.numel() // 2
    torch.testing.assert_close(w[:half], w[half:])                       # a tie has one weight both ways
    assert torch.equal(store.edge_index[:, :half].flip(0), store.edge_index[:, half:])
    assert "age" not in data["person"]
    ages = random_graph(3000, 2.0, seed=0)["person"].age
    assert float(ages.min()) >= 0 and float(ages.max()) < 100 and 30 < float(ages.mean()) < 45
    assert _pairs(random_graph(10, 0.0))[0].numel() == 0
    assert _pairs(random_graph(1, 0.0))[0].numel() == 0


def test_size_is_known_before_it_is_built():
    cfg = OmegaConf.create({"_target_": "lpm_graph.data.random_graphs.random_graph", "num_people": 1234,
                            "mean_degree": 7.0, "seed": 0})
    size = population_size(cfg)
    data = random_graph(1234, 7.0, seed=0)
    assert size.nodes == {"person": 1234}
    assert size.edges == {CONTACT: data[CONTACT].edge_index.size(1)}


@pytest.mark.parametrize("kwargs, field", [
    ({"num_people": 0}, "population.num_people"),
    ({"num_people": 2.5}, "population.num_people"),
    ({"mean_degree": -1.0}, "population.mean_degree"),
    ({"mean_degree": float("inf")}, "population.mean_degree"),
    ({"num_people": 5, "mean_degree": 5.0}, "population.mean_degree must be <= num_people - 1"),
    ({"seed": -1}, "population.seed"),
    ({"relation": "a.b"}, "population.relation"),
    ({"weighted": "yes"}, "population.weighted"),
    ({"age": 1}, "population.age"),
])
def test_bad_arguments_name_the_field(kwargs, field):
    args = {"num_people": 100, "mean_degree": 4.0, **kwargs}
    with pytest.raises(ConfigError, match=field):
        random_graph(**args)
