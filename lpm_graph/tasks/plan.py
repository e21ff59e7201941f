"""``task=plan``: the model's step written out — order, roles, reads, writes, state, parameters — without a run.

Like Starsim's printable loop: ``lpm-graph task=plan`` builds the model
from the config (so every wiring, parameter and observable check runs),
prints :meth:`lpm_graph.core.Model.describe` and writes it to ``plan.txt``
and the rows of :meth:`lpm_graph.core.Model.plan` to ``plan.json``.  No
population is built.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from omegaconf import DictConfig

from lpm_graph import report
from lpm_graph.config import validate_run_config
from lpm_graph.tasks.simulate import atomic_write, build_model

__all__ = ["plan"]


def plan(cfg: DictConfig, output_dir: str | os.PathLike) -> dict:
    """Build ``cfg.model``, print and write its plan; return ``{processes, parameters, observables, outcomes}``."""
    run, _ = validate_run_config(cfg)
    model = build_model(cfg, run)
    text = model.describe()
    print(text)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = model.plan()
    atomic_write(out / "plan.txt", lambda p: p.write_text(text + "\n"))
    atomic_write(out / "plan.json", lambda p: p.write_text(json.dumps(rows, indent=2) + "\n"))
    report.finish(cfg, out, observables=model.observables)
    return {"processes": len(rows), "parameters": len(model.params.names), "observables": len(model.observables),
            "outcomes": len(model.outcomes)}
