"""task=build_population: builds the chosen population into the cache, loads it the second time."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lpm_graph.cli import DEFAULT_METRIC, metric_of
from lpm_graph.config import TASK_SCHEMAS, validate_run_config
from lpm_graph.data import load_population
from lpm_graph.data.readers import MissingInputError
from lpm_graph.tasks import get
from lpm_graph.tasks.build_population import build_population
from tests.conftest import compose_config

ROOT = Path(__file__).resolve().parents[2]


def test_task_is_registered():
    assert get("build_population") is build_population
    assert "build_population" in TASK_SCHEMAS and DEFAULT_METRIC["build_population"] == "num_nodes"
    _, task = validate_run_config(compose_config(["task=build_population"]))
    assert task.name == "build_population" and task.cache_dir is None


def test_builds_then_loads_from_the_cache(tmp_path):
    cfg = compose_config(["task=build_population", "population=tables",
                          f"population.persons={ROOT / 'data/samples/tables/persons.csv'}",
                          f"population.venues={ROOT / 'data/samples/tables/venues.csv'}",
                          f"task.cache_dir={tmp_path / 'cache'}", "metric=seconds"])
    first = build_population(cfg, tmp_path / "run1")
    assert first["nodes"]["person"] == 300 and first["cache_status"] == "built"
    assert first["nodes"]["school"] == 4 and first["edges"]["person__member_of__household"] == 300
    assert first["num_nodes"] == sum(first["nodes"].values())
    # the CLI returns the configured metric, by default the number of nodes
    assert metric_of("build_population", first, cfg.metric) == ("seconds", first["seconds"])
    assert metric_of("build_population", first, None) == ("num_nodes", float(first["num_nodes"]))
    assert json.loads((tmp_path / "run1" / "population_summary.json").read_text()) == first
    cached = Path(first["cache_file"])
    assert cached.parent == tmp_path / "cache" and load_population(cached)["person"].num_nodes == 300
    second = build_population(cfg, tmp_path / "run2")
    assert second["cache_status"] == "hit" and second["cache_file"] == first["cache_file"]


def test_sources_without_their_own_cache_are_stored_by_config(tmp_path):
    cfg = compose_config(["task=build_population", "population.num_people=500",
                          f"task.cache_dir={tmp_path / 'cache'}"])
    first = build_population(cfg, tmp_path / "a")
    assert first["cache_status"] == "built" and Path(first["cache_file"]).name.startswith("generate_population-")
    assert build_population(cfg, tmp_path / "b")["cache_status"] == "hit"
    other = compose_config(["task=build_population", "population.num_people=501",
                            f"task.cache_dir={tmp_path / 'cache'}"])
    assert build_population(other, tmp_path / "c")["cache_status"] == "built"


def test_missing_input_fails_before_writing_anything(tmp_path):
    cfg = compose_config(["task=build_population", "population=edgelist",
                          f"population.edges={tmp_path / 'missing.parquet'}",
                          f"task.cache_dir={tmp_path / 'cache'}"])
    with pytest.raises(MissingInputError, match="missing.parquet"):
        build_population(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()
