"""Observables (per-step reductions, grouped by any grouping) and outcomes (reductions over time)."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from lpm_graph.core import (EventSpec, Grouping, Model, Observable, Outcome, Output, Process, Requirements,
                            StateSpec, Trajectory)
from lpm_graph.core.observe import smooth_argmax
from lpm_graph.errors import ConfigError
from lpm_graph.nn import SparseAdjacency
from tests.core.toys import SECTORS, supply_graph

F64 = torch.float64
MODES = ("idle", "busy", "closed")
STEPS, REPS = 4, 2


class Ramp(Process):
    r"""Deterministic firm states, known at every step ``k`` (row ``k`` of a trajectory) and replicate ``r``:
    ``level`` :math:`= a_i + k b_i + r` (continuous; :math:`a` the size, :math:`b` = sector + 1),
    ``high`` :math:`= [\text{level} > 9]` (indicator), ``orders`` :math:`= k b_i` (count),
    ``mode`` :math:`= (k + \text{sector}) \bmod 3` (categorical) and the event ``rise`` :math:`= b_i` from step 1."""

    default_name = "ramp"

    def requirements(self):
        return Requirements(attributes={"firm": {"size", "sector"}})

    def state_specs(self):
        return [StateSpec("firm", "level", "continuous", init=None), StateSpec("firm", "high", "indicator", init=None),
                StateSpec("firm", "orders", "count", init=None),
                StateSpec("firm", "mode", "categorical", init=None, categories=MODES)]

    def event_specs(self):
        return [EventSpec("firm", "rise")]

    def reads(self):
        return ["firm.level", "firm.orders", "firm.mode"]

    def _b(self, ctx):
        return (ctx.graph.attribute("firm", "sector").to(ctx.dtype) + 1).unsqueeze(1).expand(-1, ctx.replicates)

    def init(self, ctx):
        a = ctx.graph.attribute("firm", "size").to(ctx.dtype).unsqueeze(1)
        level = a + torch.arange(ctx.replicates, dtype=ctx.dtype)
        sector = ctx.graph.attribute("firm", "sector").to(ctx.dtype).unsqueeze(1).expand_as(level)
        return Output(state={"firm.level": level, "firm.high": (level > 9).to(ctx.dtype),
                             "firm.orders": torch.zeros_like(level), "firm.mode": torch.remainder(sector, 3)})

    def forward(self, ctx, state, fields):
        b = self._b(ctx)
        level = state["firm.level"] + b
        return Output(state={"firm.level": level, "firm.high": (level > 9).to(level.dtype),
                             "firm.orders": state["firm.orders"] + b,
                             "firm.mode": torch.remainder(state["firm.mode"] + 1, 3)},
                      events={"firm.rise": b})


OBSERVABLES = [
    {"name": "level_mean", "source": "firm.level", "kind": "mean", "by": ["sector"]},
    {"name": "level_var", "source": "firm.level", "kind": "var", "by": ["sector"]},
    {"name": "high", "source": "firm.high", "kind": "count", "by": ["sector"]},
    {"name": "orders", "source": "firm.orders", "kind": "count", "by": ["sector"]},
    {"name": "busy", "source": "firm.mode", "kind": "count", "category": "busy", "by": ["sector"]},
    {"name": "rise", "source": "firm.rise", "kind": "sum", "by": ["sector"]},
]


@pytest.fixture(scope="module")
def run():
    data = supply_graph(num_firms=9, seed=4)
    model = Model([Ramp()], groupings={"sector": {"node_type": "firm"}}, observables=OBSERVABLES).double()
    return data, model(data, steps=STEPS, replicates=REPS, dtype=F64)


def frame(data) -> pd.DataFrame:
    """Every firm's values at every row k and replicate r, by hand from the formulas of Ramp."""
    rows = []
    size, sector = data["firm"].size.double().tolist(), data["firm"].sector.tolist()
    for k in range(STEPS + 1):
        for r in range(REPS):
            for a, s in zip(size, sector):
                b = s + 1
                level = a + k * b + r
                rows.append(dict(k=k, r=r, sector=s, level=level, high=float(level > 9), orders=k * b,
                                 busy=float((k + s) % 3 == MODES.index("busy")), rise=float(b if k else 0)))
    return pd.DataFrame(rows)


def test_per_step_counts_sums_means_and_variances_are_the_hand_computed_ones(run):
    data, traj = run
    df = frame(data)
    by_step = df.groupby(["k", "r"])
    expected = {"level_mean": by_step["level"].mean(), "level_var": by_step["level"].var(ddof=0),
                "high": by_step["high"].sum(), "orders": by_step["orders"].sum(), "busy": by_step["busy"].sum(),
                "rise": by_step["rise"].sum()}
    for name, values in expected.items():
        want = torch.tensor(values.to_numpy(), dtype=F64).view(STEPS + 1, REPS)
        assert traj.series[name].shape == (STEPS + 1, REPS), name
        assert torch.allclose(traj.series[name], want, rtol=1e-12, atol=1e-12), name
    assert torch.equal(traj.series["rise"][0], torch.zeros(REPS, dtype=F64))  # step-0 events are zeros
    assert bool((traj.series["level_var"] > 0).all()) and bool((traj.series["busy"] > 0).any())


def test_grouped_by_a_categorical_attribute_equals_a_groupby(run):
    data, traj = run
    df = frame(data)
    assert traj.labels == {"sector": SECTORS}
    g = df.groupby(["k", "sector", "r"])
    expected = {"level_mean": g["level"].mean(), "level_var": g["level"].var(ddof=0), "high": g["high"].sum(),
                "orders": g["orders"].sum(), "busy": g["busy"].sum(), "rise": g["rise"].sum()}
    for name, values in expected.items():
        want = torch.tensor(values.to_numpy(), dtype=F64).view(STEPS + 1, len(SECTORS), REPS)
        assert traj.grouped["sector"][name].shape == (STEPS + 1, len(SECTORS), REPS), name
        assert torch.allclose(traj.grouped["sector"][name], want, rtol=1e-12, atol=1e-12), name
    # the groups add up to the total of a count or sum
    for name in ("high", "orders", "busy", "rise"):
        assert torch.allclose(traj.grouped["sector"][name].sum(1), traj.series[name], rtol=1e-14, atol=0)
    # a group of the trajectory by label, and the flat columns
    assert torch.equal(traj.group("orders", "sector", "mill"), traj.grouped["sector"]["orders"][:, 1])
    cols = traj.columns()
    assert torch.equal(cols["high_sector_bakery"], traj.grouped["sector"]["high"][:, 2])
    assert torch.equal(cols["level_mean"], traj.series["level_mean"])


def test_trajectory_frame_and_lookups(run):
    _, traj = run
    assert (traj.steps, traj.replicates) == (STEPS, REPS)
    df = traj.to_frame()
    assert len(df) == (STEPS + 1) * REPS
    assert df["step"].tolist() == [k for k in range(STEPS + 1) for _ in range(REPS)]
    assert df["replicate"].tolist() == list(range(REPS)) * (STEPS + 1)
    assert df["rise_sector_farm"].tolist() == traj.grouped["sector"]["rise"][:, 0].reshape(-1).tolist()
    assert df["level_mean"].tolist() == traj.series["level_mean"].reshape(-1).tolist()
    with pytest.raises(ConfigError, match=r"'level' is not observed by 'sector'"):
        traj.group("level", "sector", "farm")
    with pytest.raises(ConfigError, match=r"'shop' is not a group of 'sector'; groups: \['farm', 'mill', 'bakery'\]"):
        traj.group("high", "sector", "shop")


def test_an_empty_group_has_zero_sum_mean_and_variance():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 7.0]], dtype=F64)   # 3 nodes, 2 replicates
    groups = torch.tensor([0, 2, 0])                                  # group 1 is empty
    adj = SparseAdjacency.from_edge_index(torch.stack([torch.arange(3), groups]), None, (3, 3), F64)
    sizes = torch.tensor([2.0, 0.0, 1.0], dtype=F64)
    assert Observable("s", "firm.x", "sum").reduce_groups(x, adj, sizes).tolist() == [[6.0, 9.0], [0, 0], [3.0, 4.0]]
    assert Observable("m", "firm.x", "mean").reduce_groups(x, adj, sizes).tolist() == \
        [[3.0, 4.5], [0, 0], [3.0, 4.0]]
    # group 0: values 1, 5 (var 4) and 2, 7 (var 6.25); a single node has variance 0
    assert Observable("v", "firm.x", "var").reduce_groups(x, adj, sizes).tolist() == \
        [[4.0, 6.25], [0, 0], [0.0, 0.0]]


def test_reduce_by_hand():
    x = torch.tensor([[0.0, 1.0], [2.0, 1.0], [1.0, 1.0], [2.0, 3.0]], dtype=F64)
    assert Observable("n", "firm.x", "count").reduce(x).tolist() == [5.0, 6.0]
    assert Observable("m", "firm.x", "mean").reduce(x).tolist() == [1.25, 1.5]
    assert Observable("v", "firm.x", "var").reduce(x).tolist() == [0.6875, 0.75]
    # a category of a categorical state: how many nodes hold its code
    assert Observable("c", "firm.x", "count", category="closed").reduce(x, MODES).tolist() == [2.0, 0.0]


def test_observable_declarations_are_checked():
    with pytest.raises(ConfigError, match=r"observable 'x': kind must be one of \['count', 'sum', 'mean', 'var'\]"):
        Observable("x", "firm.level", "median")
    with pytest.raises(ConfigError, match="style must be 'line' or 'bar'"):
        Observable("x", "firm.level", "mean", style="pie")
    with pytest.raises(ConfigError, match="needs name and source.*unknown \\['colour'\\]"):
        Observable.from_config({"name": "x", "source": "firm.level", "colour": "red"})
    with pytest.raises(ConfigError, match="needs name and source"):
        Observable.from_config({"name": "x"})
    o = Observable.from_config({"name": "x", "source": "firm.level", "kind": "mean", "by": ["sector"]})
    assert o.node_type == "firm" and o.by == ("sector",)


# --------------------------------------------------------------------------- outcomes


def trajectory(x) -> Trajectory:
    x = torch.as_tensor(x, dtype=F64)
    return Trajectory(series={"x": x}, grouped={}, labels={}, observables={"x": Observable("x", "firm.level", "mean")},
                      num_nodes={"firm": 4})


# [T + 1, R] with T = 3, two replicates
X = [[1.0, 0.0], [3.0, 2.0], [2.0, 5.0], [2.0, 1.0]]


@pytest.mark.parametrize("reduce, expected", [("final", [2.0, 1.0]), ("max", [3.0, 5.0]), ("argmax", [1.0, 2.0]),
                                              ("total", [8.0, 8.0]), ("mean", [2.0, 2.0])])
def test_outcome_reductions(reduce, expected):
    assert Outcome("o", "x", reduce)(trajectory(X)).tolist() == expected


def test_outcome_normalize_and_complement():
    t = trajectory(X)
    assert Outcome("o", "x", "final", normalize=True)(t).tolist() == [0.5, 0.25]          # / N = 4
    assert Outcome("o", "x", "final", complement=True)(t).tolist() == [2.0, 3.0]          # N - x
    assert Outcome("o", "x", "final", normalize=True, complement=True)(t).tolist() == [0.5, 0.75]  # 1 - x / N


def test_smooth_argmax_by_hand_and_its_limit():
    x = torch.tensor(X, dtype=F64)
    tau = 0.5
    w = torch.softmax(x / (tau * x.max(0).values), dim=0)
    expected = (torch.arange(4, dtype=F64).unsqueeze(1) * w).sum(0)
    assert torch.allclose(smooth_argmax(x, tau), expected, rtol=1e-15, atol=0)
    # column 0: weights e^(x_t / 1.5) over t = 0..3 -> mean step sum_t t e^(x_t/1.5) / sum_t e^(x_t/1.5)
    e = [math.exp(v / 1.5) for v in (1.0, 3.0, 2.0, 2.0)]
    assert math.isclose(float(smooth_argmax(x, tau)[0]), sum(t * v for t, v in enumerate(e)) / sum(e), rel_tol=1e-14)
    assert torch.allclose(smooth_argmax(x, 1e-3), torch.tensor([1.0, 2.0], dtype=F64), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        smooth_argmax(x, 0.0)


def test_smooth_argmax_outcome_is_differentiable():
    x = torch.tensor(X, dtype=F64, requires_grad=True)
    t = Trajectory(series={"x": x}, grouped={}, labels={}, observables={"x": Observable("x", "firm.level", "mean")},
                   num_nodes={"firm": 4})
    o = Outcome("peak", "x", "argmax")
    hard = o(t)
    assert not hard.requires_grad  # the hard argmax is a step index
    soft = o(t, smooth=True, temperature=0.5)
    soft.sum().backward()
    assert bool((x.grad != 0).any())
    assert "tau=0.5" in o.smooth_description(0.5) and Outcome("f", "x").smooth_description(0.5) == "final of x"


def test_outcome_declarations_are_checked():
    with pytest.raises(ConfigError, match=r"outcome 'o': reduce must be one of"):
        Outcome("o", "x", "median")
    with pytest.raises(ConfigError, match="model.outcomes.o: needs series"):
        Outcome.from_config("o", {"reduce": "max"})
    with pytest.raises(ConfigError, match=r"outcome 'o' reads series 'y', which the model does not observe"):
        Outcome("o", "y")(trajectory(X))
    o = Outcome.from_config("o", {"series": "x", "reduce": "total", "doc": "everything"})
    assert (o.name, o.reduce, o.description) == ("o", "total", "everything")


def test_step_zero_events_default_to_zeros_when_only_events_are_observed():
    # no observable is a state: step 0 has nothing to copy the shape of
    model = Model([Ramp()], observables=[{"name": "rise", "source": "firm.rise", "kind": "sum", "by": ["sector"]}],
                  groupings={"sector": {"node_type": "firm"}})
    traj = model(supply_graph(num_firms=5), steps=2, replicates=3)
    assert traj.series["rise"].shape == (3, 3) and traj.series["rise"][0].abs().sum() == 0
    assert traj.grouped["sector"]["rise"].shape == (3, 3, 3) and traj.grouped["sector"]["rise"][0].abs().sum() == 0
    assert bool((traj.series["rise"][1:] > 0).all())


def test_an_unused_grouping_is_not_built():
    model = Model([Ramp()], observables=[{"name": "high", "source": "firm.high", "kind": "count"}],
                  groupings={"sector": Grouping("sector", "firm")})
    assert "sector" not in model.requirements().groupings
    assert model(supply_graph(), steps=1).grouped == {}


def test_grouped_means_use_each_graphs_own_group_sizes():
    # Run after run on fresh graphs (a new Graph each call, freed after it): a graph's id may be that of an earlier
    # one, whose group sizes must not be reused.  In CPython ids are reused within a few runs like these.
    model = Model([Ramp()], groupings={"sector": {"node_type": "firm"}},
                  observables=[{"name": "level_mean", "source": "firm.level", "kind": "mean", "by": ["sector"]}])
    for seed in range(30):
        data = supply_graph(num_firms=6 + seed % 4, seed=seed)
        traj = model(data, steps=1, dtype=F64)
        level = traj.final_state["firm.level"][:, 0]
        sector = data["firm"].sector
        expected = torch.zeros(3, dtype=F64).index_add_(0, sector, level) / torch.bincount(sector, minlength=3)
        assert torch.allclose(traj.grouped["sector"]["level_mean"][-1, :, 0], expected, rtol=1e-14, atol=0), seed
