"""Make the shipped synthetic mobility and case observations of a behavioural epidemic, with known truth.

    python scripts/make_behavior_observations.py [--people 20000] [--steps 80]

Runs the default SEIR model (conf/model/seir.yaml) in expected mode on the synthetic population
(seed 0) with the epidemic parameters of TRUTH and a known behaviour: people stay home in logistic
response to the prevalence in their household, school and workplace (lpm_graph.behavior.RuleBehavior
with the parameters of BEHAVIOUR).  Writes, without noise:

- data/observations/behavior_synthetic.csv   step, cases (new infections), stays_home (the share staying home)
- data/observations/behavior_truth.json      what made it

A calibration of a neural behaviour with the two epidemic parameters (conf/experiment/behavior_neural.yaml)
fits these: the network learns the response, the parameters should come back to TRUTH.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import lpm_graph.config  # noqa: F401
from lpm_graph.behavior import RuleBehavior, VenuePrevalence

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "observations"
#: the epidemic parameters a calibration recovers; the others are the model's defaults (conf/model/seir.yaml)
TRUTH = {"transmission.beta_community": 0.3, "seir.initial_infected_fraction": 0.002}
#: the behaviour that made the mobility series (a network learns it)
BEHAVIOUR = {"stays_home_slope": [20.0, 60.0, 60.0], "stays_home_threshold": [0.2, 0.04, 0.04],
             "stays_home_max": [0.3, 0.4, 0.4]}
VENUES = ["household", "school", "workplace"]


def observations(num_people: int, seed: int = 0, steps: int = 80) -> pd.DataFrame:
    """The noise-free table ``step, cases, stays_home`` (steps 1..``steps``) of the truth at this size."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"population.num_people={num_people}",
                                                       f"population.seed={seed}", "model.mode=expected"])
    behavior = {"prevalence": VenuePrevalence(venue_types=VENUES),
                "truth": RuleBehavior(["stays_home"], venue_types=VENUES, own=None, policy=None)}
    params = {"truth": BEHAVIOUR}
    for name, value in TRUTH.items():
        ns, local = name.split(".")
        params.setdefault(ns, {})[local] = value
    model = instantiate(cfg.model, _convert_="all", behavior=behavior, params=params)
    data = instantiate(cfg.population, _convert_="all")
    with torch.no_grad():
        traj = model(data, steps=steps, seed=seed)
    return pd.DataFrame({"step": range(1, steps + 1),
                         "cases": traj.series["new_infections"][1:, 0].double().numpy(),
                         "stays_home": traj.series["stays_home"][1:, 0].double().numpy()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=20000)
    parser.add_argument("--steps", type=int, default=80)
    args = parser.parse_args()
    frame = observations(args.people, 0, args.steps)
    OUT.mkdir(parents=True, exist_ok=True)
    frame.round(6).to_csv(OUT / "behavior_synthetic.csv", index=False)
    truth = {**TRUTH, "behaviour": {"class": "lpm_graph.behavior.RuleBehavior", "venue_types": VENUES, **BEHAVIOUR},
             "steps": args.steps, "population": f"synthetic, {args.people} people, seed 0",
             "model": "conf/model/seir.yaml, expected mode"}
    (OUT / "behavior_truth.json").write_text(json.dumps(truth, indent=2) + "\n")


if __name__ == "__main__":
    main()
