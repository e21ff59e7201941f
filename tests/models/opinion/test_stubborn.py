"""Friedkin-Johnsen: the fixed point equals (I - (I - G) P)^-1 G x(0); stubborn people never move."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.core import Model
from lpm_graph.data import random_graph
from lpm_graph.errors import ConfigError, PopulationGraphError
from lpm_graph.models.opinion import DeGroot, FriedkinJohnsen, NeighbourMean
from tests.models.opinion.helpers import CONTACT, dense_w, graph
from tests.models.opinion.test_degroot import EDGES, WEIGHTS, X0


def fj(alpha=1.0, gamma=0.2, **kwargs) -> Model:
    return Model(processes={"neighbours": NeighbourMean(), "degroot": FriedkinJohnsen(**kwargs)}, mode="expected",
                 params={"degroot": {"susceptibility": alpha, "stubbornness": gamma}}, dtype=torch.float64)


def _final(m, data, steps, replicates=1, seed=0):
    with torch.no_grad():
        return m(data, steps=steps, seed=seed, replicates=replicates).final_state["person.opinion"]


@pytest.mark.parametrize("alpha, gamma", [(1.0, 0.2), (1.0, 0.05), (0.5, 0.3)])
def test_fixed_point_is_the_closed_form(alpha, gamma):
    """x* = (I - (I - G) P)^-1 G x0, P = (1 - alpha) I + alpha W (alpha = 1: Friedkin and Johnsen's form)."""
    data = graph(EDGES, 6, WEIGHTS, opinion=X0)
    n, x0 = 6, torch.tensor(X0, dtype=torch.float64)
    eye = torch.eye(n, dtype=torch.float64)
    p = (1 - alpha) * eye + alpha * dense_w(data)
    g = gamma * eye
    star = torch.linalg.solve(eye - (eye - g) @ p, g @ x0)
    x = _final(fj(alpha, gamma, initial="attribute"), data, 800)[:, 0]
    torch.testing.assert_close(x, star, rtol=0, atol=1e-12)
    consensus = torch.full((n,), float(x.mean()), dtype=torch.float64)
    assert float((x - consensus).abs().max()) > 1e-3  # disagreement persists: not DeGroot's consensus


def test_one_step():
    data = graph(EDGES, 6, WEIGHTS, opinion=X0)
    x0 = torch.tensor(X0, dtype=torch.float64)
    y = x0 + 0.5 * (dense_w(data) @ x0 - x0)
    expected = 0.25 * x0 + 0.75 * y
    torch.testing.assert_close(_final(fj(0.5, 0.25, initial="attribute"), data, 1)[:, 0], expected, rtol=1e-14,
                               atol=1e-15)
    # after two steps the anchor is still x(0), not x(1)
    y1 = expected + 0.5 * (dense_w(data) @ expected - expected)
    torch.testing.assert_close(_final(fj(0.5, 0.25, initial="attribute"), data, 2)[:, 0], 0.25 * x0 + 0.75 * y1,
                               rtol=1e-14, atol=1e-15)


def test_stubborn_people_from_an_attribute_never_move_and_pull_the_rest():
    """Stubborn 0 (opinion 0.9) and 4 (0.0) only: everyone else ends at the harmonic mean of the two,
    x* = (I - (I - G) W)^-1 G x0 with G = diag(c)."""
    c = torch.tensor([1.0, 0, 0, 0, 1.0, 0], dtype=torch.float64)
    data = graph(EDGES, 6, WEIGHTS, opinion=X0, stubborn=c)
    x = _final(fj(1.0, 1.0, initial="attribute", stubborn_attribute="stubborn"), data, 600)[:, 0]
    assert float(x[0]) == X0[0] and float(x[4]) == X0[4]
    eye = torch.eye(6, dtype=torch.float64)
    g = torch.diag(c)
    star = torch.linalg.solve(eye - (eye - g) @ dense_w(data), g @ torch.tensor(X0, dtype=torch.float64))
    torch.testing.assert_close(x, star, rtol=0, atol=1e-12)


def test_a_stubborn_fraction_is_drawn_per_person_and_keeps_them_fixed():
    data = random_graph(2000, 6.0, seed=2)
    m = Model(processes={"neighbours": NeighbourMean(), "degroot": FriedkinJohnsen(stubborn_fraction=0.1)},
              params={"degroot": {"susceptibility": 0.5, "stubbornness": 0.0}}, mode="stochastic",
              dtype=torch.float64)
    x0, x = _final(m, data, 1, replicates=2, seed=3), _final(m, data, 30, replicates=2, seed=3)
    fixed = (x == _final(m, data, 29, replicates=2, seed=3))
    listens = (torch.bincount(data[CONTACT].edge_index[1], minlength=2000) > 0).unsqueeze(1)
    frac = float(fixed[listens.expand_as(fixed)].double().mean())
    # about 10%: binomial sd over the ~3,990 people with ties (two replicates) is 0.5%; 0.025 is 5 sd
    assert frac == pytest.approx(0.1, abs=0.025)
    torch.testing.assert_close(x[fixed], x0[fixed], rtol=0, atol=0)  # they stay at their initial opinion
    assert not torch.equal(fixed[:, 0], fixed[:, 1])  # each replicate draws its own stubborn people
    assert x0.shape == x.shape


def test_zero_stubbornness_is_degroot():
    data = random_graph(300, 5.0, seed=4)
    degroot = Model(processes={"neighbours": NeighbourMean(), "degroot": DeGroot()}, mode="expected",
                    params={"degroot": {"susceptibility": 0.3}}, dtype=torch.float64)
    torch.testing.assert_close(_final(fj(0.3, 0.0), data, 10, seed=1), _final(degroot, data, 10, seed=1),
                               rtol=0, atol=0)  # the same initial opinions (streams) and the same steps


def test_bad_arguments():
    with pytest.raises(ConfigError, match="stubborn_fraction must be a probability"):
        FriedkinJohnsen(stubborn_fraction=1.5)
    with pytest.raises(ConfigError, match="degroot.stubbornness must be a probability"):
        fj(1.0, 2.0)
    bad = graph(EDGES, 6, WEIGHTS, opinion=X0, stubborn=torch.tensor([0.0, 2.0, 0, 0, 0, 0]))
    with pytest.raises(PopulationGraphError, match="node 1 has 2.0, not in"):
        _final(fj(initial="attribute", stubborn_attribute="stubborn"), bad, 1)
