"""``behavior=rules`` with the economy and the supply chain (conf/behavior_model/): what composes, and that the
decision moves the outcome the way it should."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.behavior import RuleBehavior, StateShare, VenuePrevalence
from lpm_graph.core.graph import Graph
from lpm_graph.core.process import StepContext
from lpm_graph.core.sampling import Sampler
from lpm_graph.data import generate_population
from lpm_graph.errors import ConfigError
from lpm_graph.models.supply_chain import supply_network
from lpm_graph.tasks.simulate import instantiate_config
from tests.conftest import compose_config
from tests.models.economy.helpers import tiny_graph
from tests.models.supply_chain.helpers import line_graph


def build(overrides):
    return instantiate_config(compose_config(overrides).model)


def test_rules_with_the_economy_and_the_supply_chain_replace_the_epidemics_entries():
    econ = compose_config(["model=economy", "behavior=rules"]).model
    assert {k for k, v in econ.behavior.items() if v is not None} == {"unemployment", "spending"}
    chain = compose_config(["model=supply_chain", "behavior=rules"]).model
    assert {k for k, v in chain.behavior.items() if v is not None} == {
        "warehouse_stock", "warehouse_reordering", "retailer_stock", "retailer_reordering"}
    # the contact epidemics and the opinion models have their own observers and rules
    for model in ("contact", "contact_layers"):
        entries = compose_config([f"model={model}", "behavior=rules"]).model.behavior
        assert {k for k, v in entries.items() if v is not None} == {"contact_prevalence", "contact_rules",
                                                                     "contact_masks"}
    for model in ("opinion", "opinion_hk", "opinion_deffuant", "opinion_stubborn"):
        entries = compose_config([f"model={model}", "behavior=rules"]).model.behavior
        assert {k for k, v in entries.items() if v is not None} == {"disagreement", "tuning_out"}
    # the venue epidemics keep conf/behavior/rules.yaml as it is
    assert list(compose_config(["model=seir", "behavior=rules"]).model.behavior) == ["prevalence", "rules",
                                                                                      "mask_effect"]


def test_a_model_without_a_reader_is_still_refused():
    """The opinion form's rule set to decide the epidemic's stays_home, which no opinion process reads."""
    with pytest.raises(ConfigError, match=r"writes person.stays_home.*this behaviour does not fit this model"):
        build(["model=opinion", "behavior=rules", "model.behavior.tuning_out.decisions=[stays_home]",
               "model.params.tuning_out=null"])


# -- the economy ---------------------------------------------------------------------------------------------

ECON = ["model=economy", "model.mode=expected", "dtype=float64"]


def run(model, population, steps):
    with torch.no_grad():
        return model(population, steps=steps)


@pytest.fixture(scope="module")
def economy_population():
    return generate_population(3000, seed=5)


def test_unemployment_seen_at_ones_firm_is_the_share_not_employed():
    """A firm of 4 with one employed: its members see 3/4; a person outside any firm sees 0."""
    seen = VenuePrevalence(venue_types=["workplace"], stack=["workplace"], source="person.employed",
                           complement=True, prefix="person.unemployment")
    graph = Graph(tiny_graph(), seen.requirements(), torch.float64)
    ctx = StepContext(0, graph, {}, Sampler("expected"), 1.0, 1, torch.float64)
    e = torch.tensor([[1.0], [0], [0], [0], [1], [1], [0]], dtype=torch.float64)
    u = seen(ctx, {"person.employed": e}, {}).fields["person.unemployment_workplace"][:, 0]
    torch.testing.assert_close(u, torch.tensor([0.75] * 4 + [0.0, 0.0, 0.0], dtype=torch.float64))


def test_inverse_decisions_are_one_minus_the_response():
    rule = RuleBehavior(["spends"], inverse=["spends"], venue_types=["workplace"], prevalence="person.u",
                        own=None, policy=None, grouping=None)
    graph = Graph(tiny_graph(), rule.requirements(), torch.float64)
    params = {"rules.spends_slope": torch.tensor([40.0], dtype=torch.float64),
              "rules.spends_threshold": torch.tensor([0.15], dtype=torch.float64),
              "rules.spends_max": torch.tensor([0.3], dtype=torch.float64)}
    ctx = StepContext(0, graph, params, Sampler("expected"), 1.0, 1, torch.float64)
    u = torch.tensor([[0.15], [0.0], [1.0], [0.15], [0.15], [0.15], [0.15]], dtype=torch.float64)
    s = rule.decide(ctx, {}, {"person.u_workplace": u})["spends"][:, 0]
    want = 1 - 0.3 * torch.sigmoid(40 * (u[:, 0] - 0.15))
    torch.testing.assert_close(s, want)
    assert float(s[0]) == pytest.approx(1 - 0.15)   # half the largest cut at the threshold
    with pytest.raises(ConfigError, match=r"RuleBehavior.inverse names \['masks'\]"):
        RuleBehavior(["spends"], inverse=["masks"])


def test_spending_less_when_unemployment_is_seen_lowers_consumption(economy_population):
    """With the rule people spend less than their plan, the more so at firms with more unemployment: consumption
    is lower than without it at first and people hold more money (what is saved is spent later, out of wealth,
    so consumption catches up), and a firm closure (more unemployment) lowers the share spent."""
    closure = ("model.environment=[{_target_: lpm_graph.models.economy.FirmClosure, share: 0.3, start: 3, end: 9}]")
    plain = run(build(ECON), economy_population, 12)
    rules = run(build([*ECON, "behavior=rules"]), economy_population, 12)
    shocked = run(build([*ECON, "behavior=rules", closure]), economy_population, 12)
    c_plain, c_rules = plain.series["consumption"][1:, 0], rules.series["consumption"][1:, 0]
    assert bool((c_rules[:5] < c_plain[:5]).all())
    assert bool((rules.series["savings"][1:, 0] > plain.series["savings"][1:, 0]).all())
    spends, spends_shocked = rules.series["spends"][1:, 0], shocked.series["spends"][1:, 0]
    assert bool((spends < 1).all()) and bool((spends > 0.7).all())
    # during the closure more unemployment is seen, so less is spent than in the same run without it
    assert float(spends_shocked[6:9].max()) < float(spends[6:9].min())
    assert float(shocked.series["unemployment_rate"][8, 0]) > float(rules.series["unemployment_rate"][8, 0])


# -- the supply chain ----------------------------------------------------------------------------------------

CHAIN = ["model=supply_chain", "model.mode=expected", "dtype=float64"]


def test_stock_observed_as_a_share():
    obs = StateShare("retailer.stock", "retailer.observed_stock", reference=300.0)
    graph = Graph(line_graph({"supplier": 1, "retailer": 3, "consumer": 3}, [1, 0]), obs.requirements(),
                  torch.float64)
    ctx = StepContext(0, graph, {"observed.reference": torch.tensor(300.0, dtype=torch.float64)},
                      Sampler("expected"), 1.0, 1, torch.float64)
    x = torch.tensor([[0.0], [300.0], [900.0]], dtype=torch.float64)
    o = obs(ctx, {"retailer.stock": x}, {}).fields["retailer.observed_stock"][:, 0]
    torch.testing.assert_close(o, torch.tensor([0.0, 0.5, 0.75], dtype=torch.float64))
    with pytest.raises(ConfigError, match="of the node type of its source"):
        StateShare("retailer.stock", "warehouse.observed_stock")


def test_reordering_less_when_stock_is_high_lowers_orders():
    """With the rule a retailer places less of its policy's order the more stock it holds: the decision falls with
    the initial stock, and the first orders placed are smaller than without the rule (later the order-up-to policy
    makes up for the shortfall, so the totals over a long run differ little)."""
    data = supply_network({"supplier": 2, "warehouse": 4, "retailer": 12, "consumer": 240},
                          suppliers_per_node=[2, 2, 1], lead_time=[2, 1, 0], seed=3)
    placed = {}
    for stock in (300.0, 600.0, 1000.0):
        traj = run(build([*CHAIN, f"model.params.retailer.initial_stock={stock}", "behavior=rules"]), data, 3)
        placed[stock] = float(traj.series["retailer_reorders"][1, 0])
    assert 1.0 > placed[300.0] > placed[600.0] > placed[1000.0] > 0.5   # at most half the order held back
    plain = run(build(CHAIN), data, 2).series["retailer_orders"][1:, 0]
    rules = run(build([*CHAIN, "behavior=rules"]), data, 2).series["retailer_orders"][1:, 0]
    assert float(plain.min()) > 0 and bool((rules < plain).all())


# -- the neural and LLM forms (conf/behavior_model/{neural,llm}_{economy,supply_chain}.yaml) --------------------

@pytest.mark.parametrize("behavior, processes", [
    ("neural", {"unemployment", "spending"}), ("llm", {"llm"})])
def test_neural_and_llm_behaviours_decide_spending_in_the_economy(behavior, processes, economy_population,
                                                                   tmp_path):
    """The epidemic's entries are replaced by the economy's; the decision is read: people spend the decided
    share of their plan, so the first step's consumption is below the plain run's by about that share."""
    extra = [f"model.behavior.llm.cache={tmp_path / 'answers.sqlite'}"] if behavior == "llm" else []
    cfg = compose_config([*ECON, f"behavior={behavior}", *extra]).model
    assert {k for k, v in cfg.behavior.items() if v is not None} == processes
    plain = run(build(ECON), economy_population, 4)
    model = build([*ECON, f"behavior={behavior}", *extra])
    decided = run(model, economy_population, 4)
    spends = decided.series["spends" if behavior == "neural" else "spends_stated"][1:, 0]
    assert bool((spends > 0).all()) and bool((spends < 1).all())
    c_plain, c_decided = plain.series["consumption"][1, 0], decided.series["consumption"][1, 0]
    assert float(c_decided) < float(c_plain)
    if behavior == "llm":  # one question per group (age group x employment bin) per decision: weekly, one in 4 steps
        report = model.behavior[0].report()
        assert report["decision"] == "person.spends" and report["decisions"] == 1
        assert report["calls"] == report["groups"]["max"] > 1 and report["failures"] == 0


@pytest.mark.parametrize("behavior, name", [("neural", "retailer_reordering"), ("llm", "llm")])
def test_neural_and_llm_behaviours_decide_reordering_in_the_supply_chain(behavior, name, tmp_path):
    """Retailers place the decided share of their policy's order: a share below one, and smaller first orders
    than the plain run's."""
    data = supply_network({"supplier": 2, "warehouse": 4, "retailer": 12, "consumer": 240},
                          suppliers_per_node=[2, 2, 1], lead_time=[2, 1, 0], seed=3)
    extra = [f"model.behavior.llm.cache={tmp_path / 'answers.sqlite'}"] if behavior == "llm" else []
    cfg = compose_config([*CHAIN, f"behavior={behavior}", *extra]).model
    assert {k for k, v in cfg.behavior.items() if v is not None} == {name}
    plain = run(build(CHAIN), data, 2).series["retailer_orders"][1:, 0]
    traj = run(build([*CHAIN, f"behavior={behavior}", *extra]), data, 2)
    share = traj.series["retailer_reorders" if behavior == "neural" else "retailer_reorders_stated"][1:, 0]
    assert bool((share > 0).all()) and bool((share < 1).all())
    assert float(plain.min()) > 0 and bool((traj.series["retailer_orders"][1:, 0] < plain).all())
