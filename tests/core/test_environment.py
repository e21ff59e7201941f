"""Environment processes: a factor on a field over a window of steps."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.core import Model, Scale, Window
from lpm_graph.core.state import FieldSpec
from lpm_graph.errors import ConfigError
from tests.core.toys import supply_chain, supply_graph


@pytest.mark.parametrize("start, end", [(-1, None), (5, 3), (1.5, None), (True, None), (0, 2.5)])
def test_window_bounds_are_checked(start, end):
    with pytest.raises(ConfigError, match=r"Scale \(scale\) needs integer 0 <= start <= end"):
        Scale("supplies.scale", start=start, end=end)


def test_window_is_half_open():
    w = Scale("supplies.scale", start=2, end=5)
    assert [w.active(t) for t in range(7)] == [False, False, True, True, True, False, False]
    assert all(Scale("supplies.scale", start=3).active(t) for t in (3, 10, 1000))
    assert isinstance(w, Window) and w.role == "environment"


def test_scale_declares_a_product_field_and_its_factor():
    s = Scale("supplies.scale", factor=0.25, domain="probability", name="strike")
    assert s.field_specs() == [FieldSpec("supplies", "scale", per_node=False, combine="product")]
    (spec,) = s.param_specs()
    assert (spec.name, spec.default, spec.domain) == ("factor", 0.25, "probability")
    with pytest.raises(ConfigError, match=r"Scale \(scale\).field must be '<scope>.<name>', got 'scale'"):
        Scale("scale")


def test_a_scale_acts_only_inside_its_window():
    # Deliver multiplies what retailers receive by supplies.scale; the firms' draws are the same numbers
    # (common random numbers), so arrivals change exactly in steps 2 and 3 (rows 3 and 4)
    obs = [{"name": "arrivals", "source": "retailer.arrivals", "kind": "sum"}]
    base = Model(supply_chain(), observables=obs).double()(supply_graph(), steps=8, seed=3, replicates=2).series
    closed = Model(supply_chain(), environment=[Scale("supplies.scale", start=2, end=4, factor=0.0)],
                   observables=obs).double()(supply_graph(), steps=8, seed=3, replicates=2).series
    assert torch.equal(closed["stock"], base["stock"])
    assert torch.equal(closed["arrivals"][[0, 1, 2, 5, 6, 7, 8]], base["arrivals"][[0, 1, 2, 5, 6, 7, 8]])
    assert torch.equal(closed["arrivals"][3:5], torch.zeros_like(base["arrivals"][3:5]))
    assert bool((base["arrivals"][3:5] > 0).all())


def test_two_scales_of_one_field_multiply():
    obs = [{"name": "arrivals", "source": "retailer.arrivals", "kind": "sum"}]
    both = Model(supply_chain(), observables=obs, environment=[
        Scale("supplies.scale", start=1, end=4, factor=0.5, name="a"),
        Scale("supplies.scale", start=3, end=6, factor=0.25, name="b")]).double()
    base = Model(supply_chain(), observables=obs).double()
    x = both(supply_graph(), steps=7, seed=1).series["arrivals"][1:, 0]
    y = base(supply_graph(), steps=7, seed=1).series["arrivals"][1:, 0]  # row t + 1: step t
    factor = torch.tensor([1.0, 0.5, 0.5, 0.125, 0.25, 0.25, 1.0], dtype=torch.float64)
    assert torch.allclose(x, factor * y, rtol=1e-14, atol=0)


def test_the_factor_is_a_parameter_with_a_gradient():
    model = Model(supply_chain(), environment=[Scale("supplies.scale", start=0, end=3, name="strike")],
                  params={"strike": {"factor": 0.5}}, learnable=["strike.factor"]).double()
    assert "strike.factor" in model.params.names
    traj = model(supply_graph(), steps=5, seed=2)
    traj.series["inventory"][-1].sum().backward()
    g = model.params.raw("strike.factor").grad
    assert g is not None and float(g) > 0  # more delivered in the window, more inventory at the end
