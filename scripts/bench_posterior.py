"""Coverage of the posterior methods of task=calibrate (task.method=vi | laplace | nuts | sbi, and the exact grid
posterior).

    python scripts/bench_posterior.py [--datasets 20] [--people 200] [--steps 5] [--methods vi,nuts]
    python scripts/bench_posterior.py --problem seir5 --people 500 --steps 20 --methods laplace,sbi \
        --map-evaluations 40 --sbi-simulations 1020
    python scripts/bench_posterior.py --problem seir5 --people 500 --steps 20 --methods vi \
        --vi-iterations 12 --vi-lr 0.05 --vi-particles 4 --map-evaluations 40 [--vi-guide normal]

``--problem seir5``: the default 5-parameter problem (model=seir's four contact intensities and reporting
fraction, Uniform over their bounds, 9 age series of reported cases), truths drawn from the prior.

Simulation-based calibration on a one-parameter problem whose exact posterior is computable on a grid: the
community contact intensity of the expected-mode epidemic (``--people`` people, 20 infected at the start), prior
Uniform over its bounds [0.2, 1.6]; for each of ``--datasets`` datasets a truth is drawn from that prior, and
``--steps`` days of Poisson counts of new infections at the truth.  Each method is run through the task itself
(``calibrate``, its ``posterior.parquet``), the grid posterior by one simulation per grid point.

Reports per method: the coverage of the central 50% and 90% intervals (the fraction of datasets whose truth
lies inside; for a calibrated posterior 0.5 and 0.9 within the binomial sd sqrt(p (1 - p) / datasets), shown),
the mean width of the 90% interval, the mean |posterior mean - truth|, the simulations used per dataset
(the task's own count: fitting runs plus the run at the posterior mean) and the wall time per dataset; as JSON
on stdout and a Markdown table.  ``sbi`` needs the ``sbi`` extra.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import lpm_graph.config  # noqa: F401  (registers the structured schemas)
from lpm_graph.tasks.calibrate import calibrate

CONF = str(Path(__file__).resolve().parents[1] / "conf")
NAME = "transmission.beta_community"
LO, HI = 0.2, 1.6


def config(people, steps, path, extra=()):
    over = ["task=calibrate", f"population.num_people={people}", "population.seed=3", f"steps={steps}",
            "progress=false", "model.mode=expected", "model.checkpoint=false", "dtype=float64",
            "model.params.seir.initial_infected=20", f"model.learnable=[{NAME}]", f"model.params.{NAME}=0.5",
            f"model.bounds.transmission.beta_community=[{LO},{HI}]", "~observations.series",
            "+observations.series={cases: {source: new_infections}}", f"observations.path={path}",
            "task.loss=poisson", "task.checkpoint_every=0", "task.plot=false", *extra]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=over)


class Means:
    """The likelihood's mean (expected-mode new infections of days 1..steps) at any intensity."""

    def __init__(self, cfg, steps):
        self.model = instantiate(cfg.model, _convert_="all", dtype=torch.float64)
        self.graph = self.model.prepare(instantiate(cfg.population, _convert_="all"), torch.float64)
        self.model = self.model.to(dtype=torch.float64)
        self.steps = steps

    def __call__(self, betas):
        with torch.no_grad():
            return torch.stack([self.model(self.graph, steps=self.steps,
                                           overrides={NAME: torch.tensor(float(b), dtype=torch.float64)})
                                .series["new_infections"][1:, 0] for b in betas])


def grid_posterior(means_grid, grid, y):
    loglik = (y * means_grid.log() - means_grid - torch.lgamma(y + 1)).sum(1)
    w = torch.softmax(loglik, 0)
    cdf = torch.cumsum(w, 0)
    q = {p: float(grid[min(len(grid) - 1, int(torch.searchsorted(cdf, p)))]) for p in (0.05, 0.25, 0.75, 0.95)}
    return float((w * grid).sum()), q


METHOD_ARGS = {
    "vi": lambda a: ["task.method=vi", f"task.iterations={a.vi_iterations}", f"task.optimizer.lr={a.vi_lr}",
                     "task.draws=2000"],
    "laplace": lambda a: ["task.method=laplace", "task.draws=2000"],
    "nuts": lambda a: ["task.method=nuts", f"task.warmup={a.nuts_warmup}", f"task.draws={a.nuts_draws}",
                       "task.chains=2"],
    "sbi": lambda a: ["task.method=sbi", f"task.simulations={a.sbi_simulations}", "task.draws=2000"],
}


SEIR5_METHOD_ARGS = {
    "vi": lambda a: ["task.method=vi", f"task.iterations={a.vi_iterations}", f"task.optimizer.lr={a.vi_lr}",
                     "task.draws=2000", f"task.particles={a.vi_particles}",
                     f"task.map_evaluations={a.map_evaluations}", f"task.map_starts={a.map_starts}",
                     f"task.guide={a.vi_guide}",
                     *([f"task.renyi_alpha={a.vi_renyi_alpha}"] if a.vi_renyi_alpha is not None else [])],
    "laplace": lambda a: ["task.method=laplace", "task.draws=2000", f"task.map_evaluations={a.map_evaluations}",
                          f"task.map_starts={a.map_starts}", f"task.importance_samples={a.importance_samples}",
                          f"task.laplace_refinements={a.laplace_refinements}"],
    "nuts": lambda a: ["task.method=nuts", f"task.warmup={a.nuts_warmup}", f"task.draws={a.nuts_draws}",
                       "task.chains=2"],
    "sbi": lambda a: ["task.method=sbi", f"task.simulations={a.sbi_simulations}", "task.draws=2000"],
}


def seir5_config(people, steps, path, seed, extra=()):
    over = ["task=calibrate", "model=seir", f"population.num_people={people}", "population.seed=3", f"steps={steps}",
            f"seed={seed}", "progress=false", "model.checkpoint=false", "dtype=float64",
            "model.params.seir.initial_infected_fraction=0.01", f"observations.path={path}", "task.loss=poisson",
            "task.checkpoint_every=0", "task.plot=false", "task.report=false", *extra]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=over)


class Seir5Data:
    """Truths drawn from the prior and Poisson observations around the observation model's mean at them."""

    def __init__(self, cfg):
        from omegaconf import OmegaConf

        from lpm_graph.observation import ObservationModel, load_observations
        from lpm_graph.tasks.posterior import Prior
        from lpm_graph.tasks.simulate import build

        self.model, self.graph, _, self.run, _ = build(cfg)
        ocfg = OmegaConf.to_container(cfg.observations, resolve=True)
        self.series = ocfg["series"]
        self.obs_model = ObservationModel(self.series)
        self.obs = load_observations(ocfg["path"], self.series)
        self.prior = Prior(self.model.params, None, required=True)
        self.columns = self.prior.columns
        bounds = [self.model.params._bounds(n) for n in self.prior.names]
        self.lo = torch.tensor([b[0] for b in bounds], dtype=torch.float64)
        self.hi = torch.tensor([b[1] for b in bounds], dtype=torch.float64)

    def draw(self, gen: torch.Generator):
        from lpm_graph.observation import sample_observations

        theta = self.lo + (self.hi - self.lo) * torch.rand(len(self.lo), generator=gen, dtype=torch.float64)
        overrides = {n: theta[i].to(torch.float64) for i, n in enumerate(self.prior.names)}
        with torch.no_grad():
            traj = self.model(self.graph, steps=self.run.steps, seed=0, overrides=overrides)
            pred = self.obs_model.predict(traj, self.obs, {**self.model.params.as_dict(), **overrides})
        y = sample_observations(pred, "poisson", 0.0, gen)
        return theta, {name: y[name].tolist() for name in self.series}


def seir5(args, methods, root: Path) -> None:
    steps = list(range(1, args.steps + 1))
    path = root / "cases.csv"
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        series = list(compose(config_name="config", overrides=["task=calibrate", "model=seir"]).observations.series)
    pd.DataFrame({"step": steps, **{s: [0.0] * args.steps for s in series}}).to_csv(path, index=False)
    data = Seir5Data(seir5_config(args.people, args.steps, path, args.seed))
    columns, width = data.columns, (data.hi - data.lo)
    gen = torch.Generator().manual_seed(args.seed)
    rows = {m: [] for m in methods}
    for d in range(args.datasets):
        truth, y = data.draw(gen)
        pd.DataFrame({"step": steps, **y}).to_csv(path, index=False)
        for m in methods:
            t = time.perf_counter()
            metrics = calibrate(seir5_config(args.people, args.steps, path, args.seed + d, SEIR5_METHOD_ARGS[m](args)),
                                root / f"{m}{d}")
            seconds = time.perf_counter() - t
            x = torch.tensor(pd.read_parquet(root / f"{m}{d}" / "posterior.parquet")[columns].to_numpy())
            q = torch.quantile(x, torch.tensor([0.05, 0.25, 0.75, 0.95], dtype=torch.float64), dim=0)
            rows[m].append({"truth": truth, "mean": x.mean(0), "q": q, "simulations": metrics["simulations"],
                            "seconds": seconds})
            print(json.dumps({"dataset": d, "method": m, "seconds": round(seconds, 1),
                              "simulations": metrics["simulations"], "truth": truth.tolist(),
                              "mean": x.mean(0).tolist(), "q05_25_75_95": q.tolist()}), flush=True)
    n, k = args.datasets, len(columns)
    table = []
    for m, rs in rows.items():
        truth = torch.stack([r["truth"] for r in rs])
        q = torch.stack([r["q"] for r in rs])  # [n, 4, k]
        in50 = (q[:, 1] <= truth) & (truth <= q[:, 2])
        in90 = (q[:, 0] <= truth) & (truth <= q[:, 3])
        mean = torch.stack([r["mean"] for r in rs])
        table.append({"method": m, "datasets": n, "intervals": n * k,
                      "coverage50": float(in50.double().mean()), "coverage90": float(in90.double().mean()),
                      "coverage50_per_parameter": dict(zip(columns, in50.double().mean(0).tolist())),
                      "coverage90_per_parameter": dict(zip(columns, in90.double().mean(0).tolist())),
                      "width90": float(((q[:, 3] - q[:, 0]) / width).mean()),
                      "abs_error": float(((mean - truth).abs() / width).mean()),
                      "simulations": sum(r["simulations"] for r in rs) / n,
                      "seconds": sum(r["seconds"] for r in rs) / n})
    print(json.dumps({"args": vars(args), "machine": platform.machine(), "torch": torch.__version__,
                      "results": table}, indent=2))
    print(f"\n{n} datasets x {k} parameters; binomial sd of a pooled coverage (independent intervals): "
          f"50% +- {math.sqrt(0.25 / (n * k)):.3f}, 90% +- {math.sqrt(0.09 / (n * k)):.3f}; {args.people} people, "
          f"{args.steps} days, 9 age series, prior Uniform over the bounds\n")
    print("| method | coverage 50% | coverage 90% | width 90% (of prior range) | abs error of mean (of range) | "
          "simulations / dataset | wall s / dataset |")
    print("|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['method']} | {r['coverage50']:.2f} | {r['coverage90']:.2f} | {r['width90']:.3f} | "
              f"{r['abs_error']:.3f} | {r['simulations']:.0f} | {r['seconds']:.1f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problem", choices=("beta", "seir5"), default="beta")
    ap.add_argument("--datasets", type=int, default=20)
    ap.add_argument("--people", type=int, default=200)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--methods", default="vi,nuts")
    ap.add_argument("--vi-iterations", type=int, default=250)
    ap.add_argument("--vi-lr", type=float, default=0.05)
    ap.add_argument("--vi-particles", type=int, default=1)
    ap.add_argument("--map-evaluations", type=int, default=60, help="seir5: L-BFGS simulations of the MAP fit "
                    "(vi's start, laplace's point)")
    ap.add_argument("--vi-guide", default="truncated_normal", choices=("truncated_normal", "normal"),
                    help="seir5: vi's guide (task.guide)")
    ap.add_argument("--vi-renyi-alpha", type=float, default=None, help="seir5: vi's RenyiELBO order (default: ELBO)")
    ap.add_argument("--map-starts", type=int, default=4, help="seir5: its starts")
    ap.add_argument("--importance-samples", type=int, default=0, help="seir5, laplace: simulations of the PSIS "
                    "correction")
    ap.add_argument("--laplace-refinements", type=int, default=0, help="seir5, laplace: re-expansions at its mode")
    ap.add_argument("--nuts-warmup", type=int, default=60)
    ap.add_argument("--nuts-draws", type=int, default=300)
    ap.add_argument("--sbi-simulations", type=int, default=1000)
    ap.add_argument("--grid", type=int, default=161)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    methods = [m for m in args.methods.split(",") if m]
    root = Path(tempfile.mkdtemp(prefix="bench_posterior_"))
    if args.problem == "seir5":
        return seir5(args, methods, root)
    gen = torch.Generator().manual_seed(args.seed)
    path = root / "cases.csv"
    pd.DataFrame({"step": range(1, args.steps + 1), "cases": [0.0] * args.steps}).to_csv(path, index=False)
    means = Means(config(args.people, args.steps, path), args.steps)
    grid = torch.linspace(LO, HI, args.grid, dtype=torch.float64)[1:-1]
    t0 = time.perf_counter()
    means_grid = means(grid.tolist()).clamp_min(1e-8)
    grid_seconds = time.perf_counter() - t0
    rows = {m: [] for m in ["grid", *methods]}
    for d in range(args.datasets):
        truth = LO + (HI - LO) * float(torch.rand((), generator=gen, dtype=torch.float64))
        y = torch.poisson(means([truth])[0], generator=gen)
        pd.DataFrame({"step": range(1, args.steps + 1), "cases": y.tolist()}).to_csv(path, index=False)
        mean, q = grid_posterior(means_grid, grid, y)
        rows["grid"].append({"truth": truth, "mean": mean, **q, "simulations": len(grid), "seconds": grid_seconds})
        for m in methods:
            t = time.perf_counter()
            metrics = calibrate(config(args.people, args.steps, path, METHOD_ARGS[m](args)), root / f"{m}{d}")
            seconds = time.perf_counter() - t
            x = torch.tensor(pd.read_parquet(root / f"{m}{d}" / "posterior.parquet")[NAME].to_numpy())
            qs = torch.quantile(x, torch.tensor([0.05, 0.25, 0.75, 0.95], dtype=torch.float64)).tolist()
            rows[m].append({"truth": truth, "mean": float(x.mean()), **dict(zip((0.05, 0.25, 0.75, 0.95), qs)),
                            "simulations": metrics["simulations"], "seconds": seconds})
    table = []
    n = args.datasets
    for m, rs in rows.items():
        cov50 = sum(r[0.25] <= r["truth"] <= r[0.75] for r in rs) / n
        cov90 = sum(r[0.05] <= r["truth"] <= r[0.95] for r in rs) / n
        table.append({"method": m, "datasets": n, "coverage50": cov50, "coverage90": cov90,
                      "width90": sum(r[0.95] - r[0.05] for r in rs) / n,
                      "abs_error": sum(abs(r["mean"] - r["truth"]) for r in rs) / n,
                      "simulations": sum(r["simulations"] for r in rs) / n,
                      "seconds": sum(r["seconds"] for r in rs) / n})
    print(json.dumps({"args": vars(args), "machine": platform.machine(), "torch": torch.__version__,
                      "results": table}, indent=2))
    print(f"\n{n} datasets, binomial sd of a coverage: 50% +- {math.sqrt(0.25 / n):.3f}, "
          f"90% +- {math.sqrt(0.09 / n):.3f}; {args.people} people, {args.steps} days, prior U[{LO}, {HI}]\n")
    print("| method | coverage 50% | coverage 90% | width 90% | abs error of mean | simulations / dataset | "
          "wall s / dataset |")
    print("|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['method']} | {r['coverage50']:.2f} | {r['coverage90']:.2f} | {r['width90']:.3f} | "
              f"{r['abs_error']:.3f} | {r['simulations']:.0f} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
