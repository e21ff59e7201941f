"""``task=build_population``: build the chosen population once and keep it in the cache.

:func:`build_population` instantiates ``cfg.population`` with the cache root of
``task.cache_dir`` (default: the population's own ``cache_dir``, else
``data/processed``), so a later run of any task with the same population config and
unchanged input files loads the processed graph instead of rebuilding it (see
:mod:`lpm_graph.data.cache`). Sources that do not cache themselves (``synthetic``,
``file``) are stored under a key of their resolved config (plus the contents of
any existing file the config names). Writes ``population_summary.json`` (node and
edge counts, cache file, hit or build, seconds) to the output folder and returns it.

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
from omegaconf import DictConfig, OmegaConf

from lpm_graph.config import validate_run_config
from lpm_graph.data import cache
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


def _file_inputs(options: dict) -> dict[str, str]:
    """String values of a resolved config that name existing files (hashed into the cache key)."""
    found = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list):
            for k, v in enumerate(value):
                walk(f"{prefix}[{k}]", v)
        elif isinstance(value, str) and value and os.path.isfile(value):
            found[prefix] = value

    walk("", options)
    return found


def build_population(cfg: DictConfig, output_dir: str | os.PathLike) -> dict:
    """Build (or load from the cache) ``cfg.population``; write and return its summary."""
    t0 = time.perf_counter()
    _, task = validate_run_config(cfg)
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
        data = _instantiate(population, cache_dir=cache_dir)
    else:
        target = population._target_
        get_method(target)  # fail early and clearly on a bad _target_
        options = OmegaConf.to_container(population, resolve=True)
        source = target.rsplit(".", 1)[-1]
        data = cache.cached_build(source, _file_inputs(options), options, lambda: _instantiate(population),
                                  cache_dir)
    record = cache.last_record()
    summary = population_summary(data)
    summary.update({
        "source": population._target_,
        "cache_file": str(record.path) if record else None,
        "cache_status": record.status if record else None,
        "cache_reason": record.reason if record else None,
        "seconds": round(time.perf_counter() - t0, 3),
    })
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".population_summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, out / "population_summary.json")
    return summary
