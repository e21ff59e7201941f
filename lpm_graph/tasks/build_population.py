"""``task=build_population``: build the chosen population once and keep it in the cache.

:func:`build_population` instantiates ``cfg.population`` with the cache root of
``task.cache_dir`` (default: the population's own ``cache_dir``, else
``data/processed``), so a later run of any task with the same population config and
unchanged input files loads the processed graph instead of rebuilding it (see
:mod:`lpm_graph.data.cache`). Sources without a ``cache_dir`` (``synthetic``,
``random_graph``, ``file``) are built and checked but not stored: every run builds
them from their config (a generated population is determined by its spec and seed,
``population=file`` already is a file), so a stored copy would never be read.
Writes ``population_summary.json`` (node and edge counts, cache file, ``cache_status``
``"hit"``, ``"built"``, ``"rebuilt"`` or null when not cached, its reason, seconds)
to the output folder and returns it. With ``progress=true`` the build's stages are shown
on stderr (:mod:`lpm_graph.data.progress`).

    lpm-graph task=build_population population=nyc            # ~8.3M people, cached
    lpm-graph task=build_population population=tables population.persons=people.parquet
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig

from lpm_graph import report
from lpm_graph.config import validate_run_config
from lpm_graph.data import cache, progress
from lpm_graph.errors import PopulationGraphError

__all__ = ["build_population", "population_summary"]


def _instantiate(node, **kwargs):
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, ValueError):
            raise e.__cause__ from None
        raise


def population_summary(data) -> dict:
    """Node counts per node type (and in all) and edge counts per edge type (``src__rel__dst``)."""
    return {
        "num_nodes": sum(int(data[nt].num_nodes) for nt in data.node_types),
        "nodes": {nt: int(data[nt].num_nodes) for nt in data.node_types},
        "edges": {"__".join(et): int(data[et].edge_index.shape[1]) for et in data.edge_types},
    }


def build_population(cfg: DictConfig, output_dir: str | os.PathLike) -> dict:
    """Build (or load from the cache) ``cfg.population``; write and return its summary."""
    t0 = time.perf_counter()
    run, task = validate_run_config(cfg)
    population = cfg.population
    if "_target_" not in population:
        raise PopulationGraphError("population config has no _target_; choose a population, e.g. population=tables")
    from lpm_graph import memory

    planned = memory.estimate_population(population)  # refused before it is built if it cannot fit
    if planned is not None:
        memory.check_memory(planned)
    own = population.get("cache_dir") if "cache_dir" in population else None
    cache_dir = task.cache_dir or own or cache.DEFAULT_CACHE_DIR
    cache.clear_last_record()
    if "cache_dir" in population:
        with progress.shown(run.progress):
            data = _instantiate(population, cache_dir=cache_dir)
        not_cached = None
    else:
        get_method(population._target_)  # fail early and clearly on a bad _target_
        with progress.shown(run.progress):
            data = _instantiate(population)
        not_cached = (f"{population._target_} has no cache_dir: every run builds it from its config, "
                      "so nothing is stored")
    record = cache.last_record()
    summary = population_summary(data)
    summary.update({
        "source": population._target_,
        "cache_file": str(record.path) if record else None,
        "cache_status": record.status if record else None,
        "cache_reason": record.reason if record else not_cached,
        "seconds": round(time.perf_counter() - t0, 3),
    })
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".population_summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, out / "population_summary.json")
    report.finish(cfg, out)
    return summary
