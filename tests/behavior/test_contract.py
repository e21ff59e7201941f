"""Composition of each behaviour with every model, and every task with each behaviour (the contract: test_base.py)."""
from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from lpm_graph.behavior import FixedDecisions
from lpm_graph.core import Model
from lpm_graph.errors import CalibrationWarning, ConfigError
from lpm_graph.tasks.analyze import analyze
from lpm_graph.tasks.calibrate import calibrate
from lpm_graph.tasks.simulate import instantiate_config, simulate
from tests.conftest import compose_config

ROOT = Path(__file__).resolve().parents[2]
FIT = ["seir", "sir", "seird", "sis"]          # venue epidemics: their transmission reads the decisions
NO_VENUES = ["contact", "contact_layers", "opinion", "opinion_deffuant", "opinion_hk", "opinion_stubborn"]
BEHAVIOURS = ["none", "rules", "neural"]


def test_every_config_of_conf_behavior_adds_to_the_mapping_model_behavior():
    for f in sorted((ROOT / "conf" / "behavior").glob("*.yaml")):
        assert f.read_text().startswith("# @package _global_"), f.name
    assert compose_config(["behavior=none"]).model.behavior == {}
    assert list(compose_config(["behavior=rules"]).model.behavior) == ["prevalence", "rules", "mask_effect"]
    assert list(compose_config(["behavior=neural"]).model.behavior) == ["prevalence", "neural"]


@pytest.mark.parametrize("model", FIT + NO_VENUES[:3])
def test_none_composes_with_every_model_unchanged(model):
    with_none = compose_config([f"model={model}", "behavior=none"]).model
    assert with_none == compose_config([f"model={model}"]).model
    assert len(instantiate(with_none, _convert_="all").behavior) == 0


@pytest.mark.parametrize("behavior", ["rules", "neural"])
@pytest.mark.parametrize("model", FIT)
def test_behaviours_fit_the_venue_epidemics(model, behavior):
    m = instantiate(compose_config([f"model={model}", f"behavior={behavior}"]).model, _convert_="all")
    reads = {r if isinstance(r, str) else r.key for p in m.processes for r in p.reads()}
    assert "person.stays_home" in reads
    assert [p.name for p in m.behavior][0] == "prevalence"


# -- the contact epidemics and the opinion models (conf/behavior_model/<behavior>_<model>.yaml) ------------------

SMALL = {"contact": ["population=random_graph", "population.num_people=200", "population.mean_degree=6",
                     "model.params.seir.initial_infected_fraction=0.05"],
         "contact_layers": ["population=edgelist", "population.edges=data/samples/edgelist/contacts.parquet",
                            "population.cache_dir=null", "model.params.seir.initial_infected_fraction=0.05"],
         **{m: ["population.num_people=200"] for m in NO_VENUES[2:]}}
DECISION = {"contact": "stays_home", "contact_layers": "stays_home", **{m: "tunes_out" for m in NO_VENUES[2:]}}


@pytest.mark.parametrize("behavior", ["rules", "neural", "llm"])
@pytest.mark.parametrize("model", NO_VENUES)
def test_every_behaviour_runs_with_the_contact_epidemics_and_the_opinion_models(model, behavior, tmp_path):
    """What ``lpm-graph model=<model> behavior=<behavior>`` runs (task=simulate at a tiny size): it builds (every
    decision written is read, every field read is written), runs, and records the decision share, in (0, 1)."""
    extra = [f"model.behavior.llm.cache={tmp_path / 'answers.sqlite'}"] if behavior == "llm" else []
    cfg = compose_config([f"model={model}", f"behavior={behavior}", *SMALL[model], "steps=3", "progress=false",
                          "task.plot=false", *extra])
    model_obj = instantiate_config(cfg.model)
    reads = {r if isinstance(r, str) else r.key for p in model_obj.processes for r in p.reads()}
    assert f"person.{DECISION[model]}" in reads
    simulate(cfg, tmp_path / "run")
    frame = __import__("pandas").read_parquet(tmp_path / "run" / "trajectory.parquet")
    column = DECISION[model] + ("_stated" if behavior == "llm" else "")
    share = frame[column].to_numpy()[1:]
    assert ((share > 0) & (share < 1)).all(), (column, share)


CALIBRATE = {"contact": ["+observations=behavior", "model.learnable=[contact.beta]", "model.mode=expected", "steps=5"],
             "contact_layers": ["+observations=behavior", "model.learnable=[community.beta]", "model.mode=expected",
                                "steps=5"],
             "opinion": ["steps=30"], "opinion_hk": ["steps=30"]}   # the opinion variance series: 30 steps


@pytest.mark.parametrize("model, behavior", [("contact", "neural"), ("contact_layers", "rules"), ("opinion", "rules"),
                                             ("opinion_hk", "neural")])
def test_calibrate_and_analyze_run_with_behaviour_on_contacts_and_opinions(model, behavior, tmp_path):
    obs = []
    if model.startswith("contact"):   # the shipped series of 20,000 people, at this size
        frame = __import__("pandas").read_csv(ROOT / "data" / "observations" / "behavior_synthetic.csv").head(5)
        frame["cases"] *= 200 / 20000
        frame.to_csv(tmp_path / "obs.csv", index=False)
        obs = [f"observations.path={tmp_path / 'obs.csv'}"]
    base = [f"model={model}", f"behavior={behavior}", *SMALL[model], "progress=false", "task.plot=false"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)  # a tiny population against the shipped series
        c = calibrate(compose_config(["task=calibrate", *base, *CALIBRATE[model], *obs, "task.iterations=2",
                                      "task.checkpoint_every=0"]), tmp_path / "calibrate")
    assert c["iterations"] == 2 and (c["trained_weights"] != {}) == (behavior == "neural")
    a = analyze(compose_config(["task=analyze", *base, "steps=5", "task.analyses=[sensitivity,counterfactuals]",
                                "task.replicates=2"]), tmp_path / "analyze")
    assert set(a["analyses"]) == {"sensitivity", "counterfactuals"}
    if behavior == "rules":   # the rule's parameters are among those the outcomes are differentiated in
        rule = "contact_rules" if model.startswith("contact") else "tuning_out"
        params = set(__import__("pandas").read_csv(tmp_path / "analyze" / "sensitivity.csv").parameter)
        assert any(p.startswith(f"{rule}.") for p in params), params


def test_a_decision_no_process_reads_is_still_refused_naming_the_pair():
    """Every shipped form fits its model; a decision the model cannot read (the epidemic's stays_home on the
    opinion model) is refused when the model is built, from the CLI with the pair named."""
    bad = ["model=opinion", "behavior=neural", "model.behavior.tuning_out.decisions=[stays_home]"]
    with pytest.raises(ConfigError, match=r"behaviour 'tuning_out' \(NeuralBehavior\) writes person\.stays_home, "
                                          r"which no process of the model reads: this behaviour does not fit"):
        instantiate_config(compose_config(bad).model)
    out = subprocess.run([sys.executable, "-m", "lpm_graph.cli", *bad, "population.num_people=100"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2
    assert "lpm-graph: error: model=opinion with behavior=neural: behaviour 'tuning_out'" in out.stderr


def test_no_behaviour_and_zero_decisions_leave_the_run_unchanged(population):
    base = instantiate(compose_config(["model.params.seir.initial_infected=5"]).model, _convert_="all")
    zero = instantiate(compose_config(["model.params.seir.initial_infected=5"]).model, _convert_="all",
                       behavior={"fixed": FixedDecisions({"stays_home": 0.0, "avoids_community": 0.0})})
    with torch.no_grad():
        a = base(population, steps=30, seed=3, replicates=4)
        b = zero(population, steps=30, seed=3, replicates=4)
    for k in ("S", "E", "I", "R", "new_infections"):
        assert torch.equal(a.series[k], b.series[k]), k  # common random numbers: the same epidemic


def _small(task, behavior, extra=()):
    return compose_config([f"task={task}", f"behavior={behavior}", "population.num_people=800", "population.seed=2",
                           "steps=20", "progress=false", "task.plot=false", "model.params.seir.initial_infected=3",
                           *extra])


@pytest.mark.parametrize("behavior", BEHAVIOURS)
def test_every_task_runs_with_each_behaviour(behavior, tmp_path):
    s = simulate(_small("simulate", behavior), tmp_path / "simulate")
    assert 0 < s["attack_rate"] <= 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)  # 800 people against observations of 100,000
        c = calibrate(_small("calibrate", behavior, ["task.iterations=2", "task.checkpoint_every=0", "steps=100"]),
                      tmp_path / "calibrate")
    assert c["iterations"] == 2 and (c["trained_weights"] != {}) == (behavior == "neural")
    a = analyze(_small("analyze", behavior, ["task.analyses=[sensitivity,counterfactuals]", "task.replicates=2"]),
                tmp_path / "analyze")
    assert set(a["analyses"]) == {"sensitivity", "counterfactuals"}
    if behavior == "rules":
        assert "rules.stays_home_own" in set(
            __import__("pandas").read_csv(tmp_path / "analyze" / "sensitivity.csv").parameter)


def test_the_cli_runs_each_behaviour_with_its_defaults_at_small_size(tmp_path):
    for behavior in ("rules", "neural"):
        out = subprocess.run([sys.executable, "-m", "lpm_graph.cli", f"behavior={behavior}",
                              "population.num_people=600", "steps=10", "progress=false", "task.plot=false",
                              "model.params.seir.initial_infected=3",
                              f"hydra.run.dir={tmp_path / behavior}"], capture_output=True, text=True, cwd=ROOT,
                             timeout=300)
        assert out.returncode == 0, out.stderr
        assert "simulate done" in out.stderr
        frame = __import__("pandas").read_parquet(tmp_path / behavior / "trajectory.parquet")
        assert "stays_home" in frame and "stays_home_age_0-10" in frame


def test_counterfactual_with_and_without_behavioural_response(tmp_path):
    cfg = compose_config(["+experiment=behavior_response", "population.num_people=3000", "population.seed=11",
                          "steps=60", "progress=false", "task.plot=false", "task.replicates=6",
                          "model.params.seir.initial_infected=10"])
    a = analyze(cfg, tmp_path)
    d = a["analyses"]["counterfactuals"]["differences"]["response"]["attack_rate"]
    assert a["analyses"]["counterfactuals"]["baseline"] == "no_response"
    assert d["ci95"][1] < 0, d  # responding lowers the attack rate, beyond its 95% interval


def test_a_scenario_cannot_remove_a_process_the_model_has_not_got(tmp_path):
    cfg = compose_config(["+experiment=behavior_response", "behavior=none", "population.num_people=500",
                          "steps=5", "progress=false", "task.plot=false"])
    with pytest.raises(ConfigError, match="removes process 'prevalence', which the model does not have"):
        analyze(cfg, tmp_path)


def test_model_accepts_a_mapping_of_behaviours_and_a_list():
    from lpm_graph.models.epidemic import SEIR, Infectiousness, VenueTransmission

    procs = lambda: {"infectiousness": Infectiousness(grouping=None), "transmission": VenueTransmission(),  # noqa: E731
                     "seir": SEIR(grouping=None)}
    params = {"transmission": {"beta_household": 0.4, "beta_school": 0.2, "beta_workplace": 0.2, "beta_community": 0.3},
              "seir": {"exposed_period": 3.0, "infectious_period": 5.0, "susceptibility": 1.0,
                       "initial_infected_fraction": 0.01}}
    a = Model(procs(), behavior={"home": FixedDecisions(grouping=None)}, params=params)
    b = Model(procs(), behavior=[FixedDecisions(grouping=None, name="home")], params=params)
    assert [p.name for p in a.behavior] == [p.name for p in b.behavior] == ["home"]
