"""task=calibrate through private aggregates: the fit moves to the truth from sums released by secure aggregation."""
from __future__ import annotations

import pandas as pd
import torch
from omegaconf import open_dict

from lpm_graph.tasks.calibrate import calibrate
from lpm_graph.tasks.simulate import instantiate_config
from tests.conftest import compose_config

N, STEPS, TRUE_BETA = 300, 10, 0.6


def config(path, extra=()):
    cfg = compose_config(["task=calibrate", f"population.num_people={N}", "population.seed=3", f"steps={STEPS}",
                          "progress=false", "model.params.seir.initial_infected=3", "task.plot=false",
                          "task.report=false", "task.checkpoint_every=0",
                          "model.learnable=[transmission.beta_community]",
                          "model.params.observation.reporting_fraction=1.0", "task.optimizer.lr=0.15", *extra])
    with open_dict(cfg):  # one series: the total new infections (the private share of a group is not released)
        cfg.observations.path = str(path)
        cfg.observations.series = {"cases": {"source": "new_infections", "reporting": "observation.reporting_fraction",
                                             "delay": 0}}
    return cfg


def test_calibrate_with_private_agents(tmp_path):
    obs = tmp_path / "cases.csv"
    truth = config(obs, [f"model.params.transmission.beta_community={TRUE_BETA}"])
    model = instantiate_config(truth.model)
    with torch.no_grad():
        traj = model(instantiate_config(truth.population), steps=STEPS)
    pd.DataFrame({"step": range(1, STEPS + 1), "cases": traj.series["new_infections"][1:, 0].double()}).to_csv(
        obs, index=False)
    cfg = config(obs, ["privacy=agents", "privacy.private_fraction=0.02", "task.iterations=3"])
    metrics = calibrate(cfg, tmp_path / "run")
    start = cfg.model.params.transmission.beta_community
    fitted = metrics["fitted"]["transmission.beta_community"]
    assert start < fitted < TRUE_BETA  # three Adam steps of 0.15 in the unconstrained space, towards the truth
    loss = pd.read_csv(tmp_path / "run" / "loss.csv")["loss"]
    assert loss.iloc[-1] < loss.iloc[0]
    report = metrics["processes"]["seir"]["privacy"]
    assert report["runs"] == 4 and report["private_agents"] >= 3  # three iterations and the final evaluation
    assert report["rounds"] == 4 * (2 * STEPS + 1)
