"""Make the shipped synthetic observations (data/observations/) from a run with known parameters.

    python scripts/make_observations.py

Runs the default model (conf/model/seir.yaml) in stochastic mode on the default
population (100,000 people, seed 0) for 100 days with the parameters in TRUTH,
reports a fraction of each day's new infections per age group three days later
with negative binomial noise, and writes:

- data/observations/synthetic_cases.csv   step, cases_<age group> ...
- data/observations/synthetic_truth.json  the parameters that made it
- data/observations/synthetic_features.csv  weekly exogenous features (for the calibration network demo)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import lpm_graph.config  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "observations"
TRUTH = {"transmission.beta_household": 0.4, "transmission.beta_school": 0.2, "transmission.beta_workplace": 0.2,
         "transmission.beta_community": 0.3, "observation.reporting_fraction": 0.3}
DELAY, STEPS, SEED, DISPERSION = 3, 100, 2024, 20.0


def main() -> None:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["seed=0"])
    model = instantiate(cfg.model, _convert_="all")
    data = instantiate(cfg.population, _convert_="all")
    params = {k: v for k, v in TRUTH.items() if not k.startswith("observation.")}
    for k, v in params.items():
        model.params.raw(k).fill_(v)
    with torch.no_grad():
        traj = model(data, steps=STEPS, seed=SEED)
    rng = np.random.default_rng(SEED)
    table = {"step": np.arange(1, STEPS + 1)}
    for g, label in enumerate(traj.labels["age"]):
        x = traj.grouped["age"]["new_infections"][:, g, 0].double().numpy()
        mean = TRUTH["observation.reporting_fraction"] * np.concatenate([np.zeros(DELAY), x])[1:STEPS + 1]
        # negative binomial with mean `mean` and dispersion k: Poisson-gamma mixture
        lam = rng.gamma(DISPERSION, np.maximum(mean, 1e-12) / DISPERSION)
        table[f"cases_{label}"] = rng.poisson(lam)
    OUT.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(table).to_csv(OUT / "synthetic_cases.csv", index=False)
    weeks = np.arange((STEPS + 6) // 7)
    pd.DataFrame({"week": weeks, "mobility": 1.0 - 0.3 * np.tanh((weeks - 6) / 2.0),
                  "temperature": 15 + 10 * np.sin(2 * np.pi * (weeks + 10) / 52)}).round(4).to_csv(
        OUT / "synthetic_features.csv", index=False)
    truth = dict(TRUTH, delay=DELAY, steps=STEPS, seed=SEED, dispersion=DISPERSION, population="synthetic, 100000, seed 0",
                 model="conf/model/seir.yaml, stochastic")
    (OUT / "synthetic_truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    print(f"wrote {OUT}: total reported cases {sum(v.sum() for k, v in table.items() if k != 'step')}")


if __name__ == "__main__":
    main()
