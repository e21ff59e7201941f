"""task=build_population: builds the chosen population into the cache, loads it the second time."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lpm_graph.cli import DEFAULT_METRIC, metric_of
from lpm_graph.config import TASK_SCHEMAS, validate_run_config
from lpm_graph.data import generate_population, load_population, save_population
from lpm_graph.data.readers import MissingInputError
from lpm_graph.tasks import get
from lpm_graph.tasks.build_population import build_population
from lpm_graph.tasks.simulate import simulate
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


@pytest.mark.parametrize("population", [["population.num_people=500"],
                                        ["population=random_graph", "population.num_people=500"],
                                        ["population=file"]])
def test_sources_without_a_cache_dir_store_nothing(tmp_path, population):
    """Every run builds these from their config; a stored copy would never be read."""
    if population == ["population=file"]:
        path = tmp_path / "pop.pt"
        save_population(generate_population(300, seed=1), path)
        population = [*population, f"population.path={path}"]
    cfg = compose_config(["task=build_population", *population, f"task.cache_dir={tmp_path / 'cache'}",
                          "progress=false"])
    summary = build_population(cfg, tmp_path / "a")
    assert summary["cache_status"] is None and summary["cache_file"] is None
    assert "has no cache_dir" in summary["cache_reason"] and summary["num_nodes"] > 0
    assert not (tmp_path / "cache").exists()


def _tables(tmp_path, task="simulate"):
    """The sample tables (persons copied, to be edited), cached in tmp_path/cache, for ``task``."""
    persons = tmp_path / "persons.csv"
    if not persons.exists():
        shutil.copy(ROOT / "data/samples/tables/persons.csv", persons)
    run = ["task.plot=false", "model.params.seir.initial_infected=5"] if task == "simulate" else []
    return compose_config(["population=tables", f"population.persons={persons}",
                           f"population.venues={ROOT / 'data/samples/tables/venues.csv'}",
                           f"population.cache_dir={tmp_path / 'cache'}", "steps=3", "progress=false",
                           f"task={task}", *run]), persons


def test_what_build_population_stores_a_later_simulate_reads(tmp_path):
    built = build_population(_tables(tmp_path, "build_population")[0], tmp_path / "build")
    assert built["cache_status"] == "built"
    cfg = _tables(tmp_path)[0]
    summary = simulate(cfg, tmp_path / "sim")
    assert summary["population_cache"] == {"status": "hit", "reason": "inputs and options unchanged",
                                           "file": built["cache_file"]}
    assert json.loads((tmp_path / "sim" / "summary.json").read_text())["population_cache"]["status"] == "hit"


def test_summaries_say_rebuilt_and_which_input_changed(tmp_path):
    cfg, persons = _tables(tmp_path, "build_population")
    assert build_population(cfg, tmp_path / "r1")["cache_status"] == "built"
    persons.write_text(persons.read_text().replace("0,2.0,H0016", "0,3.0,H0016", 1))
    second = json.loads(json.dumps(build_population(cfg, tmp_path / "r2")))
    assert second == json.loads((tmp_path / "r2" / "population_summary.json").read_text())
    assert second["cache_status"] == "rebuilt"
    assert second["cache_reason"].startswith(f"input changed since the cached build: persons ({persons.resolve()}")
    assert build_population(cfg, tmp_path / "r3")["cache_status"] == "hit"
    persons.write_text(persons.read_text().replace("0,3.0,H0016", "0,4.0,H0016", 1))
    sim = simulate(_tables(tmp_path)[0], tmp_path / "sim")
    on_disk = json.loads((tmp_path / "sim" / "summary.json").read_text())["population_cache"]
    assert sim["population_cache"]["status"] == on_disk["status"] == "rebuilt"
    assert "persons" in on_disk["reason"] and on_disk["file"] != second["cache_file"]


def test_census_total_edited_is_a_rebuild(tmp_path):
    """num_people=null takes the marginals' total: editing it is an input change, not a first build."""
    marginals = tmp_path / "marginals.yaml"
    text = (ROOT / "data/nyc/marginals.yaml").read_text()
    assert "total_population: 8336817" in text
    marginals.write_text(text.replace("total_population: 8336817", "total_population: 400"))
    cfg = compose_config(["task=build_population", "population=nyc", f"population.marginals={marginals}",
                          f"task.cache_dir={tmp_path / 'cache'}", "progress=false"])
    first = build_population(cfg, tmp_path / "a")
    assert first["cache_status"] == "built" and first["nodes"]["person"] == 400
    marginals.write_text(text.replace("total_population: 8336817", "total_population: 450"))
    second = build_population(cfg, tmp_path / "b")
    assert second["nodes"]["person"] == 450 and second["cache_status"] == "rebuilt"
    assert second["cache_reason"].startswith("input changed since the cached build: marginals")
    assert not Path(first["cache_file"]).exists()       # the entry it replaced is dropped


def test_missing_input_fails_before_writing_anything(tmp_path):
    cfg = compose_config(["task=build_population", "population=edgelist",
                          f"population.edges={tmp_path / 'missing.parquet'}",
                          f"task.cache_dir={tmp_path / 'cache'}"])
    with pytest.raises(MissingInputError, match="missing.parquet"):
        build_population(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()
