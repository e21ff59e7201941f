"""Make the shipped economy observations (data/observations/economy_unemployment*) from a run with known rates.

    python scripts/make_economy_observations.py

Runs the economy (conf/model/economy.yaml) on its default population (the
synthetic population at 20,000 people, population seed 0) for STEPS months
with the separation rate and matching efficiency of TRUTH, in stochastic
mode with seed RUN_SEED (hiring and separation drawn per person), and
records the unemployment rate at steps 1..STEPS (times exp(NOISE * N(0, 1)),
none by default: the draws are the noise).  Writes:

- data/observations/economy_unemployment.csv         step, unemployment
- data/observations/economy_unemployment_truth.json  the parameters and settings that made it

``task=calibrate model=economy`` fits ``labour.separation_rate`` and
``labour.matching_efficiency`` to it (conf/task_model/calibrate_economy.yaml).
:func:`make` is also what the tests call, on a smaller population, to check
that the fit recovers the truth.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.observation_truth import simulate_shipped, write_with_truth  # noqa: E402

OUT = ROOT / "data" / "observations"
NAME = "economy_unemployment"
TRUTH = {"labour.separation_rate": 0.025, "labour.matching_efficiency": 0.35}
STEPS, RUN_SEED, POPULATION_SEED, NOISE, NUM_PEOPLE = 36, 2024, 0, 0.0, 20000


def make(out_dir: Path, overrides=(), truth: dict | None = None, steps: int = STEPS, run_seed: int = RUN_SEED,
         population_seed: int = POPULATION_SEED, noise: float = NOISE, mode: str = "stochastic",
         name: str = NAME) -> dict:
    """Simulate with the rates ``truth``, write ``<name>.csv`` and ``<name>_truth.json`` into ``out_dir``.

    Args:
        out_dir: the folder written.
        overrides: Hydra overrides on top of ``model=economy`` (e.g. a smaller population).
        truth: ``{dotted name: value}`` of the rates (default :data:`TRUTH`).
        steps: observed steps 1..steps.
        run_seed: the seed of the run's draws.
        population_seed: the top-level seed while composing (the synthetic population's ``${seed}``).
        noise: sd of multiplicative log-normal observation noise (0: none).
        mode: ``stochastic`` (per-person draws) or ``expected`` (the mean field).
        name: the file stem.

    Returns the truth record written to the JSON file.
    """
    truth = dict(TRUTH if truth is None else truth)
    _, data, traj = simulate_shipped([
        "model=economy", f"seed={population_seed}", f"population.num_people={NUM_PEOPLE}",
        f"model.mode={mode}", *(f"model.params.{k}={v}" for k, v in truth.items()), *overrides], steps, run_seed)
    u = traj.series["unemployment_rate"][1:, 0].double().numpy()
    rng = np.random.default_rng(run_seed)
    observed = u * np.exp(noise * rng.standard_normal(steps)) if noise else u
    record = {**truth, "steps": steps, "seed": run_seed, "mode": mode,
              "population": {"population_seed": population_seed, "overrides": list(overrides),
                             "num_people": int(data["person"].num_nodes)},
              "noise": (f"observed = rate * exp({noise} * N(0, 1)), numpy default_rng({run_seed})" if noise
                        else "none beyond the per-person draws"),
              "model": "conf/model/economy.yaml"}
    return write_with_truth(out_dir, name, "unemployment", observed, record)


def main() -> None:
    record = make(OUT)
    print(f"wrote {OUT / (NAME + '.csv')} and {NAME}_truth.json: {TRUTH}, {record['steps']} steps, "
          f"{record['population']['num_people']} people, {record['mode']} mode")


if __name__ == "__main__":
    main()
