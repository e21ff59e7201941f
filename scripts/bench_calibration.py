"""Gradient calibration vs a gradient-free baseline (Optuna TPE) on the same recovery problem.

    python scripts/bench_calibration.py [--people 20000] [--steps 80] [--iterations 80] [--trials 200]

Observations are noise-free reported cases by age group from the expected-mode
model at known parameters (4 contact intensities and the reporting fraction).
Both methods start from the same bounds and minimise the same loss
(lpm_graph.observation.observation_loss, normalised MSE):

* gradient: Adam through the unrolled simulator (one forward + one backward
  per iteration, per-step checkpointing);
* TPE: optuna's TPESampler, one forward simulation per trial, called directly.

Reports, for each method, how many simulations and how much wall time it
needs to reach a target loss (by default 1% of the loss at the common
starting point), the final/best losses and the fitted parameters, as JSON on
stdout and a Markdown table.
Requires the ``bench`` extra (optuna).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time

import torch

from lpm_graph.core import Model
from lpm_graph.data import generate_population
from lpm_graph.models.epidemic import SEIR, Infectiousness, VenueTransmission
from lpm_graph.observation import ObservationModel, Observations, observation_loss

TRUTH = {"transmission.beta_household": 0.4, "transmission.beta_school": 0.2, "transmission.beta_workplace": 0.2,
         "transmission.beta_community": 0.3, "observation.reporting_fraction": 0.3}
START = {"transmission.beta_household": 0.25, "transmission.beta_school": 0.35, "transmission.beta_workplace": 0.1,
         "transmission.beta_community": 0.2, "observation.reporting_fraction": 0.5}
BOUNDS = {k: ((0.0, 1.0) if k.startswith("observation.") else (0.0, 2.0)) for k in START}
FIXED = {"seir.exposed_period": 3.0, "seir.infectious_period": 5.0,
         "seir.susceptibility": [0.4, 0.4, 0.8, 0.8, 0.8, 0.8, 0.9, 0.9, 0.9],
         "seir.initial_infected_fraction": 0.001}
AGE = {"age": {"node_type": "person", "attribute": "age", "bins": [0, 10, 20, 30, 40, 50, 60, 70, 80]}}


def make_model(values, learnable=()):
    return Model({"infectiousness": Infectiousness(), "transmission": VenueTransmission(), "seir": SEIR()},
                 params={**FIXED, **values}, learnable=list(learnable), bounds={k: BOUNDS[k] for k in learnable},
                 groupings=AGE, mode="expected", checkpoint=True)


def observations(graph, steps):
    model = make_model(TRUTH)
    with torch.no_grad():
        traj = model(graph, steps=steps)
    labels = traj.labels["age"]
    spec = {f"cases_{lab}": {"source": "new_infections", "by": "age", "group": lab,
                             "reporting": "observation.reporting_fraction", "delay": 3} for lab in labels}
    om = ObservationModel(spec)
    obs = Observations(torch.arange(1, steps + 1), {}, None, "")
    pred = om.predict(traj, obs, model.params.as_dict())
    obs.values = {k: v.double() for k, v in pred.items()}
    return om, obs


def run_gradient(graph, steps, om, obs, iterations, lr):
    model = make_model(START, learnable=list(START))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    trace, t0 = [], time.perf_counter()
    for it in range(iterations):
        opt.zero_grad()
        traj = model(graph, steps=steps)
        loss = observation_loss(om.predict(traj, obs, model.params.as_dict()), obs)
        loss.backward()
        opt.step()
        trace.append((it + 1, time.perf_counter() - t0, float(loss.detach())))
    fitted = {k: float(model.params[k].detach()) for k in START}
    return trace, fitted


def run_tpe(graph, steps, om, obs, trials, seed):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trace, t0 = [], time.perf_counter()
    best = math.inf

    def objective(trial):
        nonlocal best
        values = {k: trial.suggest_float(k, *BOUNDS[k]) for k in START}
        model = make_model(values)
        with torch.no_grad():
            traj = model(graph, steps=steps)
            loss = float(observation_loss(om.predict(traj, obs, model.params.as_dict()), obs))
        best = min(best, loss)
        trace.append((trial.number + 1, time.perf_counter() - t0, best))
        return loss

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial(START)
    study.optimize(objective, n_trials=trials)
    return trace, study.best_params


def first_reaching(trace, target):
    for sims, seconds, loss in trace:
        if loss <= target:
            return sims, seconds
    return None, None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=20_000)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--iterations", type=int, default=80)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", type=float, default=0.01,
                    help="target loss as a fraction of the loss at the starting point (default 0.01)")
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    graph = make_model(TRUTH).prepare(generate_population(args.people, seed=args.seed))
    om, obs = observations(graph, args.steps)
    g_trace, g_fit = run_gradient(graph, args.steps, om, obs, args.iterations, args.lr)
    t_trace, t_fit = run_tpe(graph, args.steps, om, obs, args.trials, args.seed)
    target = args.target * g_trace[0][2]
    g_sims, g_time = first_reaching(g_trace, target)
    t_sims, t_time = first_reaching(t_trace, target)
    # a simulation for the gradient method is one forward + one backward pass
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "people": args.people, "steps": args.steps, "parameters": list(START),
        "target_loss": target,
        "gradient": {"iterations_to_target": g_sims, "seconds_to_target": g_time, "final_loss": g_trace[-1][2],
                     "fitted": g_fit, "seconds_per_iteration": g_trace[-1][1] / len(g_trace)},
        "tpe": {"trials_to_target": t_sims, "seconds_to_target": t_time, "best_loss": t_trace[-1][2],
                "trials": len(t_trace), "seconds": t_trace[-1][1], "best_params": t_fit,
                "seconds_per_trial": t_trace[-1][1] / len(t_trace)},
        "truth": TRUTH,
    }
    print(json.dumps(result, indent=2))
    reach = (f"{t_sims} | {t_time:.1f} s" if t_sims else f"not reached in {len(t_trace)} | {t_trace[-1][1]:.1f} s")
    print("\n| method | simulations to loss {:.3g} | wall time | final / best loss |".format(target))
    print("|---|---|---|---|")
    g_reach = (f"{g_sims} | {g_time:.1f} s" if g_sims else f"not reached in {len(g_trace)} | {g_trace[-1][1]:.1f} s")
    print(f"| gradient (Adam, fwd+bwd) | {g_reach} | {g_trace[-1][2]:.3g} |")
    print(f"| Optuna TPE (fwd only) | {reach} | {t_trace[-1][2]:.3g} |")


if __name__ == "__main__":
    main()
