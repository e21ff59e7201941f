"""Observables of the epidemic grouped by a categorical person attribute other than age (a sector)."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from lpm_graph.errors import ConfigError, PopulationGraphError
from lpm_graph.observation import ObservationModel, load_observations
from tests.conftest import compose_config

SECTORS = ["retail", "health", "education"]
SECTOR_MODEL = ["+model.groupings.sector={node_type: person, attribute: sector}",
                "model.observables=[{name: sector_infections, source: person.new_infections, kind: sum, by: [sector]},"
                "{name: sector_I, source: person.I, kind: count, by: [sector]}]"]


def with_sectors(data, seed: int = 0):
    """``data`` with a categorical person attribute ``sector`` (codes into ``sector_categories``), of unequal
    sizes (60%, 30%, 10%), so that a series of the wrong group is off by a factor of two or more."""
    g = torch.Generator().manual_seed(seed)
    share = torch.tensor([0.6, 0.3, 0.1])
    data["person"].sector = torch.multinomial(share, data["person"].num_nodes, replacement=True, generator=g)
    data["person"].sector_categories = json.dumps(SECTORS)
    return data


@pytest.fixture(scope="module")
def sector_population():
    from lpm_graph.data import generate_population

    return with_sectors(generate_population(3000, seed=11))


def sector_model(*overrides):
    from lpm_graph.tasks.simulate import instantiate_config

    return instantiate_config(compose_config([*SECTOR_MODEL, *overrides]).model)


def record_events(model):
    """Per-person new infections of every step (step 0 from seeding), recorded from the SEIR process."""
    seir = model.process("seir")
    events = []
    init = seir.init

    def recording_init(ctx):
        out = init(ctx)
        events.append(out.events["person.new_infections"].detach().clone())
        return out

    seir.init = recording_init
    seir.register_forward_hook(lambda module, args, out: events.append(out.events["person.new_infections"].clone()))
    return events


@pytest.mark.parametrize("mode", ["stochastic", "expected"])
def test_grouped_series_equal_a_groupby_of_the_per_person_events(sector_population, mode):
    model = sector_model(f"model.mode={mode}", "model.params.seir.initial_infected_fraction=0.01")
    events = record_events(model)
    traj = model(sector_population, steps=25, seed=4, replicates=3)
    assert traj.labels["sector"] == SECTORS
    grouped = traj.grouped["sector"]["sector_infections"]  # [T + 1, G, R]
    R = 1 if mode == "expected" else 3
    assert grouped.shape == (26, 3, R) and len(events) == 26
    codes = sector_population["person"].sector
    for t, e in enumerate(events):
        by_sector = torch.zeros(3, R, dtype=e.dtype).index_add(0, codes, e)
        assert torch.allclose(grouped[t], by_sector, atol=1e-4), t
    assert grouped[1:].sum() > 0, "infections happened"
    # the ungrouped observable is the sum over the groups; the count of a state groups the final state too
    assert torch.allclose(grouped.sum(1), traj.series["sector_infections"], atol=1e-3)
    assert torch.allclose(traj.series["sector_infections"], traj.series["new_infections"])
    final_I = torch.zeros(3, R).index_add(0, codes, traj.final_state["person.I"].float())
    assert torch.allclose(traj.grouped["sector"]["sector_I"][-1], final_I, atol=1e-4)
    # the per-group columns a run writes
    frame = traj.to_frame()
    assert [c for c in frame if c.startswith("sector_infections_sector_")] == [
        f"sector_infections_sector_{s}" for s in SECTORS]


def test_a_sector_grouping_needs_the_attribute(tiny_population):
    model = sector_model()
    with pytest.raises(PopulationGraphError, match="node type 'person' is missing attribute\\(s\\) \\['sector'\\]"):
        model(tiny_population, steps=1)
    with pytest.raises(ConfigError, match="grouped by 'branch', which model.groupings does not define"):
        sector_model("model.observables=[{name: x, source: person.new_infections, kind: sum, by: [branch]}]")


def test_observation_series_map_to_one_sector(sector_population, tmp_path):
    model = sector_model("+model.params.observation.reporting_fraction=0.25")
    traj = model(sector_population, steps=10, seed=1, replicates=2)
    path = tmp_path / "obs.csv"
    pd.DataFrame({"step": range(1, 11), "cases_health": [1.0] * 10}).to_csv(path, index=False)
    spec = {"cases_health": {"source": "sector_infections", "by": "sector", "group": "health",
                             "reporting": "observation.reporting_fraction", "delay": 2}}
    obs_model = ObservationModel(spec)
    obs_model.check(model)
    pred = obs_model.predict(traj, load_observations(path, spec), model.params.as_dict())["cases_health"]
    health = traj.grouped["sector"]["sector_infections"][:, SECTORS.index("health")].mean(-1)
    expected = 0.25 * torch.cat([torch.zeros(1), health[:9]])  # step s reads step s - 2; step 1 precedes step 0
    assert torch.allclose(pred.detach().float(), expected)
    with pytest.raises(ConfigError, match="'new_infections' is not observed by 'sector'; it is grouped by \\['age'\\]"):
        ObservationModel({"x": {"source": "new_infections", "by": "sector", "group": "health"}}).check(model)


def test_calibrate_fits_to_the_series_of_one_sector(sector_population, tmp_path):
    from lpm_graph.data import save_population
    from lpm_graph.tasks.calibrate import calibrate

    from lpm_graph.tasks.simulate import instantiate_config

    population = tmp_path / "population.pt"
    save_population(sector_population, population)
    obs = tmp_path / "retail.csv"
    cfg = compose_config(["task=calibrate", "population=file", f"population.path={population}", "steps=30",
                          *SECTOR_MODEL, f"observations.path={obs}", "~observations.series",
                          "+observations.series={retail: {source: sector_infections, by: sector, group: retail, "
                          "reporting: observation.reporting_fraction}}",
                          "model.learnable=[observation.reporting_fraction]",
                          "model.params.observation.reporting_fraction=0.2",
                          "task.iterations=60", "task.optimizer.lr=0.2", "task.checkpoint_every=0", "task.plot=false",
                          "progress=false"])
    # the data: the retail series of the task's own (expected-mode) model, reported at 0.5
    with torch.no_grad():
        traj = instantiate_config(cfg.model)(sector_population, steps=30)
    cases = 0.5 * traj.grouped["sector"]["sector_infections"][1:, SECTORS.index("retail"), 0].double()
    pd.DataFrame({"step": range(1, 31), "retail": cases.tolist()}).to_csv(obs, index=False)
    metrics = calibrate(cfg, tmp_path / "out")
    # the data are the retail series at reporting 0.5, noise-free: the fit finds it
    assert metrics["fitted"]["observation.reporting_fraction"] == pytest.approx(0.5, rel=0.02)
