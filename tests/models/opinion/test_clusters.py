"""The opinion cluster count (lpm_graph.models.opinion.clusters): runs of sorted opinions split by gaps > delta."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.errors import ConfigError
from lpm_graph.models.opinion import OpinionClusters
from lpm_graph.models.opinion.clusters import cluster_tops

F64 = torch.float64


def test_cluster_tops_count_runs_separated_by_wide_gaps():
    x = torch.tensor([[0.1, 0.5], [0.105, 0.5], [0.5, 0.5], [0.9, 0.2], [0.505, 0.21]], dtype=F64)
    tops = cluster_tops(x, 0.01)
    assert tops.sum(0).tolist() == [3.0, 2.0]
    assert tops[:, 0].tolist() == [0.0, 1.0, 0.0, 1.0, 1.0]  # the largest of each run: 0.105, 0.505, 0.9
    assert cluster_tops(x, 0.01, min_size=2).sum(0).tolist() == [2.0, 2.0]
    assert cluster_tops(x, 0.01, min_size=3).sum(0).tolist() == [0.0, 1.0]


def test_a_gap_of_exactly_delta_stays_inside_a_cluster():
    # binary-exact values: 0.25 apart is one run at delta = 0.25 (the count splits at gaps wider than delta)
    x = torch.tensor([[0.0], [0.25], [0.75]], dtype=F64)
    assert float(cluster_tops(x, 0.25).sum()) == 2.0
    assert float(cluster_tops(x, 0.2499).sum()) == 3.0
    assert float(cluster_tops(x, 0.5).sum()) == 1.0


def test_the_tops_follow_the_people_in_any_order_and_each_column_alone():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(20, 3, generator=g, dtype=F64) * 0.05 + c for c in (0.0, 0.4, 0.8)])  # 3 clusters
    tops = cluster_tops(x, 0.1)
    assert tops.sum(0).tolist() == [3.0, 3.0, 3.0]
    for r in range(3):  # each top is the largest opinion of its cluster
        chosen = sorted(float(v) for v in x[tops[:, r] == 1, r])
        assert chosen == [float(x[k * 20:(k + 1) * 20, r].max()) for k in range(3)]
    perm = torch.randperm(60, generator=g)
    assert torch.equal(cluster_tops(x[perm], 0.1), tops[perm])
    # one column's opinions do not move another's count: merge the clusters of column 0 only
    y = x.clone()
    y[:, 0] = torch.linspace(0, 1, 60, dtype=F64)
    assert cluster_tops(y, 0.1).sum(0).tolist() == [1.0, 3.0, 3.0]


def test_min_size_drops_small_runs_at_either_end_and_in_the_middle():
    x = torch.tensor([[0.0], [0.5], [0.51], [0.52], [0.9], [1.5], [1.51]], dtype=F64)  # runs of 1, 3, 1, 2
    assert float(cluster_tops(x, 0.05).sum()) == 4.0
    assert float(cluster_tops(x, 0.05, min_size=2).sum()) == 2.0
    assert cluster_tops(x, 0.05, min_size=2)[:, 0].tolist() == [0, 0, 0, 1, 0, 0, 1]
    assert float(cluster_tops(x, 0.05, min_size=4).sum()) == 0.0
    assert cluster_tops(torch.zeros(0, 2, dtype=F64), 0.1).shape == (0, 2)


def test_the_count_has_no_gradient():
    x = torch.tensor([[0.0], [1.0]], dtype=F64, requires_grad=True)
    assert not cluster_tops(x, 0.1).requires_grad


def test_the_process_declares_its_event_observable_and_outcome_and_checks_its_arguments():
    p = OpinionClusters(gap=0.05, min_size=2, state="belief")
    assert p.reads() == ["person.belief"] and p.event == "person.belief_cluster_top"
    (obs,) = p.observables()
    assert (obs.name, obs.source, obs.kind) == ("belief_clusters", "person.belief_cluster_top", "sum")
    (out,) = p.outcomes()
    assert (out.name, out.series, out.reduce) == ("belief_final_clusters", "belief_clusters", "final")
    assert OpinionClusters().outcomes()[0].name == "final_clusters"
    x = torch.tensor([[0.0], [0.01], [0.5], [0.9], [0.91]], dtype=F64)
    events = p(None, {"person.belief": x}, {}).events["person.belief_cluster_top"]
    assert events[:, 0].tolist() == [0, 1, 0, 0, 1]  # two runs of two; the lone 0.5 is not counted
    for bad in (0, -0.1, float("nan"), True, "0.1"):
        with pytest.raises(ConfigError, match="gap must be a number > 0"):
            OpinionClusters(gap=bad)
    for bad in (0, 1.5, True):
        with pytest.raises(ConfigError, match="min_size must be a whole number >= 1"):
            OpinionClusters(min_size=bad)
