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
NO_FIT = ["contact", "contact_layers", "opinion"]
BEHAVIOURS = ["none", "rules", "neural"]


def test_every_config_of_conf_behavior_adds_to_the_mapping_model_behavior():
    for f in sorted((ROOT / "conf" / "behavior").glob("*.yaml")):
        assert f.read_text().startswith("# @package _global_"), f.name
    assert compose_config(["behavior=none"]).model.behavior == {}
    assert list(compose_config(["behavior=rules"]).model.behavior) == ["prevalence", "rules", "mask_effect"]
    assert list(compose_config(["behavior=neural"]).model.behavior) == ["prevalence", "neural"]


@pytest.mark.parametrize("model", FIT + NO_FIT)
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


@pytest.mark.parametrize("behavior", ["rules", "neural"])
@pytest.mark.parametrize("model", NO_FIT)
def test_a_model_that_reads_no_decision_is_refused_naming_the_pair(model, behavior):
    with pytest.raises(ConfigError, match=r"behaviour '\w+' \(\w+\) (writes|reads) person\.\w+, which no process of "
                                          r"the model .*this behaviour does not fit this model \(its processes: "):
        instantiate_config(compose_config([f"model={model}", f"behavior={behavior}"]).model)
    out = subprocess.run([sys.executable, "-m", "lpm_graph.cli", f"model={model}", f"behavior={behavior}"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120) if (model, behavior) == ("contact", "rules") else None
    if out is not None:
        assert out.returncode == 2
        assert f"lpm-graph: error: model={model} with behavior={behavior}: behaviour" in out.stderr


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
