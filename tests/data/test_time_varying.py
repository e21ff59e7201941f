"""Validation of time-varying edges (``time``, ``time_period``) by the graph validator.

How a time-varying edge type becomes one layout per window is tested in tests/core/test_graph.py.
"""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData

from lpm_graph.data.validate import validate_population
from lpm_graph.errors import PopulationGraphError
from tests.helpers import timed_chain

CONTACT = ("person", "contact", "person")


_graph = timed_chain


@pytest.mark.parametrize("time, period, match", [
    ([0, 0, -1, 1, 1, 1], None, r"time must be >= 0 .* edge 2 has time -1"),
    ([0.0] * 6, None, r"time must be an integer tensor"),
    ([0, 1], None, r"time must have shape \[6\]"),
    ([0, 0, 3, 3, 1, 1], 3, r"time_period must be an integer > the last time window \(3\)"),
    ([0] * 6, 0, r"time_period must be an integer"),
])
def test_validation_of_time(time, period, match):
    with pytest.raises(PopulationGraphError, match=match):
        validate_population(_graph(time, period))


def test_period_without_time_is_refused():
    d = _graph([0] * 6)
    del d[CONTACT].time
    d[CONTACT].time_period = 3
    with pytest.raises(PopulationGraphError, match="'time_period' but no per-edge 'time'"):
        validate_population(d)
