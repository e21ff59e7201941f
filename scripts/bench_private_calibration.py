"""Cost in accuracy of calibrating through private aggregates, against the privacy spent (epsilon).

A synthetic truth: the expected-mode SEIR on a synthetic population with ``beta_community = 0.6`` gives the
daily new infections.  ``task=calibrate`` then fits ``transmission.beta_community`` (from 0.2, the shipped
start) to them, once in the clear and once per setting with private agents: without noise, and with discrete
Gaussian noise of multiplier ``z`` on the released totals (``privacy.noise_on=released``: one release per step
and one at the start of each run; a calibration spends over all its iterations' runs).  Printed: one
row per setting with the fitted value, its error against the truth and against the clear fit, the
(epsilon, delta) the accountant reports, the releases, and the time relative to the clear calibration.

    nice -n 10 python scripts/bench_private_calibration.py --people 500 --steps 12 --iterations 12 \\
        --fraction 0.03 --z 4 1 0.25
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

import lpm_graph.config  # noqa: F401  (registers the structured schemas)
from lpm_graph.tasks.calibrate import calibrate
from lpm_graph.tasks.simulate import instantiate_config

CONF = str(Path(__file__).resolve().parents[1] / "conf")
TRUTH = 0.6
NAME = "transmission.beta_community"


def config(args, obs: Path, extra=()):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "task=calibrate", f"population.num_people={args.people}", "population.seed=3", f"steps={args.steps}",
            "progress=false", "model.params.seir.initial_infected=5", "task.plot=false", "task.report=false",
            "task.checkpoint_every=0", f"model.learnable=[{NAME}]", "model.params.observation.reporting_fraction=1.0",
            f"task.iterations={args.iterations}", f"task.optimizer.lr={args.lr}", *extra])
    with open_dict(cfg):  # the total new infections (a private group split is not released)
        cfg.observations.path = str(obs)
        cfg.observations.series = {"cases": {"source": "new_infections", "reporting": "observation.reporting_fraction",
                                             "delay": 0}}
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=500)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--iterations", type=int, default=12)
    ap.add_argument("--lr", type=float, default=0.25)
    ap.add_argument("--fraction", type=float, default=0.03)
    ap.add_argument("--neighbours", type=int, default=4, help="SecAgg+ degree of each round")
    ap.add_argument("--z", type=float, nargs="*", default=[4.0, 1.0, 0.25], help="noise multipliers")
    ap.add_argument("--out", type=Path, default=Path("outputs/bench_private_calibration"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    obs = args.out / "cases.csv"
    truth = config(args, obs, [f"model.params.{NAME}={TRUTH}"])
    with torch.no_grad():
        traj = instantiate_config(truth.model)(instantiate_config(truth.population), steps=args.steps)
    pd.DataFrame({"step": range(1, args.steps + 1), "cases": traj.series["new_infections"][1:, 0].double()}).to_csv(
        obs, index=False)

    private = ["privacy=agents", f"privacy.private_fraction={args.fraction}", f"privacy.neighbours={args.neighbours}",
               "privacy.clip=1.0", "privacy.grouped_release=false"]  # the data are totals: one noisy total
    settings = [("clear", []), ("private, no noise", private)]
    settings += [(f"private, z={z:g}", [*private, f"privacy.noise_multiplier={z}"]) for z in args.z]
    rows, clear_fit, clear_time = [], None, None
    for label, extra in settings:
        t0 = time.perf_counter()
        m = calibrate(config(args, obs, extra), args.out / label.replace(", ", "_").replace("=", ""))
        seconds = time.perf_counter() - t0
        fit = m["fitted"][NAME]
        if clear_fit is None:
            clear_fit, clear_time = fit, seconds
        rep = m.get("processes", {}).get("seir", {}).get("privacy", {})
        dp = rep.get("differential_privacy", {})
        rows.append({"setting": label, "private_agents": rep.get("private_agents", 0), "fitted": round(fit, 4),
                     "error_vs_truth": round(abs(fit - TRUTH) / TRUTH, 4),
                     "vs_clear_fit": round(abs(fit - clear_fit), 4),
                     "epsilon": round(dp["epsilon"], 3) if dp else ("none" if not rep else "inf (no noise)"),
                     "delta": dp.get("delta"), "rounds": rep.get("rounds", 0), "noised_releases": dp.get("releases", 0),
                     "final_loss": m["final_loss"],
                     "time_vs_clear": round(seconds / clear_time, 1)})
        print(json.dumps(rows[-1]), flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "accuracy_vs_epsilon.csv", index=False)
    print(table.to_markdown(index=False))


if __name__ == "__main__":
    main()
