"""progress=true shows the stages of a population build on stderr; progress=false shows nothing."""
from __future__ import annotations

from pathlib import Path

import pytest

from lpm_graph.data import progress
from lpm_graph.tasks.build_population import build_population
from lpm_graph.tasks.simulate import build
from tests.conftest import compose_config

ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC_STAGES = ("people", "households", "communities", "schools", "workplaces", "graph")


def test_synthetic_generator_shows_its_stages(tmp_path, capsys):
    cfg = compose_config(["task=build_population", "population.num_people=500", "progress=true"])
    build_population(cfg, tmp_path / "on")
    err = capsys.readouterr().err
    for i, name in enumerate(SYNTHETIC_STAGES, 1):
        assert f"synthetic population of 500: {name} ({i}/6)" in err
    assert not progress.enabled()                       # switched on for the build only
    build_population(compose_config(["task=build_population", "population.num_people=500", "progress=false"]),
                     tmp_path / "off")
    assert capsys.readouterr().err == ""


def test_importer_shows_hashing_building_writing_then_loading(tmp_path, capsys):
    def cfg(on: bool):
        return compose_config(["task=build_population", "population=tables",
                               f"population.persons={ROOT / 'data/samples/tables/persons.csv'}",
                               f"population.venues={ROOT / 'data/samples/tables/venues.csv'}",
                               f"task.cache_dir={tmp_path / 'cache'}", f"progress={str(on).lower()}"])

    assert build_population(cfg(True), tmp_path / "a")["cache_status"] == "built"
    err = capsys.readouterr().err
    for name in ("hash inputs", "read and build", "validate and write cache"):
        assert f"population tables: {name}" in err
    assert "load cached graph" not in err
    assert build_population(cfg(True), tmp_path / "b")["cache_status"] == "hit"
    err = capsys.readouterr().err
    assert "population tables: hash inputs" in err and "population tables: load cached graph" in err
    assert "read and build" not in err and ": validate (2/2)" in err          # the file's own stages
    assert build_population(cfg(False), tmp_path / "c")["cache_status"] == "hit"
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("on", [True, False])
def test_every_task_builds_its_population_with_the_progress_setting(capsys, on):
    build(compose_config(["population.num_people=500", "steps=2", f"progress={str(on).lower()}"]))
    err = capsys.readouterr().err
    assert ("synthetic population of 500: households" in err) is on
    if not on:
        assert err == ""
