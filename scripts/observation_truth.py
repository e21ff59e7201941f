"""What the observation-making scripts (``scripts/make_*_observations.py``) share: a run of the shipped config
with known parameters, and the observed series written with the record of what made it.

    cfg, data, traj = simulate_shipped(["model=economy", "seed=0", ...], steps=36, seed=2024)
    write_with_truth(out_dir, "economy_unemployment", "unemployment", values, record)

writes ``<out_dir>/economy_unemployment.csv`` (``step`` 1..len(values), the column) and
``<out_dir>/economy_unemployment_truth.json`` (``record``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lpm_graph.config  # noqa: E402,F401  (registers the structured schemas)

__all__ = ["simulate_shipped", "write_with_truth"]


def simulate_shipped(overrides, steps: int, seed: int | None = None):
    """``(cfg, population, trajectory)``: the shipped config (``conf/``) with ``overrides``, its model run on its
    population for ``steps`` steps without gradients, with ``seed`` (``None``: the model's default)."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    model = instantiate(cfg.model, _convert_="all")
    data = instantiate(cfg.population, _convert_="all")
    with torch.no_grad():
        traj = model(data, steps=steps) if seed is None else model(data, steps=steps, seed=seed)
    return cfg, data, traj


def write_with_truth(out_dir, name: str, column: str, values, record: dict) -> dict:
    """Write ``<name>.csv`` (``step`` 1..len(values) and ``column``) and ``<name>_truth.json`` (``record``) into
    ``out_dir``; return ``record``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"step": np.arange(1, len(values) + 1), column: values}).to_csv(out_dir / f"{name}.csv", index=False)
    (out_dir / f"{name}_truth.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
