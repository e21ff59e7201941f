"""Per-step cost of a step with private agents against the plain step, on one synthetic population.

Runs the shipped SEIR (stochastic, float32) for ``--steps`` steps in the clear, then with a fraction of the
people private (``privacy=agents``), in one process one after the other, and prints the seconds per step of
each, their ratio, the private agents' rounds and the payload each private agent uploads per step (its two
vectors of 64-bit words; the protocol's keys, shares and signatures come on top). The CPU seconds of the process
per step are printed too (``*_cpu_s_per_step``, ``cpu_ratio``): on a shared machine they move less than wall time.

    nice -n 10 python scripts/bench_private_step.py --people 10000 --fraction 0.01 --steps 10 --neighbours 4
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

import lpm_graph.config  # noqa: F401  (registers the structured schemas)
from lpm_graph.tasks.simulate import instantiate_config

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=10000)
    ap.add_argument("--fraction", type=float, default=0.01)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--neighbours", type=int, default=4, help="SecAgg+ degree of each round (0: everyone)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    common = [f"population.num_people={args.people}", "model.params.seir.initial_infected=10", "progress=false"]
    private = ["privacy=agents", f"privacy.private_fraction={args.fraction}"]
    if args.neighbours:
        private.append(f"privacy.neighbours={args.neighbours}")
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        plain_cfg = compose(config_name="config", overrides=common)
        private_cfg = compose(config_name="config", overrides=common + private)
    data = instantiate_config(plain_cfg.population)
    out, cpu = {}, {}
    for label, cfg in (("plain", plain_cfg), ("private", private_cfg)):
        model = instantiate_config(cfg.model)
        graph = model.prepare(data)
        model(graph, steps=1)  # warm-up (layouts, blocks)
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            model(graph, steps=args.steps, seed=1)
        out[label] = (time.perf_counter() - t0) / args.steps
        cpu[label] = (time.process_time() - c0) / args.steps
        if label == "private":
            report = model.privacy.report()
    result = {"people": args.people, "private_agents": report["private_agents"], "steps": args.steps,
              "plain_s_per_step": round(out["plain"], 4), "private_s_per_step": round(out["private"], 3),
              "ratio": round(out["private"] / out["plain"], 1),
              "plain_cpu_s_per_step": round(cpu["plain"], 4), "private_cpu_s_per_step": round(cpu["private"], 3),
              "cpu_ratio": round(cpu["private"] / cpu["plain"], 1), "groups": report["groups"],
              "neighbours": args.neighbours or None,
              "payload_bytes_per_agent_per_step": report["payload_bytes_per_agent_per_step"]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
