r"""A random person-person graph: people linked to about ``mean_degree`` random others.

:func:`random_graph` draws the uniform random graph with :math:`N` people and
exactly :math:`M = \operatorname{round}(N k / 2)` undirected ties
(:math:`G(N, M)`, Erdős–Rényi): each tie is a pair :math:`\{i, j\}`,
:math:`i \ne j`, drawn uniformly; repeated pairs are drawn again until
:math:`M` distinct ones are found.  The mean degree is :math:`2M/N`, i.e.
``mean_degree`` to within :math:`1/N`; degrees are close to Poisson with
mean :math:`k`, so a fraction of about :math:`e^{-k}` of the people has no
tie at all.

Graph schema:

* ``data['person']``: ``num_nodes = N``, ``uid`` int64 ``[N]`` (= ``arange(N)``),
  and (``age=True``) ``age`` float32 ``[N]`` drawn from the synthetic
  population's age distribution (US 2020 census, :mod:`lpm_graph.data.synthetic`).
* ``('person', relation, 'person')``: ``edge_index`` int64 ``[2, 2M]``, every tie
  stored both ways (``undirected = True``), no self-loops, no duplicates;
  with ``weighted=True`` an ``edge_weight`` float32 ``[2M]``, uniform on
  :math:`(0, 1]`, the same both ways.

Everything is whole-tensor work with one ``torch.Generator`` seeded by
``seed`` (the same graph for the same arguments on every machine); the only
loop is over rounds of redrawing repeated pairs (one or two for a sparse graph).
"""
from __future__ import annotations

import math
import numbers

import torch
from torch_geometric.data import HeteroData

from lpm_graph.data.synthetic import AgeDistribution, _sample_ages
from lpm_graph.data.validate import validate_graph
from lpm_graph.errors import ConfigError

__all__ = ["random_graph", "random_graph_edges"]


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check(num_people, mean_degree, seed, relation, weighted, age) -> None:
    if not _is_int(num_people) or num_people < 1:
        raise ConfigError(f"population.num_people must be a positive integer, got {num_people!r}")
    if isinstance(mean_degree, bool) or not isinstance(mean_degree, numbers.Real) or not math.isfinite(
            float(mean_degree)) or mean_degree < 0:
        raise ConfigError(f"population.mean_degree must be a finite number >= 0, got {mean_degree!r}")
    if mean_degree > num_people - 1:
        raise ConfigError(f"population.mean_degree must be <= num_people - 1 = {num_people - 1} (a person can be "
                          f"linked to every other at most once), got {mean_degree!r}")
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"population.seed must be a non-negative integer, got {seed!r}")
    if not isinstance(relation, str) or not relation or "." in relation:
        raise ConfigError(f"population.relation must be a non-empty name without dots (the edge type's relation), "
                          f"got {relation!r}")
    for name, value in (("weighted", weighted), ("age", age)):
        if not isinstance(value, bool):
            raise ConfigError(f"population.{name} must be true or false, got {value!r}")


def random_graph_edges(num_people: int, num_ties: int, gen: torch.Generator) -> torch.Tensor:
    """``[2, num_ties]`` distinct pairs ``(a, b)``, ``a < b``, uniform among all such pairs, sorted by ``a * N + b``."""
    n = int(num_people)
    keys = torch.zeros(0, dtype=torch.int64)
    while keys.numel() < num_ties:
        need = num_ties - keys.numel()
        i = torch.randint(0, n, (need,), generator=gen)
        j = (i + torch.randint(1, n, (need,), generator=gen)) % n  # j != i, uniform over the others
        a, b = torch.minimum(i, j), torch.maximum(i, j)
        keys = torch.unique(torch.cat([keys, a * n + b]))
    return torch.stack([keys // n, keys % n])


def random_graph(num_people: int = 10000, mean_degree: float = 10.0, seed: int = 0, relation: str = "contact",
                 weighted: bool = False, age: bool = True) -> HeteroData:
    """Generate the random person-person graph (module docstring).

    Args:
        num_people (int): :math:`N`, the number of people. (default: 10000)
        mean_degree (float): :math:`k`, the mean number of ties per person,
            ``0 <= k <= N - 1``. (default: 10.0)
        seed (int): seeds the generator. (default: 0)
        relation (str): the edge type's relation, ``('person', relation, 'person')``.
            (default: ``"contact"``)
        weighted (bool): give each tie a weight uniform on :math:`(0, 1]`
            (else no ``edge_weight``: unit weights). (default: ``False``)
        age (bool): give people an ``age`` (years). (default: ``True``)

    Raises:
        ConfigError: an argument out of range, named as ``population.<field>``.
    """
    _check(num_people, mean_degree, seed, relation, weighted, age)
    gen = torch.Generator().manual_seed(int(seed))
    n = int(num_people)
    ties = random_graph_edges(n, int(round(n * float(mean_degree) / 2)), gen)
    data = HeteroData()
    data["person"].num_nodes = n
    data["person"].uid = torch.arange(n)
    if age:
        data["person"].age = _sample_ages(AgeDistribution(), n, gen)
    store = data["person", relation, "person"]
    store.edge_index = torch.cat([ties, ties.flip(0)], dim=1)
    store.undirected = True
    if weighted:
        w = 1.0 - torch.rand(ties.size(1), generator=gen)  # (0, 1]
        store.edge_weight = torch.cat([w, w])
    validate_graph(data, {"person": ["uid"]})
    return data
