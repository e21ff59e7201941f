"""The thread-count default on a shared machine: the default run quiet and with one core busy.

    python scripts/bench_threads.py                       # 1M people x 100 steps; threads default, 1, 2
    python scripts/bench_threads.py --people 1e6 --steps 100 --threads default 2

For each thread setting the default simulation (``lpm-graph``, the shipped
SEIR on the synthetic population, no plot) runs in a fresh process twice:
on the machine as it is, and with another process spinning on one core
(``python -c "while True: pass"``), and reports its ``simulate_seconds`` and
the ratio busy / quiet (the target: at most 1.5).  ``default`` is what
``lpm_graph.threads.default_threads`` chooses on this machine.
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

ROOT = Path(__file__).resolve().parents[1]


def run(people: int, steps: int, threads: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "lpm_graph", f"population.num_people={people}", f"steps={steps}", "progress=false",
               "task.plot=false", f"hydra.run.dir={tmp}"] + ([] if threads == "default" else [f"threads={threads}"])
        subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True, capture_output=True)
        return json.loads((Path(tmp) / "summary.json").read_text())["simulate_seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=float, default=1e6)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", nargs="*", default=["default", "1", "2"])
    args = ap.parse_args()
    from lpm_graph.threads import default_threads

    print(f"default threads here: {default_threads()}; cores: {len(os.sched_getaffinity(0))}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print("| threads | quiet s | one core busy s | busy / quiet |\n|---|---:|---:|---:|")
    for threads in args.threads:
        quiet = run(int(args.people), args.steps, threads)
        spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(1.0)
            busy = run(int(args.people), args.steps, threads)
        finally:
            spin.kill()
            spin.wait()
        label = f"default ({default_threads()})" if threads == "default" else threads
        print(f"| {label} | {quiet:.2f} | {busy:.2f} | {busy / quiet:.2f} |", flush=True)


if __name__ == "__main__":
    main()
