"""Outcome distributions of a golden case over many seeds: how a change that moves numbers moves outcomes.

A change that alters the golden files on purpose (a bug fix, a more exact
draw) must show that the outcomes moved only where it says they should.  Run
this before and after the change on the same cases and compare:

    python scripts/outcome_shift.py seir_stochastic seird_stochastic --seeds 40 --out before.json
    # ... apply the change ...
    python scripts/outcome_shift.py seir_stochastic seird_stochastic --seeds 40 --out after.json
    python scripts/outcome_shift.py --compare before.json after.json

For each case the model's outcomes (and the per-group totals of grouped
events) are run for ``--seeds`` seeds with the case's overrides; the
comparison prints each outcome's mean and standard error before and after
and the difference in standard errors (Welch's z).  Stochastic cases only
(expected-mode cases have no seed to vary).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(names: list[str], seeds: int) -> dict:
    import torch

    from lpm_graph.analysis.outcomes import group_totals
    from lpm_graph.tasks.simulate import build
    from tests.golden.cases import CASES, compose_case

    torch.set_num_threads(1)
    out = {}
    for name in names:
        case = CASES[name]
        cfg = compose_case(case)
        model, graph, _, run, _ = build(cfg)
        values: dict[str, list[float]] = {}
        for seed in range(seeds):
            with torch.no_grad():
                traj = model(graph, steps=run.steps, seed=seed, replicates=1)
            row = {k: float(o(traj)) for k, o in model.outcomes.items()}
            row.update({k: float(v) for k, v in group_totals(traj).items()})
            for k, v in row.items():
                values.setdefault(k, []).append(v)
        out[name] = values
    return out


def compare(before: dict, after: dict) -> None:
    for case in before:
        if case not in after:
            continue
        print(f"{case}:")
        for name, a in before[case].items():
            b = after[case].get(name)
            if b is None:
                continue
            ma, mb = sum(a) / len(a), sum(b) / len(b)
            va = sum((x - ma) ** 2 for x in a) / max(1, len(a) - 1)
            vb = sum((x - mb) ** 2 for x in b) / max(1, len(b) - 1)
            se = math.sqrt(va / len(a) + vb / len(b))
            z = (mb - ma) / se if se > 0 else (0.0 if mb == ma else math.inf)
            print(f"  {name:32s} {ma:12.6g} -> {mb:12.6g}  (se {se:.3g}, z {z:+.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*")
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--out")
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    args = ap.parse_args()
    if args.compare:
        compare(*(json.loads(Path(p).read_text()) for p in args.compare))
        return
    result = measure(args.cases, args.seeds)
    text = json.dumps(result)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
