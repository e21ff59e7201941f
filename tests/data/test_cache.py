"""The processed-graph cache: used while inputs are unchanged, invalidated by one changed byte."""
from __future__ import annotations

import logging
import os
import shutil

import pytest
import torch

from lpm_graph.data import cache
from lpm_graph.data.cache import cached_build, last_record
from lpm_graph.data.edgelist import from_edgelist
from lpm_graph.data.tables import from_tables

PERSONS = "person_id,age,household_id\n1,30,10\n2,31,10\n3,5,11\n"


@pytest.fixture
def persons(tmp_path):
    path = tmp_path / "persons.csv"
    path.write_text(PERSONS)
    return path


def _same(a, b) -> None:
    assert a.node_types == b.node_types and a.edge_types == b.edge_types
    for store_a, store_b in zip(a.stores, b.stores):
        for key, value in store_a.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, store_b[key]), key
            else:
                assert value == store_b[key], key


def test_unchanged_inputs_load_from_the_cache(tmp_path, persons, monkeypatch):
    root = tmp_path / "cache"
    first = from_tables(persons, cache_dir=root)
    assert last_record().status == "built"
    calls = []
    import lpm_graph.data.tables as tables

    monkeypatch.setattr(tables, "assemble_tables", lambda *a, **k: calls.append(1))  # a rebuild would fail
    second = from_tables(persons, cache_dir=root)
    assert last_record().status == "hit" and not calls
    _same(first, second)
    assert sorted(p.suffix for p in root.iterdir()) == [".json", ".pt"]   # no temporary files


def test_one_changed_byte_rebuilds_with_a_message_and_drops_the_stale_entry(tmp_path, persons, caplog):
    root = tmp_path / "cache"
    from_tables(persons, cache_dir=root)
    old = last_record().path
    persons.write_text(PERSONS.replace("3,5,11", "3,6,11"))
    with caplog.at_level(logging.INFO, logger="lpm_graph.data.cache"):
        data = from_tables(persons, cache_dir=root)
    record = last_record()
    assert record.status == "rebuilt" and record.path != old
    assert "input changed since the cached build: persons" in caplog.text and str(persons.resolve()) in caplog.text
    assert data["person"].age.tolist() == [30.0, 31.0, 6.0]
    assert not old.exists() and len(list(root.glob("*.pt"))) == 1


def test_key_covers_options_and_contents_not_paths(tmp_path, persons):
    root = tmp_path / "cache"
    from_tables(persons, cache_dir=root)
    key = last_record().key
    moved = tmp_path / "elsewhere" / "people.csv"
    moved.parent.mkdir()
    shutil.copy(persons, moved)
    from_tables(moved, cache_dir=root)
    assert last_record().status == "hit" and last_record().key == key     # same bytes, same options
    from_tables(persons, default_age=40, cache_dir=root)                  # an option changes the key
    assert last_record().status == "built" and last_record().key != key


def test_a_corrupt_cache_file_is_rebuilt(tmp_path, persons, caplog):
    root = tmp_path / "cache"
    from_tables(persons, cache_dir=root)
    last_record().path.write_bytes(b"not a population")
    with caplog.at_level(logging.WARNING, logger="lpm_graph.data.cache"):
        data = from_tables(persons, cache_dir=root)
    assert "does not load" in caplog.text and last_record().status == "rebuilt"
    assert last_record().reason.startswith(f"the cached file {last_record().path.name} does not load")
    assert data["person"].num_nodes == 3


def test_no_cache_dir_writes_nothing(tmp_path, persons):
    cache.clear_last_record()
    from_tables(persons, cache_dir=None)
    assert last_record() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["persons.csv"]


def test_cached_edge_list_is_identical_to_a_fresh_import(tmp_path):
    (tmp_path / "e.csv").write_text("src,dst,weight,day\n1,2,0.5,0\n2,3,1.5,1\n")
    fresh = from_edgelist(tmp_path / "e.csv", default_age=20)
    from_edgelist(tmp_path / "e.csv", default_age=20, cache_dir=tmp_path / "c")
    cached = from_edgelist(tmp_path / "e.csv", default_age=20, cache_dir=tmp_path / "c")
    assert last_record().hit
    _same(fresh, cached)


def test_unwritable_cache_dir_is_a_config_error(tmp_path, persons):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(cache.ConfigError, match="population.cache_dir"):
        cached_build("x", {"persons": persons}, {}, lambda: None, blocker / "sub")


def test_orphan_temporaries_of_the_key_are_removed_on_the_next_build(tmp_path, persons, caplog):
    import subprocess
    import sys

    from lpm_graph.data import io as population_io

    root = tmp_path / "cache"
    from_tables(persons, cache_dir=root)
    entry = last_record().path
    entry.unlink()
    entry.with_suffix(".json").unlink()                         # as if the first build had been killed
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()                                                # a writer that is gone
    host, dead = population_io._HOST, child.pid
    orphans = [root / f".{entry.name}.{host}.{dead}.a1b2c3.tmp",
               root / f".{entry.with_suffix('.json').name}.{host}.{dead}.d4e5f6.tmp"]
    live = root / f".{entry.name}.{host}.{os.getpid()}.g7h8i9.tmp"          # being written right now
    other_key = root / f".tables-00000000000000000000.pt.{host}.{dead}.j1k2l3.tmp"
    for tmp in orphans + [live, other_key]:
        tmp.write_bytes(b"\0" * 1024)
    with caplog.at_level(logging.WARNING, logger="lpm_graph.data.cache"):
        from_tables(persons, cache_dir=root)
    assert last_record().status == "built" and last_record().path == entry
    assert not any(tmp.exists() for tmp in orphans)
    assert live.exists() and other_key.exists()
    assert "left by an interrupted write" in caplog.text and orphans[0].name in caplog.text


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_cache_files_follow_the_umask(tmp_path, persons, umask):
    previous = os.umask(umask)
    try:
        from_tables(persons, cache_dir=tmp_path / "cache")
    finally:
        os.umask(previous)
    entry = last_record().path
    for path in (entry, entry.with_suffix(".json")):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path.name
