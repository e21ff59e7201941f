"""Environment functions: venue closures."""
from __future__ import annotations

import pytest

from lpm_graph.data import ConfigError
from lpm_graph.dynamics import Environment, VenueClosure


def test_closure_window_is_half_open():
    g = VenueClosure("school", start=3, end=5, factor=0.25)
    scales = [g(t, None, None, Environment()).scale_of("school") for t in range(7)]
    assert scales == [1.0, 1.0, 1.0, 0.25, 0.25, 1.0, 1.0]
    assert VenueClosure("school", start=2).active(1000)


def test_closures_compose_and_leave_the_input_unchanged():
    env = Environment()
    a = VenueClosure("school", 0, None, 0.5)(0, None, None, env)
    b = VenueClosure("school", 0, None, 0.5)(0, None, None, a)
    assert b.scale_of("school") == 0.25 and env.scale_of("school") == 1.0
    assert b.scale_of("workplace") == 1.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(venue_type="school", start=0, factor=1.5), "factor must be in \\[0, 1\\]"),
    (dict(venue_type="school", start=5, end=2), "start <= end"),
    (dict(venue_type="school", start=-1), "start <= end"),
])
def test_bad_closure_is_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        VenueClosure(**kwargs)
