"""Partitioning: balance and cut against a random partition, the fallback, the split's halo plan, files."""
from __future__ import annotations

import sys

import pytest
import torch

from lpm_graph.data.synthetic import generate_population
from lpm_graph.distributed.partition import (PartitionReport, load_part, partition_graph, split, write_partition)
from lpm_graph.errors import ConfigError, PopulationFileError, SimulationWarning


@pytest.fixture(scope="module")
def population():
    return generate_population(num_people=3000, seed=1)


def test_metis_balances_people_and_cuts_less_than_random(population):
    pytest.importorskip("pymetis")
    for parts in (2, 4):
        metis = partition_graph(population, parts, "metis")
        rand = partition_graph(population, parts, "random", seed=1)
        assert metis.method == "metis" and "person" in metis.constraints
        rm, rr = PartitionReport.of(population, metis), PartitionReport.of(population, rand)
        assert rm.imbalance["person"] <= 1.05
        assert sum(o["person"] for o in rm.owned) == 3000
        # a random split cuts about 1 - 1/P of the edges; METIS far fewer
        assert rr.cut_fraction > (1 - 1 / parts) - 0.05
        assert rm.cut_fraction < 0.5 * rr.cut_fraction
        assert sum(map(sum, (g.values() for g in rm.ghosts))) < sum(map(sum, (g.values() for g in rr.ghosts)))


def test_without_pymetis_contiguous_uid_ranges_with_a_warning(population, monkeypatch):
    monkeypatch.setitem(sys.modules, "pymetis", None)  # import pymetis raises ImportError
    with pytest.warns(SimulationWarning, match="pymetis is not installed"):
        p = partition_graph(population, 3, "metis")
    assert p.method == "contiguous"
    for nt in population.node_types:
        uid, a = population[nt].uid, p.assignment[nt]
        order = torch.argsort(uid)
        assert torch.all(a[order][1:] >= a[order][:-1])  # parts follow the uid order
        counts = torch.bincount(a, minlength=3)
        assert int(counts.max() - counts.min()) <= 1 or population[nt].num_nodes < 3


def test_report_counts_the_cut_edges(population):
    p = partition_graph(population, 3, "random", seed=4)
    report = PartitionReport.of(population, p)
    cut = sum(int((p.assignment[s][e[0]] != p.assignment[d][e[1]]).sum())
              for (s, _, d), e in ((et, population[et].edge_index) for et in population.edge_types))
    assert report.cut_edges == cut and report.edges == sum(population[et].edge_index.size(1)
                                                           for et in population.edge_types)


def _split_all(population, p):
    return [split(population, p, r) for r in range(p.parts)]


@pytest.mark.parametrize("method", ["metis", "random"])
def test_split_owns_every_node_once_stores_every_edge_once_and_plans_a_consistent_halo(population, method):
    if method == "metis":
        pytest.importorskip("pymetis")
    p = partition_graph(population, 3, method, seed=2)
    parts = _split_all(population, p)
    for nt in population.node_types:
        owned = torch.cat([d[nt].uid[:info.halos[nt].num_owned] for d, info in parts])
        assert torch.equal(torch.sort(owned).values, torch.sort(population[nt].uid).values)
    for et in population.edge_types:
        s, d = population[et].edge_index
        whole = set(zip(population[et[0]].uid[s].tolist(), population[et[2]].uid[d].tolist()))
        pieces = []
        for data, _ in parts:
            ls, ld = data[et].edge_index
            pieces += list(zip(data[et[0]].uid[ls].tolist(), data[et[2]].uid[ld].tolist()))
        assert len(pieces) == len(whole) == s.numel() and set(pieces) == whole
    # the halo: what r sends to owner o in a reduction is what o expects from r, row for row
    for nt in population.node_types:
        for r, (dr, ir) in enumerate(parts):
            hr = ir.halos[nt]
            ghosts = dr[nt].uid[hr.ghost_rows]
            assert not set(ghosts.tolist()) & set(dr[nt].uid[:hr.num_owned].tolist())
            start = 0
            for o, (do, io) in enumerate(parts):
                n = hr.ghost_counts[o]
                ho = io.halos[nt]
                s0 = sum(ho.serve_counts[:r])
                served = do[nt].uid[ho.serve_rows[s0:s0 + ho.serve_counts[r]]]
                assert torch.equal(ghosts[start:start + n], served), (nt, r, o)
                assert not n or o != r
                start += n
    # the people keep their memberships with them: no person is a ghost anywhere
    assert not any(info.halos["person"].num_local > info.halos["person"].num_owned for _, info in parts)
    assert parts[0][1].has_ghosts["community"]


def test_write_then_load_each_part(population, tmp_path):
    p = partition_graph(population, 2, "random", seed=3)
    report = write_partition(population, p, tmp_path / "parts")
    assert (tmp_path / "parts" / "partition.json").is_file()
    for r in range(2):
        expected, info = split(population, p, r)
        data, loaded = load_part(tmp_path / "parts", r, 2)
        for nt in population.node_types:
            assert torch.equal(data[nt].uid, expected[nt].uid)
            h, g = loaded.halos[nt], info.halos[nt]
            assert torch.equal(h.serve_rows, g.serve_rows) and h.ghost_counts == g.ghost_counts
        for et in population.edge_types:
            assert torch.equal(data[et].edge_index, expected[et].edge_index)
        assert report.ghosts[r] == {nt: info.halos[nt].num_local - info.halos[nt].num_owned
                                    for nt in population.node_types}
    with pytest.raises(ConfigError, match="has 2 parts but the run has 3 processes"):
        load_part(tmp_path / "parts", 0, 3)
    (tmp_path / "parts" / "partition.json").unlink()
    with pytest.raises(PopulationFileError, match="no partition.json"):
        load_part(tmp_path / "parts", 0, 2)
