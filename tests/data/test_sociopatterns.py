"""SocioPatterns contact files -> daily weighted contact graphs that change over time."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from lpm_graph.core import Graph, Requirements
from lpm_graph.data.assemble import original_ids
from lpm_graph.data.readers import DataFileError, PopulationDataWarning
from lpm_graph.data.sociopatterns import from_sociopatterns
from lpm_graph.errors import ConfigError
from lpm_graph.tasks.simulate import simulate
from tests.conftest import build_model, compose_config
from tests.models.epidemic.conftest import step_context

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sociopatterns" / "school_sample.dat"
CONTACT = ("person", "contact", "person")


@pytest.fixture(scope="module")
def sample():
    return from_sociopatterns(SAMPLE, default_age=8.0, class_ages={"Teachers": 40.0})


def _write(tmp_path, text, name="c.dat"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_lines_aggregate_into_daily_durations(tmp_path):
    # day 0: 1-2 for three windows (one written j i), 2-3 once; day 1: 1-2 once
    text = "40 1 2 A A\n60\t2 1 A A\n80 1 2 A A\n80 2 3 A B\n\n86420 1 2 A A\n"
    data = from_sociopatterns(_write(tmp_path, text), duration_unit="minutes", default_age=9)
    store = data[CONTACT]
    ids = original_ids(data, "person")
    got = {(int(ids[s]), int(ids[d]), int(t)): round(float(w), 6)
           for s, d, t, w in zip(*store.edge_index.tolist(), store.time.tolist(), store.edge_weight.tolist())}
    assert got == {(1, 2, 0): 1.0, (2, 1, 0): 1.0, (2, 3, 0): round(20 / 60, 6), (3, 2, 0): round(20 / 60, 6),
                   (1, 2, 1): round(20 / 60, 6), (2, 1, 1): round(20 / 60, 6)}
    assert store.time_period == 2 and store.undirected is True
    assert json.loads(data["person"].class_categories) == ["A", "B"]
    assert data["person"]["class"].tolist() == [0, 0, 1]


def test_the_shipped_sample(sample):
    person = sample["person"]
    assert person.num_nodes == 300
    classes = json.loads(person.class_categories)
    assert len(classes) == 13 and "Teachers" in classes
    teachers = person["class"] == classes.index("Teachers")
    assert int(teachers.sum()) == 12
    assert torch.all(person.age[teachers] == 40.0) and torch.all(person.age[~teachers] == 8.0)
    store = sample[CONTACT]
    assert store.time_period == 3 and set(store.time.tolist()) == {0, 1, 2}
    lines = len(SAMPLE.read_text().splitlines())
    # total contact duration (hours) = lines x 20 s, each contact stored in both directions
    assert float(store.edge_weight.double().sum()) == pytest.approx(2 * lines * 20 / 3600, rel=1e-6)


def test_simulator_sees_a_different_graph_on_different_days(sample):
    model = build_model(["model=contact", "model.params.contact.beta=1.0"])
    graph = model.prepare(sample)
    assert graph.time_varying(CONTACT) and [graph.window(CONTACT, t) for t in range(4)] == [0, 1, 2, 0]
    day = [graph.layout(CONTACT, t) for t in range(4)]
    edges = [set(zip(*a.csr.to_sparse_coo().coalesce().indices().tolist())) for a in day[:3]]
    assert edges[0] != edges[1] and edges[1] != edges[2]
    assert day[3] is day[0]                                    # the recording repeats: t mod 3
    # each day's layout holds that day's edges and weights, from the HeteroData
    store = sample[CONTACT]
    for t in range(3):
        on_day = store.time == t
        assert day[t].num_edges == int(on_day.sum())
        assert float(day[t].csr.values().double().sum()) == pytest.approx(float(store.edge_weight[on_day].sum()),
                                                                          rel=1e-6)
    # the force of infection from the same infectious people differs by day
    channel = model.process("contact")
    x = torch.zeros(300, 1)
    x[:30] = 1.0
    lam = [channel(step_context(model, graph, t=t), {}, {"person.infectiousness": x}).fields[
        "person.force_of_infection"] for t in range(4)]
    assert not torch.allclose(lam[0], lam[1]) and torch.equal(lam[0], lam[3])


def test_simulate_task_end_to_end_on_the_sample(tmp_path):
    cfg = compose_config(["population=sociopatterns", f"population.path={SAMPLE}",
                          f"population.cache_dir={tmp_path / 'cache'}", "model=contact", "steps=9",
                          "replicates=2", "progress=false", "task.plot=false",
                          "model.params.contact.beta=20.0", "model.params.seir.initial_infected_fraction=0.05"])
    summary = simulate(cfg, tmp_path / "out")
    traj = pd.read_parquet(tmp_path / "out" / "trajectory.parquet")
    assert summary["num_nodes"] == {"person": 300} and len(traj) == 10 * 2
    assert (traj[["S", "E", "I", "R"]].sum(axis=1) == 300).all()
    assert summary["total_infections"] > traj[traj.step == 0]["I"].mean()   # infections happened
    assert len(list((tmp_path / "cache").glob("sociopatterns-*.pt"))) == 1


def test_repeated_and_self_lines_are_merged_and_dropped_with_counts(tmp_path):
    text = "20 1 2\n20 2 1\n20 1 2\n40 3 3\n"
    with pytest.warns(PopulationDataWarning) as record:
        data = from_sociopatterns(_write(tmp_path, text), default_age=30)
    messages = " | ".join(str(w.message) for w in record)
    assert "merged 2 repeated line(s)" in messages and "dropped 1 self-loop(s)" in messages
    assert data[CONTACT].edge_weight.tolist() == pytest.approx([20 / 3600] * 2)


def test_custom_window_and_period(tmp_path):
    text = "20 1 2\n3620 1 2\n7220 2 3\n"     # hours 0, 1, 2
    data = from_sociopatterns(_write(tmp_path, text), window=3600, period=5, default_age=30)
    graph = Graph(data, Requirements(edge_types={CONTACT}))
    assert data[CONTACT].time.tolist() == [0, 1, 2, 0, 1, 2]
    assert graph.layout(CONTACT, 3).num_edges == 0     # windows 3, 4 have no contacts
    assert graph.layout(CONTACT, 7).num_edges == 2     # 7 mod 5 = window 2
    assert graph.layout(CONTACT, 6).num_edges == 2 and graph.window(CONTACT, 6) == 1


@pytest.mark.parametrize("text, match", [
    ("", r"the file is empty"),
    ("\n\n", r"the file is empty"),
    ("20 1\n", r"line 1: cannot parse '20 1': expected 3 fields"),
    ("20 1 2\n40 1 2 3\n", r"Expected 3 fields in line 2, saw 4"),
    ("20 1 2 A A\n40 1 2 A\n", r"line 2: expected 5 fields"),
    ('"" "" ""\n', r"line 1: expected 3 fields \(t i j\), got fewer or empty ones"),  # empty, not blank
    ('20 1 2\n\n"" "" ""\n', r"line 3: expected 3 fields"),  # not dropped as a blank line
    ("20 1 2\n\n4x0 1 2\n", r"line 3, column 't': expected a number \(time in seconds\), got '4x0'"),
    ("20 1 2\n-40 1 2\n", r"line 2, column 't': time in seconds -40 is negative"),
    ("20.5 1 2\n", r"line 1, column 't': time in seconds 20.5 is not an integer"),
    ("20 1 2 A A\n40 1 3 B A\n", r"line 2, column 'ci': person is in class 'A' on line 1 but in class 'B' here"),
    (b"20 1 2 \xff A\n", r"line 1: not valid UTF-8"),
])
def test_bad_sociopatterns_files_name_the_line(tmp_path, text, match):
    with pytest.raises(DataFileError, match=match):
        from_sociopatterns(_write(tmp_path, text), default_age=30)


def test_options_are_checked(tmp_path):
    path = _write(tmp_path, "20 1 2 A B\n")
    with pytest.raises(ConfigError, match="class 'A' is not in class_ages.*population.default_age"):
        from_sociopatterns(path, class_ages={"B": 7})
    with pytest.raises(ConfigError, match="population.duration_unit"):
        from_sociopatterns(path, duration_unit="fortnights", default_age=3)
    with pytest.raises(ConfigError, match="population.window"):
        from_sociopatterns(path, window=0, default_age=3)
