"""Make the shipped vaccine-logistics observations (data/observations/vaccine_logistics_cases*) from a run with a known
community transmission intensity.

    python scripts/make_vaccine_logistics_observations.py

Runs model=vaccine_logistics in expected mode (the mean field that
``task=calibrate`` fits: sampled runs on this household-structured population spread
markedly slower than the mean field, so a fit of the mean field to a sampled run would
not recover the value that made it) on its default population
(conf/population/vaccine_network.yaml) at POPULATION people (population seed 0) for
STEPS days with ``transmission.beta_community`` in TRUTH, and records the new infections
(the observable new_infections) at days 1..STEPS with Poisson noise drawn with seed
RUN_SEED.  Writes:

- data/observations/vaccine_logistics_cases.csv         step, cases
- data/observations/vaccine_logistics_cases_truth.json  the value and settings that made it

``task=calibrate model=vaccine_logistics`` fits ``transmission.beta_community`` to it
(conf/task_model/calibrate_vaccine_logistics.yaml).  :func:`make` is also what the tests
call, on a smaller population, to check that the fit recovers the truth.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.observation_truth import simulate_shipped, write_with_truth  # noqa: E402

OUT = ROOT / "data" / "observations"
NAME = "vaccine_logistics_cases"
TRUTH = {"transmission.beta_community": 0.3}
STEPS, RUN_SEED, POPULATION_SEED, POPULATION = 60, 2024, 0, 20000


def make(out_dir: Path, overrides=(), truth: float = TRUTH["transmission.beta_community"], steps: int = STEPS,
         run_seed: int = RUN_SEED, population_seed: int = POPULATION_SEED, num_people: int = POPULATION,
         name: str = NAME) -> dict:
    """Simulate with ``beta_community = truth``; write ``<name>.csv`` and ``<name>_truth.json`` into ``out_dir``."""
    _, data, traj = simulate_shipped([
        "model=vaccine_logistics", f"seed={population_seed}", f"population.num_people={num_people}",
        f"model.params.transmission.beta_community={truth}", "model.mode=expected", *overrides], steps)
    mean = traj.series["new_infections"][1:, 0].double().numpy()
    cases = np.random.default_rng(run_seed).poisson(mean).astype(np.float64)
    record = {"transmission.beta_community": truth, "steps": steps, "seed": run_seed,
              "population": {"population_seed": population_seed, "num_people": num_people,
                             "overrides": list(overrides),
                             "num_nodes": {nt: int(data[nt].num_nodes) for nt in data.node_types}},
              "noise": "Poisson around the mean field's new infections (numpy default_rng(seed))",
              "model": "conf/model/vaccine_logistics.yaml, mode expected"}
    return write_with_truth(out_dir, name, "cases", cases, record)


def main() -> None:
    torch.set_num_threads(1)
    record = make(OUT)
    print(f"wrote {OUT / (NAME + '.csv')} and {NAME}_truth.json: beta_community "
          f"{record['transmission.beta_community']}, {record['steps']} steps")


if __name__ == "__main__":
    main()
