"""Peak memory per step of the bounded-confidence models (non-linear, per-edge messages), forward and backward.

    python scripts/bench_opinion_memory.py                       # opinion_hk and opinion_deffuant at 1M people
    python scripts/bench_opinion_memory.py model=opinion_hk population.num_people=200000

For each model, in a fresh process (one thread, float32, expected mode):
the population is built and laid out, the high-water mark of the resident
set is reset (``/proc/self/clear_refs``), and then

``forward``
    ``--steps`` steps without gradients;
``backward``
    ``--steps`` steps with per-step checkpointing (``model.checkpoint=true``)
    and the backward pass of the total variance in the model's epsilon.

Each reports the peak RSS above the RSS before the run
(:func:`lpm_graph.memory.peak_rss`, :func:`~lpm_graph.memory.current_rss`)
next to the memory estimate's ``step`` (and ``backward``) parts from the
processes' declarations (:func:`lpm_graph.memory.estimate_run`), and the
state the run keeps (``2 x`` state, and with gradients one state per step).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
import lpm_graph
import torch
torch.set_num_threads(1)
from hydra import compose, initialize_config_dir
from lpm_graph import memory
from lpm_graph.tasks.simulate import instantiate_config
overrides, steps, phase = json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
with initialize_config_dir(config_dir=sys.argv[1] + "/conf", version_base="1.3"):
    cfg = compose(config_name="config", overrides=["progress=false", "model.mode=expected",
                                                   "model.checkpoint=true", *overrides])
model = instantiate_config(cfg.model)
graph = model.prepare(instantiate_config(cfg.population))
name = next(n for n in model.params.names if n.endswith(".epsilon"))
grad = phase == "backward"
est = memory.estimate_run(model, graph, steps, 1, grad=grad)
memory.release_free_memory()
open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark: the build is not the run
base = memory.current_rss()
eps = model.params.as_dict()[name].detach().clone().requires_grad_(grad)
with torch.set_grad_enabled(grad):
    traj = model(graph, steps=steps, seed=1, overrides={name: eps})
    if grad:
        model.outcomes["total_variance"](traj).sum().backward()
print(json.dumps({"people": graph.num_nodes["person"], "edges": graph.num_edges(), "phase": phase, "steps": steps,
                  "peak_above_base_mb": (memory.peak_rss() - base) / 2**20,
                  "estimate_step_mb": est.parts["step"] / 2**20, "estimate_backward_mb": est.parts["backward"] / 2**20,
                  "estimate_state_mb": (est.parts["state"] + est.parts["saved_for_backward"]) / 2**20}))
'''


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    steps = 5
    for a in sys.argv[1:]:
        if a.startswith("--steps="):
            steps = int(a.split("=", 1)[1])
    models = [a for a in args if a.startswith("model=")] or ["model=opinion_hk", "model=opinion_deffuant"]
    rest = [a for a in args if not a.startswith("model=")] or ["population.num_people=1000000"]
    for m in models:
        for phase in ("forward", "backward"):
            out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), json.dumps([m, *rest]), str(steps), phase],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{m.split('=', 1)[1]} {phase}: {r['people']:,} people, {r['edges']:,} edges, {steps} steps: "
                  f"peak {r['peak_above_base_mb']:.0f} MB above the run's start; estimate: step "
                  f"{r['estimate_step_mb']:.0f} MB" + (f", backward {r['estimate_backward_mb']:.0f} MB" if
                                                      phase == "backward" else "")
                  + f", state kept {r['estimate_state_mb']:.0f} MB")


if __name__ == "__main__":
    main()
