"""Cost of sensitivities: autograd (one forward + one backward per outcome) against finite differences.

    python scripts/bench_sensitivity.py                       # 100k people, 120 days, 10 parameters, expected mode
    python scripts/bench_sensitivity.py --people 20000 --steps 60 --mode stochastic --replicates 4

Central finite differences need 2 forward runs per parameter element
(``k`` elements: ``2k`` runs, all outcomes from the same runs); reverse-mode
autograd needs one forward run that keeps the graph and one backward pass per
outcome, whatever ``k``.  The population and the model come from the
shipped config (``model=seird``), with ``susceptibility`` and ``fatality``
made scalars so that the ten parameters are ten elements:

    transmission.beta_{household,school,workplace,community}, infectiousness.relative,
    seir.{exposed_period, infectious_period, susceptibility, initial_infected_fraction, fatality}

Printed: the wall-clock time of each method (best of ``--repeat``), the
ratio finite differences / autograd for one outcome and for all four, and
per outcome the largest difference between the two derivative tables
relative to that outcome's largest derivative (float32: FD carries
round-off of order eps * O / h).
"""
from __future__ import annotations

import argparse
import time

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import lpm_graph.config  # noqa: F401  (registers the structured schemas)
from lpm_graph.analysis.sensitivity import finite_differences, sensitivity
from lpm_graph.cli import config_dir

PARAMETERS = ["transmission.beta_household", "transmission.beta_school", "transmission.beta_workplace",
              "transmission.beta_community", "seir.exposed_period", "seir.infectious_period", "seir.susceptibility",
              "infectiousness.relative", "seir.initial_infected_fraction", "seir.fatality"]
OUTCOMES = ["attack_rate", "peak_size", "peak_day", "deaths"]


def best(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--mode", choices=["expected", "stochastic"], default="expected")
    parser.add_argument("--replicates", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", action="store_true",
                        help="per-step gradient checkpointing (stochastic mode at 100k x 4 replicates x 120 steps "
                             "otherwise holds ~9 GB for the backward pass)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    overrides = [f"population.num_people={args.people}", "model=seird", f"model.mode={args.mode}",
                 "model.params.seir.susceptibility=0.8", "model.params.seir.fatality=0.01", f"seed={args.seed}",
                 f"model.checkpoint={str(args.checkpoint).lower()}"]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    t0 = time.perf_counter()
    model = instantiate(cfg.model, _convert_="all")
    graph = model.prepare(instantiate(cfg.population, _convert_="all"))
    print(f"population: {graph.num_nodes['person']:,} people, built in {time.perf_counter() - t0:.1f} s; "
          f"{args.steps} steps, mode={args.mode}, replicates={args.replicates}, checkpoint={args.checkpoint}, "
          f"threads={torch.get_num_threads()}")
    kw = dict(steps=args.steps, parameters=PARAMETERS, seed=args.seed, replicates=args.replicates)
    k = len(PARAMETERS)

    t_fwd, _ = best(lambda: _forward(model, graph, args), args.repeat)
    t_ad1, _ = best(lambda: sensitivity(model, graph, outcome_names=["deaths"], **kw), args.repeat)
    t_ad4, ad = best(lambda: sensitivity(model, graph, outcome_names=OUTCOMES, **kw), args.repeat)
    rel = 1e-2 if args.mode == "expected" else 0.1  # float32: a smaller step drowns in round-off
    t_fd, fd = best(lambda: finite_differences(model, graph, outcome_names=OUTCOMES, rel_step=rel, **kw), args.repeat)

    print(f"one forward run (no grad):                {t_fwd:8.2f} s")
    print(f"autograd, 1 outcome (forward + backward): {t_ad1:8.2f} s")
    print(f"autograd, 4 outcomes (forward + 4 bwd):   {t_ad4:8.2f} s")
    print(f"finite differences, {k} params ({2 * k} runs): {t_fd:8.2f} s  (all 4 outcomes)")
    print(f"ratio FD / autograd: {t_fd / t_ad1:.1f}x for one outcome, {t_fd / t_ad4:.1f}x for four")
    # error of each derivative relative to the largest derivative of the same outcome (units differ by outcome)
    scale = fd.assign(a=fd.fd.abs()).groupby("outcome").a.transform("max")
    err = (ad.derivative - fd.fd).abs() / scale
    for name in OUTCOMES:
        i = err[fd.outcome == name].idxmax()
        print(f"  {name:12s} largest |autograd - FD| / max|FD|: {err[i]:.1e} ({fd.parameter[i]}; "
              f"autograd {ad.derivative[i]:.4g}, FD {fd.fd[i]:.4g})")


def _forward(model, graph, args):
    with torch.no_grad():
        return model(graph, steps=args.steps, seed=args.seed, replicates=args.replicates)


if __name__ == "__main__":
    main()
