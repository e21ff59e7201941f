"""Given decisions (``lpm_graph.behavior.fixed``): each decision's probability is a parameter, alike for every node."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.behavior import FixedDecisions
from lpm_graph.core import Model
from lpm_graph.errors import ConfigError
from tests.behavior.test_base import Reader, people


def model(behaviour, **kw):
    return Model(processes={"reader": Reader(behaviour.decisions)}, behavior={behaviour.name: behaviour},
                 dtype=torch.float64, **kw)


def test_the_defaults_are_the_parameters_defaults():
    given = FixedDecisions({"stays_home": 0.25, "masks": 0.5})
    assert given.name == "fixed"
    assert {s.name: (s.domain, s.default) for s in given.param_specs()} == {
        "stays_home": ("probability", 0.25), "masks": ("probability", 0.5)}
    assert {s.name: s.default for s in FixedDecisions(["stays_home", "masks"]).param_specs()} == {
        "stays_home": 0.0, "masks": 0.0}


def test_every_node_and_replicate_decides_the_parameters_value():
    m = model(FixedDecisions({"stays_home": 0.25, "masks": 0.5}, grouping=None),
              params={"fixed": {"masks": 0.125}})  # a configured value replaces the default
    traj = m(people(), steps=3, replicates=2)
    assert torch.equal(traj.final_state["person.last_stays_home"], torch.full((6, 2), 0.25, dtype=torch.float64))
    assert torch.equal(traj.final_state["person.last_masks"], torch.full((6, 2), 0.125, dtype=torch.float64))
    # the reader summed the decision to stay home for three steps
    torch.testing.assert_close(traj.final_state["person.seen"], torch.full((6, 2), 0.75, dtype=torch.float64))


def test_a_time_varying_share_is_the_value_of_the_steps_period():
    series = [0.1, 0.4, 0.7]
    m = model(FixedDecisions(["stays_home"], grouping=None), params={"fixed": {"stays_home": series}},
              time_varying={"fixed.stays_home": 2})
    traj = m(people(), steps=8)
    # step t reads entry min(t // 2, 2); index 0 of the series is before the first step
    want = [0.0] + [series[min(t // 2, 2)] for t in range(8)]
    torch.testing.assert_close(traj.series["stays_home"][:, 0], torch.tensor(want, dtype=torch.float64))


def test_a_learnable_share_gets_the_gradient_of_what_reads_it():
    m = model(FixedDecisions({"stays_home": 0.3}, grouping=None), learnable=["fixed.stays_home"])
    traj = m(people(), steps=4)
    traj.final_state["person.seen"].sum().backward()
    [(name, p)] = list(m.named_parameters())
    assert float(p.grad) == pytest.approx(6 * 4)  # d/dθ of sum over 6 people of 4 θ


def test_a_share_outside_0_1_is_refused_naming_the_parameter():
    with pytest.raises(ConfigError, match=r"model\.params\.fixed\.stays_home must be a probability in \[0, 1\], got 1\.5"):
        model(FixedDecisions({"stays_home": 0.3}, grouping=None), params={"fixed": {"stays_home": 1.5}})
