"""This checkout against another (e.g. the commit before a refactor): scripts/bench.py of each, interleaved.

    git worktree add ../baseline <commit>
    python scripts/bench_compare.py ../baseline --rounds 4 --threads 1

Runs each checkout's own ``scripts/bench.py`` (1M people, eager step, one
size) ``--rounds`` times, alternating, so that load on a shared machine hits
both alike, and prints the median over rounds of the forward step, the bare
kernel, step / kernel, the gradient run's forward and backward per step and
the peak RSS of both subprocesses, with the ratios this checkout / baseline.
``--baseline-thp`` adds the baseline run with ``THP_MEM_ALLOC_ENABLE=1``, the
allocator setting this checkout uses by default, so that the core's own cost
can be told apart from the allocator's.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("step_ms", "kernel_ms", "step_kernel_ratio", "grad_forward_ms", "backward_ms", "fwd_peak_mb", "grad_peak_mb")


def run(checkout: Path, args, thp: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [sys.executable, "scripts/bench.py", "--sizes", args.size, "--compile", "off", "--threads", str(args.threads),
               "--steps", str(args.steps), "--grad-steps", str(args.grad_steps), "--repeat", str(args.repeat),
               "--json", str(out), "--markdown", str(Path(tmp) / "bench.md")] + (["--thp"] if thp else [])
        subprocess.run(cmd, cwd=checkout, env={**os.environ, "PYTHONPATH": str(checkout)}, check=True,
                       capture_output=True, text=True)
        row = json.loads(out.read_text())["rows"][0]
    return {"step_ms": row["forward_step_ms"], "kernel_ms": row["kernel_ms"], "step_kernel_ratio": row["ratio_step_kernel"],
            "grad_forward_ms": row["grad_forward_step_ms"], "backward_ms": row["backward_step_ms"],
            "fwd_peak_mb": row["peak_rss_mb"], "grad_peak_mb": row["grad_peak_rss_mb"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("baseline", type=Path, help="another checkout (a git worktree of the baseline commit)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", default="1e6")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--grad-steps", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline-thp", action="store_true")
    args = ap.parse_args()
    variants = {"baseline": (args.baseline.resolve(), False)}
    if args.baseline_thp:
        variants["baseline_thp"] = (args.baseline.resolve(), True)
    variants["this"] = (ROOT, False)
    results = {v: [] for v in variants}
    load = [os.getloadavg()[0]]
    for r in range(args.rounds):
        for name, (checkout, thp) in variants.items():
            results[name].append(run(checkout, args, thp))
            print(f"round {r + 1} {name}: {json.dumps(results[name][-1])}", flush=True)
        load.append(os.getloadavg()[0])
    med = {v: {k: statistics.median(x[k] for x in rows) for k in KEYS} for v, rows in results.items()}
    print(f"\nmedian over {args.rounds} rounds ({args.threads} thread(s), {args.size} people; load average "
          f"{min(load):.2f}-{max(load):.2f})")
    print("| | " + " | ".join(KEYS) + " |\n|---|" + "---:|" * len(KEYS))
    for v, m in med.items():
        print(f"| {v} | " + " | ".join(f"{m[k]:.3g}" for k in KEYS) + " |")
    for v in med:
        if v != "this":
            print(f"| this / {v} | " + " | ".join(f"{med['this'][k] / med[v][k]:.3f}" for k in KEYS) + " |")
    print(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "median": med, "rounds": results}))


if __name__ == "__main__":
    main()
