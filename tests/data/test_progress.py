"""Progress of a population build on stderr (lpm_graph.data.progress): off by default, one line per build."""
from __future__ import annotations

import pytest

from lpm_graph.data import progress


def test_off_by_default_and_shown_only_inside_the_block_even_when_it_raises():
    assert not progress.enabled()
    with progress.shown():
        assert progress.enabled()
        with progress.shown(False):  # a nested block restores what the outer one set
            assert not progress.enabled()
        assert progress.enabled()
    assert not progress.enabled()
    with pytest.raises(RuntimeError):
        with progress.shown(True):
            raise RuntimeError("a failed build")
    assert not progress.enabled()


def test_stages_are_silent_when_off(capsys):
    with progress.stages("population", 2) as stage:
        stage("people")
        stage("venues")
    assert capsys.readouterr() == ("", "")


def test_each_stage_redraws_the_line_with_its_number_of_the_total(capsys):
    with progress.shown(), progress.stages("town of 10", 3) as stage:
        for name in ("people", "households", "graph"):
            stage(name)
    out, err = capsys.readouterr()
    assert out == ""  # stderr only
    seen = [k for k in ("town of 10: people (1/3)", "town of 10: households (2/3)", "town of 10: graph (3/3)")
            if k in err]
    assert len(seen) == 3 and err.index(seen[0]) < err.index(seen[1]) < err.index(seen[2])
    assert "(4/3)" not in err and "(1/3)" in err.split("households")[0]


def test_without_a_total_the_stage_has_no_count_and_the_count_restarts_per_build(capsys):
    with progress.shown():
        with progress.stages("file") as stage:
            stage("hash inputs")
            stage("load")
        with progress.stages("again", 2) as stage:
            stage("first")
    err = capsys.readouterr().err
    assert "file: hash inputs" in err and "file: load" in err and "file: load (" not in err
    assert "again: first (1/2)" in err  # a new build counts from 1
