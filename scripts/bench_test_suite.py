"""The test suite on a shared machine: its wall time quiet and with one core busy.

    python scripts/bench_test_suite.py                    # the whole suite (what `make test` runs), twice
    python scripts/bench_test_suite.py tests/core         # a part of it

Runs ``python -m pytest -q -p no:cacheprovider [paths]`` in a fresh process on
the machine as it is, then again with another process spinning on one core
(``python -c "while True: pass"``), and prints both wall times, the ratio
busy / quiet (the target: at most 1.5) and the load average before each run.
The suite runs each test with one torch thread (``tests/conftest.py``), so a
busy core costs it a core's share, not a stall of every thread.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(paths: list[str]) -> tuple[float, str]:
    load = f"{os.getloadavg()[0]:.2f}"
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths], cwd=ROOT,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"the suite failed (status {done.returncode}):\n{done.stdout[-3000:]}")
    return seconds, load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", help="test paths (default: the whole suite)")
    args = ap.parse_args()
    print(f"cores: {len(os.sched_getaffinity(0))}")
    quiet, quiet_load = run(args.paths)
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        busy, busy_load = run(args.paths)
    finally:
        spin.kill()
        spin.wait()
    print("| run | load average before | wall s |\n|---|---:|---:|")
    print(f"| quiet | {quiet_load} | {quiet:.1f} |\n| one core busy | {busy_load} | {busy:.1f} |")
    print(f"busy / quiet: {busy / quiet:.2f}")


if __name__ == "__main__":
    main()
