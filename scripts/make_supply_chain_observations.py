"""Make the shipped supply-chain observations (data/observations/supply_chain_sales*) from a run with a known demand rate.

    python scripts/make_supply_chain_observations.py

Runs model=supply_chain (stochastic: Poisson demand drawn) on its default population
(conf/population/supply_network.yaml, population seed 0) for STEPS steps with the
consumers' demand rate in TRUTH and seed RUN_SEED, and records the sales (units
delivered to consumers, the observable consumer_delivered) at steps 1..STEPS.  Writes:

- data/observations/supply_chain_sales.csv         step, sales
- data/observations/supply_chain_sales_truth.json  the rate and settings that made it

``task=calibrate model=supply_chain`` fits ``demand.rate`` to it
(conf/task_model/calibrate_supply_chain.yaml).  :func:`make` is also what the tests
call, on a smaller network, to check that the fit recovers the truth.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.observation_truth import simulate_shipped, write_with_truth  # noqa: E402

OUT = ROOT / "data" / "observations"
NAME = "supply_chain_sales"
TRUTH = {"demand.rate": 1.2}
STEPS, RUN_SEED, POPULATION_SEED = 30, 2024, 0


def make(out_dir: Path, overrides=(), truth: float = TRUTH["demand.rate"], steps: int = STEPS,
         run_seed: int = RUN_SEED, population_seed: int = POPULATION_SEED, name: str = NAME) -> dict:
    """Simulate with demand rate ``truth``; write ``<name>.csv`` and ``<name>_truth.json`` into ``out_dir``."""
    cfg, data, traj = simulate_shipped(["model=supply_chain", f"seed={population_seed}",
                                        f"model.params.demand.rate={truth}", *overrides], steps, run_seed)
    sales = traj.series["consumer_delivered"][1:, 0].double().numpy()
    record = {"demand.rate": truth, "steps": steps, "seed": run_seed,
              "population": {"population_seed": population_seed, "overrides": list(overrides),
                             "num_nodes": {nt: int(data[nt].num_nodes) for nt in data.node_types}},
              "noise": "none beyond the Poisson demand of the stochastic run",
              "model": "conf/model/supply_chain.yaml, mode " + str(cfg.model.mode)}
    return write_with_truth(out_dir, name, "sales", sales, record)


def main() -> None:
    record = make(OUT)
    print(f"wrote {OUT / (NAME + '.csv')} and {NAME}_truth.json: demand rate {record['demand.rate']}, "
          f"{record['steps']} steps")


if __name__ == "__main__":
    main()
