"""Every config group composes and instantiates; impossible values are refused before work."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf.errors import ValidationError

from lpm_graph.config import validate_run_config
from lpm_graph.data import ConfigError
from lpm_graph.model import PopulationModel
from tests.conftest import CONF_DIR, compose_config

GROUPS = {g: sorted(p.stem for p in (Path(CONF_DIR) / g).glob("*.yaml")) for g in ("population", "model", "task")}


def test_default_config_has_the_documented_defaults():
    cfg = compose_config()
    assert cfg.population.num_people == 100_000 and cfg.steps == 120 and cfg.device == "cpu"
    assert cfg.task.name == "simulate"


@pytest.fixture(scope="module")
def saved_population(tmp_path_factory):
    from lpm_graph.data import generate_population, save_population

    path = tmp_path_factory.mktemp("pop") / "population.pt"
    save_population(generate_population(300, seed=2), path)
    return path


@pytest.mark.parametrize("choice", GROUPS["population"])
def test_population_choices_compose_and_build(choice, saved_population):
    overrides = {"synthetic": ["population.num_people=300"], "file": [f"population.path={saved_population}"],
                 # shipped 300-person samples (data/samples, data/sociopatterns); no cache writes
                 "tables": ["population.persons=data/samples/tables/persons.csv",
                            "population.venues=data/samples/tables/venues.csv", "population.cache_dir=null"],
                 "edgelist": ["population.edges=data/samples/edgelist/contacts.parquet", "population.cache_dir=null"],
                 "sociopatterns": ["population.path=data/sociopatterns/school_sample.dat", "population.cache_dir=null"],
                 "networkx": ["population.path=data/samples/network.graphml", "population.cache_dir=null"],
                 "nyc": ["population.num_people=300", "population.cache_dir=null"]}
    cfg = compose_config([f"population={choice}", *overrides[choice]])
    validate_run_config(cfg)
    data = instantiate(cfg.population, _convert_="all")
    assert data["person"].num_nodes == 300


def test_population_file_needs_a_path():
    from omegaconf.errors import MissingMandatoryValue

    cfg = compose_config(["population=file"])
    with pytest.raises(MissingMandatoryValue, match="population.path"):
        instantiate(cfg.population)


@pytest.mark.parametrize("choice", GROUPS["model"])
def test_model_choices_compose_and_build(choice, tiny_population):
    cfg = compose_config([f"model={choice}"])
    model = instantiate(cfg.model, _convert_="all")
    assert isinstance(model, PopulationModel)
    population = tiny_population
    if choice == "contact":  # contact-network models go with contact-network populations
        from lpm_graph.data import from_sociopatterns
        from lpm_graph.observation import resolve_data_path

        population = from_sociopatterns(resolve_data_path("data/sociopatterns/school_sample.dat"), default_age=8)
    assert model(population, steps=3).steps == 3


@pytest.mark.parametrize("choice", GROUPS["task"])
def test_task_choices_compose_and_validate(choice):
    run, task = validate_run_config(compose_config([f"task={choice}"]))
    assert task.name == choice and run.steps > 0


def test_documented_overrides_apply():
    cfg = compose_config(["population.num_people=1000000", "model.params.beta_household=0.3", "steps=200",
                          "seed=7", "device=cpu"])
    run, _ = validate_run_config(cfg)
    assert (run.steps, run.seed, cfg.population.num_people, cfg.model.params.beta_household) == (200, 7, 10**6, 0.3)
    assert cfg.population.seed == 7  # the population follows the run seed


@pytest.mark.parametrize("override, match", [
    ("steps=0", "steps must be a positive integer"),
    ("steps=-5", "steps must be a positive integer"),
    ("replicates=0", "replicates must be a positive integer"),
    ("seed=-1", "seed must be a non-negative integer"),
    ("device=tpu", "device must be 'cpu', 'cuda'"),
    ("dtype=float16", "dtype must be one of"),
    ("threads=0", "threads must be a positive integer"),
    ("task.trajectory_format=xlsx", "task.trajectory_format must be 'parquet' or 'csv'"),
])
def test_impossible_run_values_are_refused(override, match):
    with pytest.raises(ConfigError, match=match):
        validate_run_config(compose_config([override]))


@pytest.mark.parametrize("override, match", [
    ("population.num_people=-5", "population.num_people"),
    ("population.school.enrolment=1.3", "population.school.enrolment"),
])
def test_impossible_population_values_are_refused(override, match):
    cfg = compose_config([override])
    with pytest.raises(Exception) as info:
        instantiate(cfg.population, _convert_="all")
    assert isinstance(info.value.__cause__ or info.value, ConfigError)
    assert match in str(info.value)


def test_types_are_checked_at_composition():
    with pytest.raises((ValidationError, ConfigCompositionException), match="steps"):
        compose_config(["steps=many"])


def test_unknown_group_choice_names_the_options():
    with pytest.raises(ConfigCompositionException, match="(?s)population/nowhere.*synthetic"):
        compose_config(["population=nowhere"])


def test_cuda_request_without_cuda_is_refused():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ConfigError, match="no CUDA device is available"):
        validate_run_config(compose_config(["device=cuda"]))
