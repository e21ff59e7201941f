"""Behaviour on explicit contacts (model=contact, contact_layers): the prevalence among one's contacts, the
decisions as presence on both ends of a contact, the direction of their effect and the gradient through them."""
from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch_geometric.data import HeteroData

from lpm_graph.behavior import ContactPrevalence, FixedDecisions
from lpm_graph.core import Model, Process
from lpm_graph.core.graph import Graph
from lpm_graph.core.observe import Observable
from lpm_graph.core.process import Output, StepContext
from lpm_graph.core.sampling import Sampler
from lpm_graph.core.state import EventSpec, Read
from lpm_graph.models.epidemic import SEIR, ContactTransmission, Infectiousness
from tests.conftest import compose_config
from tests.helpers import assert_grad_matches_central_differences

LAYERS = ("home", "work", "community")
F64 = torch.float64


def _undirected(pairs: torch.Tensor, weight: torch.Tensor | None):
    both = torch.cat([pairs, pairs.flip(0)], 1)
    return both, None if weight is None else torch.cat([weight, weight])


def layered_contacts(n: int = 600, seed: int = 0, weighted: bool = True) -> HeteroData:
    """Households of 3 and workplaces of 6 (cliques; two thirds of people work) and random community ties (mean
    degree 4), each stored both ways, with random weights (the same both ways) when ``weighted``."""
    g = torch.Generator().manual_seed(seed)
    d = HeteroData()
    d["person"].num_nodes = n
    d["person"].uid = torch.arange(n)
    d["person"].age = torch.randint(0, 90, (n,), generator=g).float()

    def cliques(members: torch.Tensor, size: int) -> torch.Tensor:
        groups = members[: members.numel() // size * size].view(-1, size)
        a, b = torch.triu_indices(size, size, 1)
        return torch.stack([groups[:, a].flatten(), groups[:, b].flatten()])

    pairs = {"home": cliques(torch.arange(n), 3),
             "work": cliques(torch.randperm(n, generator=g)[: 2 * n // 3], 6)}
    i = torch.randint(0, n, (2 * n,), generator=g)
    j = (i + torch.randint(1, n, (2 * n,), generator=g)) % n
    keys = torch.unique(torch.minimum(i, j) * n + torch.maximum(i, j))
    pairs["community"] = torch.stack([keys // n, keys % n])
    for rel, p in pairs.items():
        w = 0.5 + torch.rand(p.size(1), generator=g) if weighted else None
        ei, ew = _undirected(p, w)
        d["person", rel, "person"].edge_index = ei
        if ew is not None:
            d["person", rel, "person"].edge_weight = ew
    return d


def _ctx(graph, params=None, R=1):
    return StepContext(0, graph, params or {}, Sampler("expected"), 1.0, R, F64)


def _dense(data, rel):
    """``W[i, j]``: the weight of the edge ``j -> i`` (0 if absent)."""
    st = data["person", rel, "person"]
    n = data["person"].num_nodes
    w = st.edge_weight.to(F64) if "edge_weight" in st else torch.ones(st.edge_index.size(1), dtype=F64)
    W = torch.zeros(n, n, dtype=F64)
    W.index_put_((st.edge_index[1], st.edge_index[0]), w, accumulate=True)
    return W


# -- what a person observes -----------------------------------------------------------------------------------

def test_the_prevalence_among_ones_contacts_is_the_weighted_share_infectious_per_layer():
    data = layered_contacts(60, seed=1)
    data["person"].num_nodes = 61                    # person 60 has no contacts at all
    data["person"].uid = torch.arange(61)
    data["person"].age = torch.cat([data["person"].age, torch.tensor([30.0])])
    obs = ContactPrevalence(relations=list(LAYERS))
    graph = Graph(data, obs.requirements(), F64)
    infectious = (torch.rand(61, 3, generator=torch.Generator().manual_seed(2)) < 0.3).to(F64)
    fields = obs(_ctx(graph, R=3), {"person.I": infectious}, {}).fields
    assert sorted(fields) == [f"person.prevalence_{r}" for r in sorted(LAYERS)]
    for rel in LAYERS:
        W = _dense(data, rel)
        degree = W.sum(1, keepdim=True)
        want = torch.where(degree > 0, W @ infectious / degree.clamp_min(1e-300), torch.zeros_like(degree))
        torch.testing.assert_close(fields[f"person.prevalence_{rel}"], want)
        assert bool((fields[f"person.prevalence_{rel}"][60] == 0).all())
    work = _dense(data, "work").sum(1) > 0
    assert bool((fields["person.prevalence_work"][~work] == 0).all()) and bool(work.any() and (~work[:60]).any())


def test_an_observer_of_a_relation_the_graph_lacks_is_refused_naming_it():
    from lpm_graph.errors import PopulationGraphError

    with pytest.raises(PopulationGraphError, match="school"):
        Graph(layered_contacts(30), ContactPrevalence(relations=["school"]).requirements(), F64)
    from lpm_graph.errors import ConfigError

    with pytest.raises(ConfigError, match="relations lists a relation twice"):
        ContactPrevalence(relations=["home", "home"])


# -- the decisions in the transmission -------------------------------------------------------------------------

@pytest.mark.parametrize("household", [False, True])
def test_decided_contacts_are_weighted_by_the_presence_of_both_ends(household):
    """lambda_i = beta q_i sum_j w_ji q_j x_j with q = (1 - h [not household]) (1 - a), against the sum written
    out edge by edge; per-replicate decisions, and the household layer ignoring stays_home."""
    data = layered_contacts(80, seed=3)
    tr = ContactTransmission(["person", "work", "person"], household=household, name="work")
    graph = Graph(data, tr.requirements(), F64)
    g = torch.Generator().manual_seed(4)
    R = 3
    x, h, a = (torch.rand(80, R, generator=g, dtype=F64) for _ in range(3))
    params = {"work.beta": torch.tensor(0.7, dtype=F64)}
    fields = {"person.infectiousness": x, "person.stays_home": h, "person.avoids_work": a,
              "person.avoids_home": torch.ones(80, R, dtype=F64)}   # another layer's decision: not read here
    lam = tr(_ctx(graph, params, R), {}, fields).fields["person.force_of_infection"]
    st = data["person", "work", "person"]
    q = (1 - a) * (1 if household else (1 - h))
    want = torch.zeros(80, R, dtype=F64)
    for (j, i), w in zip(st.edge_index.T.tolist(), st.edge_weight.tolist()):
        want[i] += 0.7 * w * q[i] * q[j] * x[j]
    torch.testing.assert_close(lam, want)
    keys = set(tr.decision_keys)
    assert keys == ({"person.avoids_work"} if household else {"person.stays_home", "person.avoids_work"})
    plain = tr(_ctx(graph, params, R), {}, {"person.infectiousness": x}).fields["person.force_of_infection"]
    zero = tr(_ctx(graph, params, R), {}, {"person.infectiousness": x, "person.stays_home": 0.0,
                                           "person.avoids_work": torch.zeros(80, 1, dtype=F64)})
    assert torch.equal(zero.fields["person.force_of_infection"], plain)  # nobody decides: the step unchanged


class HazardByLayer(Process):
    """Emits ``person.hazard_<layer>``: the susceptible's force of infection from each contact layer."""

    role = "interaction"
    default_name = "probe"

    def __init__(self, layers: dict):
        super().__init__()
        self.layers = list(layers.values())   # not submodules: their parameters stay the model's

    def reads(self):
        keys = {k for tr in self.layers for k in tr.decision_keys}
        return ["person.S", "person.infectiousness", *(Read(k, optional=True, default=0.0) for k in sorted(keys))]

    def event_specs(self):
        return [EventSpec("person", f"hazard_{tr.name}") for tr in self.layers]

    def observables(self):
        return [Observable(f"hazard_{tr.name}", f"person.hazard_{tr.name}", "sum") for tr in self.layers]

    def forward(self, ctx, state, fields):
        return Output(events={f"person.hazard_{tr.name}": state["person.S"] * tr(ctx, state, fields).fields[tr.target]
                              for tr in self.layers})


def _layers_model(stays_home: float, avoids_community: float = 0.0) -> Model:
    layers = {r: ContactTransmission(["person", r, "person"], household=r == "home") for r in LAYERS}
    decided = {"stays_home": stays_home, "avoids_community": avoids_community}
    return Model({"infectiousness": Infectiousness(grouping=None), **layers, "probe": HazardByLayer(layers),
                  "seir": SEIR(grouping=None)},
                 behavior={"fixed": FixedDecisions(decided, grouping=None)},
                 params={"home": {"beta": 0.15}, "work": {"beta": 0.06}, "community": {"beta": 0.12},
                         "seir": {"exposed_period": 2.0, "infectious_period": 5.0, "susceptibility": 1.0,
                                  "initial_infected_fraction": 0.02, "initial_infected": 0}},
                 mode="expected", dtype=F64)


def _by_layer(traj):
    total = {r: float(traj.series[f"hazard_{r}"][1:].sum()) for r in LAYERS}
    return total, total["home"] / sum(total.values()), float(traj.series["new_infections"][1:].sum())


def test_staying_home_moves_contact_infections_to_the_household_layer():
    """In expected mode (deterministic, so strict inequalities): more staying home, fewer infections in the work
    and community layers, a larger household share of the infections, fewer infections in all; avoiding the
    community cuts that layer alone at first (the home and work hazards of step 1 are unchanged)."""
    data = layered_contacts(600, seed=0)
    with torch.no_grad():
        runs = {h: _by_layer(_layers_model(h)(data, steps=40, seed=1)) for h in (0.0, 0.3, 0.6)}
    (t0, s0, n0), (t3, s3, n3), (t6, s6, n6) = runs[0.0], runs[0.3], runs[0.6]
    assert n0 > 100    # the epidemic takes off in the baseline (600 people)
    for r in ("work", "community"):
        assert t0[r] > t3[r] > t6[r], (r, t0[r], t3[r], t6[r])
    assert s0 < s3 < s6 and n0 > n3 > n6
    with torch.no_grad():
        base = _layers_model(0.0)(data, steps=1, seed=1)
        avoid = _layers_model(0.0, avoids_community=0.5)(data, steps=1, seed=1)
    for r in ("home", "work"):
        torch.testing.assert_close(avoid.series[f"hazard_{r}"], base.series[f"hazard_{r}"])
    # a community contact needs both ends present: (1 - 0.5)^2 of the hazard
    torch.testing.assert_close(avoid.series["hazard_community"][1], 0.25 * base.series["hazard_community"][1])


# -- gradients through a neural behaviour on the contact model ------------------------------------------------

def test_gradient_of_a_neural_behaviour_on_the_contact_model_matches_finite_differences():
    cfg = compose_config(["model=contact", "behavior=neural", "population=random_graph",
                          "population.num_people=300", "population.mean_degree=6", "model.mode=expected",
                          "model.params.contact.beta=0.25", "model.params.seir.initial_infected_fraction=0.03"])
    model = instantiate(cfg.model, _convert_="all", dtype=F64).to(F64)
    data = instantiate(cfg.population)
    assert [p.name for p in model.behavior] == ["contact_prevalence", "contact_neural"]
    graph = model.prepare(data, F64)
    weight = model.process("contact_neural").net.layers[0].weight

    def outcome():
        traj = model(graph, steps=12, seed=0)
        return traj.series["new_infections"].sum() + 100.0 * traj.series["stays_home"].sum()

    assert_grad_matches_central_differences(outcome, weight, [(0, 0), (1, 1), (3, 0), (5, 1)])
