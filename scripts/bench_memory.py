"""Memory estimate against measured peak RSS, on the default run of each task.

    python scripts/bench_memory.py                    # simulate, calibrate, analyze: defaults
    python scripts/bench_memory.py --tasks simulate --overrides population.num_people=1000000 steps=100

Each task runs in a fresh process with its shipped defaults (calibrate with
``task.iterations=2`` and analyze with ``task.policy.iterations=2``: the
peak is reached in the first iteration, the rest repeats it).  Before the
population is built the process records its RSS and the estimate of
:mod:`lpm_graph.memory` for what the task will add (the population, its
layouts and the largest run the task makes, from the model's declarations);
after the task it reads its peak RSS (``VmHWM``: ``ru_maxrss`` carries a parent's size across exec).  Printed: both, and
their ratio, which the estimate should keep within 0.7-1.3.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r'''
import json, sys, tempfile
sys.path.insert(0, sys.argv[1])
task_name, overrides = sys.argv[2], json.loads(sys.argv[3])
import torch
from hydra import compose, initialize_config_dir
import lpm_graph.config  # noqa: F401
from lpm_graph import memory, tasks
from lpm_graph.config import validate_run_config
from lpm_graph.tasks.simulate import instantiate_config
fn = tasks.get(task_name)
with initialize_config_dir(config_dir=sys.argv[1] + "/conf", version_base="1.3"):
    cfg = compose("config", overrides=[f"task={task_name}", "progress=false", *overrides])
run, task = validate_run_config(cfg)
model = instantiate_config(cfg.model)
rss0 = memory.current_rss()
if task_name == "analyze":
    from lpm_graph.tasks.analyze import _Plan
    plan = _Plan(cfg, run, task)
    reps = task.replicates or run.replicates
    base = memory.estimate_config(cfg, model, grad=False, replicates=reps)
    runs = [memory.estimate_config(cfg, m, grad=g, replicates=r) for m, _, r, g in plan.runs(run, reps)]
    largest = max(runs, key=lambda e: e.total)
    est = base.parts["population"] + base.parts["layouts"] + max(base.parts["build"], sum(
        largest.parts[p] for p in ("state", "step", "saved_for_backward", "backward", "trajectory")))
else:
    grad = task_name == "calibrate"
    reps = task.replicates if grad else run.replicates
    est = memory.estimate_config(cfg, model, grad=grad, replicates=reps).total
with tempfile.TemporaryDirectory() as out:
    fn(cfg, out)
peak = memory.peak_rss()
print(json.dumps({"task": task_name, "rss_start_mb": rss0 / 2**20, "estimate_added_mb": est / 2**20,
                  "estimate_mb": (rss0 + est) / 2**20, "peak_mb": peak / 2**20, "ratio": (rss0 + est) / peak}))
'''

DEFAULTS = {"simulate": [], "calibrate": ["task.iterations=2", "task.checkpoint_every=0"],
            "analyze": ["task.policy.iterations=2"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="*", default=list(DEFAULTS))
    ap.add_argument("--overrides", nargs="*", default=[])
    args = ap.parse_args()
    rows = []
    for name in args.tasks:
        cmd = [sys.executable, "-c", CHILD, str(ROOT), name, json.dumps([*DEFAULTS[name], *args.overrides])]
        res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if res.returncode:
            print(res.stderr[-2000:], file=sys.stderr)
            continue
        row = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{name:10s} start {row['rss_start_mb']:7.0f} MB + estimate {row['estimate_added_mb']:7.0f} MB = "
              f"{row['estimate_mb']:7.0f} MB; peak {row['peak_mb']:7.0f} MB; ratio {row['ratio']:.2f}", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
