"""Tests for save_population / load_population (lpm_graph.data.io)."""

from __future__ import annotations

import os

import pytest
import torch
from torch_geometric.data import HeteroData

from lpm_graph.data import (
    PopulationGraphError,
    generate_population,
    load_population,
    save_population,
)
from lpm_graph.data import io as population_io
from lpm_graph.data.io import FORMAT_TAG, FORMAT_VERSION, PopulationFileError
from lpm_graph.data.synthetic import MEMBER_OF


@pytest.fixture
def graph():
    data = generate_population(400, seed=12)
    et = ("person", MEMBER_OF, "household")
    data[et].edge_weight = torch.rand(data[et].edge_index.shape[1])
    data.step = 3
    data.scale = torch.tensor([0.5, 2.0])
    return data


def assert_same_graph(a: HeteroData, b: HeteroData) -> None:
    assert sorted(a.node_types) == sorted(b.node_types)
    assert sorted(a.edge_types) == sorted(b.edge_types)
    stores = [(nt, a[nt], b[nt]) for nt in a.node_types]
    stores += [(et, a[et], b[et]) for et in a.edge_types]
    for name, sa, sb in stores:
        assert sorted(sa.keys()) == sorted(sb.keys()), name
        for key in sa.keys():
            va, vb = sa[key], sb[key]
            if isinstance(va, torch.Tensor):
                assert isinstance(vb, torch.Tensor), (name, key)
                assert va.dtype == vb.dtype and va.shape == vb.shape, (name, key)
                assert torch.equal(va, vb), (name, key)
            else:
                assert va == vb, (name, key)


def test_round_trip_preserves_every_tensor(graph, tmp_path):
    path = tmp_path / "pop.pt"
    save_population(graph, path)
    loaded = load_population(path)
    assert_same_graph(graph, loaded)
    assert loaded.step == 3
    assert torch.equal(loaded.scale, graph.scale)


def test_round_trip_with_str_path(graph, tmp_path):
    path = str(tmp_path / "pop.pt")
    save_population(graph, path)
    assert_same_graph(graph, load_population(path))


def test_file_is_plain_tagged_dict(graph, tmp_path):
    path = tmp_path / "pop.pt"
    save_population(graph, path)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == FORMAT_TAG and payload["version"] == FORMAT_VERSION
    assert set(payload["nodes"]) == set(graph.node_types)
    assert payload["nodes"]["person"]["num_nodes"] == 400
    assert len(payload["edges"]) == len(graph.edge_types)
    assert {tuple(e["edge_type"]) for e in payload["edges"].values()} == set(graph.edge_types)


def test_save_refuses_invalid_graph(graph, tmp_path):
    graph["person", MEMBER_OF, "school"].edge_index[1, 0] = 10**6
    path = tmp_path / "bad.pt"
    with pytest.raises(PopulationGraphError, match="'school'"):
        save_population(graph, path)
    assert os.listdir(tmp_path) == []


def test_save_refuses_unstorable_attribute(graph, tmp_path):
    graph["household"].names = ["a"] * graph["household"].num_nodes
    with pytest.raises(PopulationGraphError, match="node type 'household'.*'names'"):
        save_population(graph, tmp_path / "x.pt")
    assert os.listdir(tmp_path) == []


def test_save_into_missing_directory(graph, tmp_path):
    path = tmp_path / "nope" / "pop.pt"
    with pytest.raises(FileNotFoundError, match="nope"):
        save_population(graph, path)


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_failed_save_leaves_no_file(graph, tmp_path, monkeypatch, exc_type):
    def half_written_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial")
        raise exc_type("disk full")

    monkeypatch.setattr(population_io.torch, "save", half_written_save)
    path = tmp_path / "pop.pt"
    with pytest.raises(exc_type, match="disk full"):
        save_population(graph, path)
    assert os.listdir(tmp_path) == []


def test_failed_overwrite_keeps_previous_file(graph, tmp_path, monkeypatch):
    path = tmp_path / "pop.pt"
    save_population(graph, path)
    before = path.read_bytes()

    def failing_save(obj, f, *args, **kwargs):
        raise OSError("interrupted")

    monkeypatch.setattr(population_io.torch, "save", failing_save)
    other = generate_population(50, seed=1)
    with pytest.raises(OSError, match="interrupted"):
        save_population(other, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["pop.pt"]
    assert path.read_bytes() == before
    assert_same_graph(graph, load_population(path))


def test_overwrite_replaces_file(graph, tmp_path):
    path = tmp_path / "pop.pt"
    save_population(graph, path)
    other = generate_population(50, seed=1)
    save_population(other, path)
    assert load_population(path)["person"].num_nodes == 50
    assert os.listdir(tmp_path) == ["pop.pt"]


def test_load_missing_file(tmp_path):
    path = tmp_path / "missing.pt"
    with pytest.raises(FileNotFoundError, match="missing.pt") as info:
        load_population(path)
    assert "save_population" in str(info.value)


def test_load_plain_tensor_file(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"layer.weight": torch.ones(3)}, path)
    with pytest.raises(PopulationFileError, match="weights.pt") as info:
        load_population(path)
    assert "not a population file" in str(info.value)
    assert "save_population" in str(info.value)


def test_load_garbage_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("just some text\n")
    with pytest.raises(PopulationFileError, match="notes.pt.*not a population file"):
        load_population(path)


def test_load_wrong_format_tag(graph, tmp_path):
    path = tmp_path / "pop.pt"
    save_population(graph, path)
    payload = torch.load(path, weights_only=True)
    payload["format"] = "someone.else"
    torch.save(payload, path)
    with pytest.raises(PopulationFileError, match="pop.pt.*not a population file.*someone.else"):
        load_population(path)


def test_load_unsupported_version(graph, tmp_path):
    path = tmp_path / "pop.pt"
    save_population(graph, path)
    payload = torch.load(path, weights_only=True)
    payload["version"] = FORMAT_VERSION + 1
    torch.save(payload, path)
    with pytest.raises(PopulationFileError, match=f"pop.pt.*version {FORMAT_VERSION + 1}"):
        load_population(path)


def test_load_validates_graph(graph, tmp_path):
    path = tmp_path / "pop.pt"
    save_population(graph, path)
    payload = torch.load(path, weights_only=True)
    key = next(k for k, v in payload["edges"].items()
               if tuple(v["edge_type"]) == ("person", MEMBER_OF, "workplace"))
    payload["edges"][key]["edge_index"][1, 0] = -1
    torch.save(payload, path)
    with pytest.raises(PopulationGraphError, match="pop.pt.*'workplace'.*negative"):
        load_population(path)


@pytest.fixture(params=[0o022, 0o027], ids=["umask022", "umask027"])
def umask(request):
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def test_saved_file_mode_follows_the_umask(graph, tmp_path, umask):
    path = tmp_path / "pop.pt"
    save_population(graph, path)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_are_those_whose_writer_is_gone(tmp_path):
    path = tmp_path / "pop.pt"
    host = population_io._HOST
    dead = tmp_path / f".pop.pt.{host}.{_dead_pid()}.abc123.tmp"          # killed writer on this host
    live = tmp_path / f".pop.pt.{host}.{os.getpid()}.def456.tmp"         # a writer still running
    remote_new = tmp_path / ".pop.pt.otherhost.12.ghi789.tmp"            # another host, recently written
    remote_old = tmp_path / ".pop.pt.otherhost.12.jkl012.tmp"            # another host, untouched for 2 h
    unnamed_old = tmp_path / ".pop.pt.mno345.tmp"                        # written without a pid, 2 h ago
    other_target = tmp_path / f".other.pt.{host}.{_dead_pid()}.pqr678.tmp"
    for tmp in (dead, live, remote_new, remote_old, unnamed_old, other_target):
        tmp.write_bytes(b"partial")
    two_hours_ago = os.path.getmtime(remote_new) - 7200
    for tmp in (remote_old, unnamed_old):
        os.utime(tmp, (two_hours_ago, two_hours_ago))
    removed = population_io.remove_stale_temporaries(path)
    assert sorted(removed) == sorted([dead, remote_old, unnamed_old])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (live, remote_new, other_target))


def test_the_temporary_names_its_writer(graph, tmp_path, monkeypatch):
    seen = []
    real = population_io.torch.save

    def spy(obj, f, *args, **kwargs):
        seen.extend(os.listdir(tmp_path))
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(population_io.torch, "save", spy)
    save_population(graph, tmp_path / "pop.pt")
    assert len(seen) == 1 and seen[0].startswith(f".pop.pt.{population_io._HOST}.{os.getpid()}.")
    assert seen[0].endswith(".tmp") and os.listdir(tmp_path) == ["pop.pt"]
