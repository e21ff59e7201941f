"""Scaling of a partitioned run: one process against torchrun with P processes, from the CLI, same config.

    nice -n 10 python scripts/bench_distributed.py --people 1000000 --steps 100 --parts 2 [--weak]

Strong scaling: the same population in 1 and P processes.  ``--weak``: 1 process on people/P against P
processes on people.  The P-process population is partitioned once (python -m lpm_graph.distributed.partition)
and read per rank.  Reported: each run's simulate seconds (from summary.json, rank 0 for the partitioned run), the
time rank 0 spent inside collectives (exchange and observable reductions, waiting for the other rank included)
and the rest (compute), the values rank 0 sent per step, and whether the trajectories (every observable at every
step) are identical.  On a shared 2-core machine, P processes share the same two cores: the ratio, not the
seconds, is the result, and it is bounded by the cores, not by the exchange.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def cli(args, out: Path, parts: int = 1) -> dict:
    common = ["progress=false", "task.plot=false", "task.report=false", f"hydra.run.dir={out}"]
    if parts == 1:
        cmd = [sys.executable, "-m", "lpm_graph", *args, *common]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={parts}", "--max-restarts=0", "-m",
               "lpm_graph", *args, *common]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    summary = json.loads((out / "summary.json").read_text())
    summary["wall_seconds"] = time.perf_counter() - t0
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--parts", type=int, default=2)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per process (the same in both runs)")
    parser.add_argument("--weak", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = [f"steps={args.steps}", f"dtype={args.dtype}", f"threads={args.threads}", "seed=0"]
        single_people = args.people // args.parts if args.weak else args.people
        one = cli([*base, f"population.num_people={single_people}"], tmp / "one")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lpm_graph.distributed.partition", f"--parts={args.parts}",
                        f"--out={tmp / 'parts'}", f"population.num_people={args.people}", "seed=0"], cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True, capture_output=True, text=True)
        t_part = time.perf_counter() - t0
        many = cli([*base, f"population.num_people={args.people}", f"distributed.partition={tmp / 'parts'}"],
                   tmp / "many", args.parts)
        same = None
        if not args.weak:
            a = pd.read_parquet(tmp / "one" / "trajectory.parquet")
            b = pd.read_parquet(tmp / "many" / "trajectory.parquet")
            same = bool(a.equals(b))
            diff = (a - b).abs().max().max() if not same else 0
        d = many["distributed"]
        coll = d["rank0_collective_seconds"]
        print(f"{'weak' if args.weak else 'strong'} scaling, {args.dtype}, {args.steps} steps, threads={args.threads}: "
              f"1 process x {single_people:,} people: simulate {one['simulate_seconds']:.1f} s; "
              f"{args.parts} processes x {args.people:,} people (partition written in {t_part:.0f} s): simulate "
              f"{many['simulate_seconds']:.1f} s, of which {coll:.1f} s in collectives "
              f"({d['rank0_collectives'] / args.steps:.0f} per step, {d['rank0_values_sent'] / args.steps:,.0f} values "
              f"sent per step by rank 0), {many['simulate_seconds'] - coll:.1f} s compute; ratio "
              f"{many['simulate_seconds'] / one['simulate_seconds']:.2f}"
              + ("" if same is None else f"; trajectories identical: {same}" + ("" if same else f" (max diff {diff})")))


if __name__ == "__main__":
    main()
