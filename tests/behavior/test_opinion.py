"""Behaviour in the opinion models: the disagreement a person observes, and tuning out (``person.tunes_out``),
read by the opinion update every opinion model shares."""
from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch_geometric.data import HeteroData

from lpm_graph.behavior import FixedDecisions, NeighbourDisagreement
from lpm_graph.core.graph import Graph
from lpm_graph.core.process import StepContext
from lpm_graph.core.sampling import Sampler
from lpm_graph.data.random_graphs import random_graph
from lpm_graph.errors import ConfigError
from lpm_graph.models.opinion import DeGroot
from lpm_graph.tasks.simulate import instantiate_config
from tests.conftest import compose_config

F64 = torch.float64


def _ctx(graph, params=None, R=1):
    return StepContext(0, graph, params or {}, Sampler("expected"), 1.0, R, F64)


def test_the_disagreement_seen_is_the_weighted_mean_squared_difference_from_ones_own_opinion():
    data = random_graph(40, mean_degree=3.0, seed=1, weighted=True)
    data["person"].num_nodes = 41                     # person 40 has no neighbours
    data["person"].uid = torch.arange(41)
    data["person"].age = torch.cat([data["person"].age, torch.tensor([30.0])])
    obs = NeighbourDisagreement()
    graph = Graph(data, obs.requirements(), F64)
    x = torch.rand(41, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    d = obs(_ctx(graph, R=2), {"person.opinion": x}, {}).fields["person.disagreement_contact"]
    st = data["person", "contact", "person"]
    want, total = torch.zeros(41, 2, dtype=F64), torch.zeros(41, 1, dtype=F64)
    for (j, i), w in zip(st.edge_index.T.tolist(), st.edge_weight.tolist()):
        want[i] += w * (x[j] - x[i]) ** 2
        total[i] += w
    want = torch.where(total > 0, want / total.clamp_min(1e-300), torch.zeros_like(want))
    torch.testing.assert_close(d, want)
    assert bool((d[40] == 0).all()) and bool((total[:40] > 0).sum() > 30)
    with pytest.raises(ConfigError, match=r"prefix must be 'person.<name>'"):
        NeighbourDisagreement(prefix="agent.disagreement")


def test_tuning_out_scales_the_gap_closed_and_freezes_at_one():
    data = random_graph(30, mean_degree=4.0, seed=2)
    up = DeGroot()
    graph = Graph(data, up.requirements(), F64)
    g = torch.Generator().manual_seed(5)
    x, m, o = (torch.rand(30, 3, generator=g, dtype=F64) for _ in range(3))
    o[0] = 1.0
    params = {"degroot.susceptibility": torch.tensor(0.4, dtype=F64)}
    state = {"person.opinion": x}
    y = up(_ctx(graph, params, 3), state, {"person.neighbour_opinion": m, "person.tunes_out": o}).state["person.opinion"]
    torch.testing.assert_close(y, x + (1 - o) * 0.4 * (m - x))
    assert torch.equal(y[0], x[0])    # who tunes out for sure keeps its opinion
    plain = up(_ctx(graph, params, 3), state, {"person.neighbour_opinion": m}).state["person.opinion"]
    torch.testing.assert_close(plain, x + 0.4 * (m - x))


POP = ["population.num_people=300", "population.mean_degree=6"]


@pytest.mark.parametrize("model", ["opinion", "opinion_stubborn", "opinion_hk", "opinion_deffuant"])
def test_more_tuning_out_leaves_more_disagreement(model):
    """The same initial opinions (and Deffuant pairs: common random numbers), more tuning out: slower
    convergence, so more variance left after a few rounds, in every opinion model, up to everyone tuned out for
    sure, who leave the opinions where they started."""
    cfg = compose_config([f"model={model}", *POP])
    data = instantiate(cfg.population)

    def final_var(p, steps=8):
        m = instantiate(cfg.model, _convert_="all", behavior={"fixed": FixedDecisions({"tunes_out": p}, grouping=None)})
        with torch.no_grad():
            return m(data, steps=steps, seed=4).series["opinion_var"]

    v = {p: final_var(p) for p in (0.0, 0.4, 0.8, 1.0)}
    assert float(v[0.0][-1]) < float(v[0.4][-1]) < float(v[0.8][-1]) < float(v[1.0][-1])
    torch.testing.assert_close(v[1.0], v[1.0][:1].expand_as(v[1.0]))


def test_epidemic_decisions_on_an_opinion_model_are_still_refused():
    cfg = compose_config(["model=opinion", *POP])
    with pytest.raises(ConfigError, match=r"writes person\.stays_home, which no process of the model reads"):
        instantiate_config(cfg.model, behavior={"fixed": FixedDecisions({"stays_home": 0.5})})
