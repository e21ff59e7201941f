"""Any shipped model's step against the bare sparse kernel on the same edges, in the same process.

    python scripts/bench_model.py model=opinion population.num_people=1e6
    python scripts/bench_model.py model=seir population.num_people=1e6 --steps 20 --repeat 3

The arguments are Hydra overrides of the shipped ``conf/`` (the model and its
population at the size to measure).  The population is built and laid out
for the model (timed); then, with one thread unless ``threads=`` says
otherwise:

``step``
    the model runs ``--steps`` steps without gradients, ``--repeat`` times;
    the median time per step.
``kernel``
    one ``torch.sparse.mm`` without autograd over every layout the model
    reads (each declared edge type, window and stack, as the prepared graph
    holds them, ``int32`` CSR) with one column per replicate, median of 20,
    timed between the model's runs; the sum over layouts.

Prints nodes, edges, both times, the ratio step / kernel (what to compare
across machines and loads) and the peak RSS; ``--markdown`` prints the row of
``BENCHMARKS.md``'s model table.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _size(value: str) -> str:
    """``population.num_people=1e6`` -> ``population.num_people=1000000`` (Hydra wants an integer)."""
    key, _, v = value.partition("=")
    try:
        f = float(v)
    except ValueError:
        return value
    return f"{key}={int(f)}" if f.is_integer() and ("e" in v or "." in v) else value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()

    import torch
    from hydra import compose, initialize_config_dir

    from lpm_graph import threads
    from lpm_graph.config import validate_run_config
    from lpm_graph.memory import peak_rss
    from lpm_graph.tasks.simulate import instantiate_config

    overrides = [_size(o) for o in args.overrides]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["progress=false", *overrides])
    run, _ = validate_run_config(cfg)
    threads.configure(run.threads if run.threads is not None else 1)
    dtype = getattr(torch, run.dtype)
    model = instantiate_config(cfg.model, dtype=dtype)
    t0 = time.perf_counter()
    data = instantiate_config(cfg.population)
    graph = model.prepare(data, dtype)
    build = time.perf_counter() - t0
    reps = 1 if not model.sampler.stochastic else run.replicates
    layouts = graph.layouts()
    inputs = [torch.rand(a.csr.size(1), reps, dtype=dtype) for a in layouts]

    def kernel() -> float:
        times = []
        for _ in range(20):
            t = time.perf_counter()
            for a, x in zip(layouts, inputs):
                torch.sparse.mm(a.csr, x)
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    step_times, kernel_times = [], []
    with torch.no_grad():
        model(graph, steps=1, seed=run.seed, replicates=reps)  # warm-up
        for _ in range(args.repeat):
            kernel_times.append(kernel())
            t = time.perf_counter()
            model(graph, steps=args.steps, seed=run.seed, replicates=reps)
            step_times.append((time.perf_counter() - t) / args.steps)
        kernel_times.append(kernel())
    step, kern = statistics.median(step_times), statistics.median(kernel_times)
    nodes = sum(int(n) for n in graph.num_nodes.values())
    edges = sum(a.num_edges for a in layouts)
    model_name = next((o.split("=", 1)[1] for o in overrides if o.startswith("model=")), "seir")
    print(f"load average {os.getloadavg()[0]:.2f}; threads {torch.get_num_threads()}; replicates {reps}; "
          f"mode {model.sampler.mode}")
    print(f"{model_name}: {nodes:,} nodes, {edges:,} edges in {len(layouts)} layouts; build {build:.1f} s; "
          f"step {step * 1e3:.1f} ms; kernel {kern * 1e3:.2f} ms; step / kernel {step / kern:.2f}; "
          f"peak RSS {peak_rss() / 2**20:.0f} MB")
    if args.markdown:
        print(f"| {model_name} | {nodes:,} | {edges:,} | {step * 1e3:.1f} | {kern * 1e3:.2f} | {step / kern:.2f} | "
              f"{peak_rss() / 2**20:.0f} |")


if __name__ == "__main__":
    main()
