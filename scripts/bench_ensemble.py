"""Wall time of a replicate ensemble under the joblib launcher against the basic (sequential) one.

    python scripts/bench_ensemble.py --repeats 2                      # 8 members, 100,000 people, 100 steps
    python scripts/bench_ensemble.py --members 8 --n-jobs 2 --overrides population.num_people=50000 steps=100

Runs ``lpm-graph -m seed=0,...,<members-1> <overrides>`` twice in fresh processes, with the basic launcher and
with ``hydra/launcher=joblib hydra.launcher.n_jobs=<n-jobs>``, alternating the order over ``--repeats``
(a pair runs back to back, so that a change in the machine's load hits both), and prints each wall time with the
load average at its start, each pair's ratio joblib / basic and their median, and whether the two ensemble
summaries (``ensemble.csv``) are the same file.
Each member runs ``threads=1`` under both launchers: the comparison is of running members side by side, not of
torch's intra-op threads.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(members: int, launcher: list[str], overrides: list[str], where: Path) -> float:
    cmd = [sys.executable, "-m", "lpm_graph", "-m", "seed=" + ",".join(map(str, range(members))), "threads=1",
           "progress=false", "task.plot=false", "task.report=false", *overrides, *launcher,
           f"hydra.sweep.dir={where}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"bench_ensemble: {' '.join(cmd)} failed:\n{proc.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--n-jobs", type=int, default=2, help="joblib's worker processes")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--overrides", nargs="*", default=["population.num_people=100000", "steps=100"])
    args = parser.parse_args()
    launchers = {"basic": [], "joblib": ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.n_jobs}"]}
    times: dict[str, list[float]] = {k: [] for k in launchers}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            order = list(launchers) if r % 2 == 0 else list(reversed(launchers))
            for name in order:
                where = Path(tmp, f"{name}{r}")
                load = loadavg()
                times[name].append(run(args.members, launchers[name], args.overrides, where))
                print(f"{name:>6} repeat {r}: {times[name][-1]:.1f} s (load average at start {load})", flush=True)
        same = all(Path(tmp, f"basic{r}", "ensemble.csv").read_bytes() == Path(tmp, f"joblib{r}", "ensemble.csv")
                   .read_bytes() for r in range(args.repeats))
    ratios = [j / b for j, b in zip(times["joblib"], times["basic"])]
    print(f"{args.members} members, {' '.join(args.overrides)}, joblib n_jobs={args.n_jobs}: ratio joblib/basic per "
          f"pair {', '.join(f'{x:.2f}' for x in ratios)}, median {statistics.median(ratios):.2f}; "
          f"ensemble.csv identical: {same}; load average now {loadavg()}")


def loadavg() -> str:
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "unknown"

if __name__ == "__main__":
    main()
