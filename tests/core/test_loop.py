"""The model: wiring checked at construction, the plan, the step, and properties of the unrolled run
(layout invariance, replicate columns, checkpointing, expected mode, gradients), on the toy supply chain."""
from __future__ import annotations

import math

import pytest
import torch

from lpm_graph.core import (CounterRNG, EventSpec, FieldSpec, Grouping, Model, Observable, Output, ParamSpec, Process,
                            Read, Requirements, StateSpec, flush_denormals)
from lpm_graph.core.params import GROUP
from lpm_graph.errors import ConfigError, PopulationGraphError
from tests.core.toys import (SUPPLIES, Deliver, Failure, Ship, Stockroom, Supply, permute_nodes, supply_chain,
                             supply_graph)

F64 = torch.float64


class Declared(Process):
    """A process that only declares (its forward does nothing): for the wiring checks."""

    def __init__(self, name, role="update", reads=(), fields=(), state=(), events=(), params=(), streams=(),
                 observables=(), outcomes=()):
        super().__init__(name)
        self.role = role
        self._decl = dict(reads=list(reads), fields=list(fields), state=list(state), events=list(events),
                          params=list(params), streams=list(streams), observables=list(observables),
                          outcomes=list(outcomes))

    def reads(self):
        return self._decl["reads"]

    def field_specs(self):
        return self._decl["fields"]

    def state_specs(self):
        return self._decl["state"]

    def event_specs(self):
        return self._decl["events"]

    def param_specs(self):
        return self._decl["params"]

    def streams(self):
        return self._decl["streams"]

    def observables(self):
        return self._decl["observables"]

    def outcomes(self):
        return self._decl["outcomes"]

    def forward(self, ctx, state, fields):
        return Output()


STOCK = StateSpec("firm", "stock", "continuous")
SEE_STOCK = Observable("stock", "firm.stock", "mean")


def owner(name="owner", **kw):
    """A process that owns firm.stock and observes it (a model must observe something)."""
    return Declared(name, state=[STOCK], observables=[SEE_STOCK], **kw)


# --------------------------------------------------------------------------- wiring


def test_a_read_nobody_produces_names_the_process_and_the_nearest_field():
    with pytest.raises(ConfigError, match=r"process 'buyer' reads firm.demand, which no process before it writes or "
                                          r"owns; did you mean 'firm.demands'\?.*Add the process that produces it"):
        Model([owner(), Declared("seller", fields=[FieldSpec("firm", "demands")]),
               Declared("buyer", reads=["firm.demand"])])


def test_a_read_before_the_writer_says_which_to_move():
    with pytest.raises(ConfigError, match=r"process 'buyer' reads field firm.demand before 'seller' writes it; "
                                          r"move 'seller' before 'buyer'"):
        Model([owner(), Declared("buyer", reads=["firm.demand"]),
               Declared("seller", fields=[FieldSpec("firm", "demand")])])


def test_an_optional_read_needs_no_writer_but_an_early_one_is_still_refused():
    Model([owner(), Declared("buyer", reads=[Read("firm.demand", optional=True, default=1.0)])])
    with pytest.raises(ConfigError, match=r"reads field firm.demand before 'seller' writes it"):
        Model([owner(), Declared("buyer", reads=[Read("firm.demand", optional=True, default=1.0)]),
               Declared("seller", fields=[FieldSpec("firm", "demand")])])


def test_a_read_of_state_needs_its_owner_anywhere_in_the_step():
    Model([Declared("early", reads=["firm.stock"]), owner()])   # state is read at the start of the step


def test_two_owners_of_one_state():
    with pytest.raises(ConfigError, match=r"state firm.stock is owned by both 'a' and 'b'; a state has one owner"):
        Model([owner("a"), owner("b")])


def test_two_emitters_of_one_event():
    ev = EventSpec("firm", "sold")
    with pytest.raises(ConfigError, match=r"event firm.sold is emitted by both 'a' and 'b'"):
        Model([owner(), Declared("a", events=[ev]), Declared("b", events=[ev])])


@pytest.mark.parametrize("first, second", [(None, None), ("sum", None), (None, "sum"), ("sum", "product")])
def test_two_writers_of_a_field_must_say_how_they_combine(first, second):
    with pytest.raises(ConfigError, match=r"field retailer.received is written by both 'a' and 'b' but does not say "
                                          r"how they combine \(combine: sum or product"):
        Model([owner(), Declared("a", fields=[FieldSpec("retailer", "received", combine=first)]),
               Declared("b", fields=[FieldSpec("retailer", "received", combine=second)])])


def test_a_field_that_is_also_a_state():
    with pytest.raises(ConfigError, match=r"process 'w' writes field firm.stock, which is also a state \(owned by "
                                          r"'owner'\); give the field another name"):
        Model([owner(), Declared("w", fields=[FieldSpec("firm", "stock")])])


def test_two_processes_with_one_name():
    with pytest.raises(ConfigError, match=r"two processes are named 'supply' \(Supply and Supply\); give one another "
                                          r"name"):
        Model([Supply(), Supply()])
    # named apart, their parameters are apart too
    rate = [ParamSpec("rate", default=1.0)]
    model = Model([owner(), Declared("a", params=rate), Declared("b", params=rate)], params={"b.rate": 2.0})
    assert (float(model.params["a.rate"]), float(model.params["b.rate"])) == (1.0, 2.0)


def test_an_unknown_role():
    with pytest.raises(ConfigError, match=r"process 'x' \(Declared\) has role 'decision'; roles: \['environment'"):
        Model([owner(), Declared("x", role="decision")])


def test_duplicate_random_streams():
    with pytest.raises(ConfigError, match=r"random stream 'shock' of node type 'firm' is drawn by both 'supply' and "
                                          r"'copy'.*Rename one process"):
        Model([Supply(), Declared("copy", streams=[("firm", "shock")])])
    Model([Supply(), Declared("other", streams=[("retailer", "shock")])])  # another node type's stream is another


def test_a_missing_parameter():
    with pytest.raises(ConfigError, match=r"model.params.p.rate is missing: process 'p' \(Declared\) reads it "
                                          r"\(orders per day, 1/day\); set model.params.p.rate"):
        Model([owner(), Declared("p", params=[ParamSpec("rate", "positive", unit="1/day", doc="orders per day")])])


def test_an_unknown_parameter_suggests_the_nearest():
    with pytest.raises(ConfigError, match=r"model.params.supply.growht is not read by any process of the model; "
                                          r"did you mean 'supply.growth'\?"):
        Model([Supply()], params={"supply": {"growht": 1.0}})
    with pytest.raises(ConfigError, match=r"model.params.weather.rain is not read by any process of the model "
                                          r"\(parameters read: \['supply.decay', 'supply.growth', 'supply.initial'\]"):
        Model([Supply()], params={"weather.rain": 1.0})


def test_a_parameter_of_the_wrong_shape_or_domain():
    with pytest.raises(ConfigError, match=r"model.params.supply.growth is shape \[2\] but process 'supply' reads it as "
                                          r"scalar; give one number"):
        Model([Supply()], params={"supply": {"growth": [1.0, 2.0]}})
    with pytest.raises(ConfigError, match=r"model.params.supply.decay must be a probability in \[0, 1\], got 1.5"):
        Model([Supply()], params={"supply.decay": 1.5})


def test_a_per_group_parameter_is_checked_against_the_graphs_groups():
    # sector has no bins or labels: its size comes from the graph, so the shape is checked when it is prepared
    p = Declared("p", params=[ParamSpec("rate", shape=(GROUP,), grouping="sector", default=1.0)])
    groupings = {"sector": {"node_type": "firm"}}
    model = Model([owner(), p], groupings=groupings, params={"p.rate": [1.0, 2.0]})
    with pytest.raises(ConfigError, match=r"model.params.p.rate is shape \[2\] but process 'p' reads it as scalar or "
                                          r"\[3\] \(one per sector group\)"):
        model.prepare(supply_graph())
    Model([owner(), p], groupings=groupings, params={"p.rate": [1.0, 2.0, 3.0]}).prepare(supply_graph())
    with pytest.raises(ConfigError, match=r"parameter p.rate has one value per 'sector' group, but model.groupings "
                                          r"does not define 'sector'"):
        Model([owner(), p])


def test_a_scalar_for_a_per_group_parameter_needs_no_grouping_attribute():
    # one number for every sector reads no sector: a graph without the attribute is prepared and run; a vector
    # (or a time-varying vector) needs the grouping and so its attribute
    p = Declared("p", params=[ParamSpec("rate", shape=(GROUP,), grouping="sector", default=1.0)])
    groupings = {"sector": {"node_type": "firm"}}
    bare = supply_graph()
    del bare["firm"].sector
    for params, time_varying in (({"p.rate": 2.0}, None), ({"p.rate": [2.0, 3.0]}, {"p.rate": 5})):
        model = Model([owner(), p], groupings=groupings, params=params, time_varying=time_varying)
        assert "sector" not in model.requirements().groupings
        graph = model.prepare(bare)
        assert "sector" not in graph.groupings
        model(graph, steps=2)
    for params, time_varying in (({"p.rate": [1.0, 2.0, 3.0]}, None), ({"p.rate": [[1.0, 2.0, 3.0]]}, {"p.rate": 5})):
        model = Model([owner(), p], groupings=groupings, params=params, time_varying=time_varying)
        assert "sector" in model.requirements().groupings
        with pytest.raises(PopulationGraphError, match="sector"):
            model.prepare(bare)
        assert "sector" in model.prepare(supply_graph()).groupings


def test_reserved_namespaces_pass_through():
    model = Model([Supply()], params={"observation": {"dispersion": 2.0}})
    assert float(model.params["observation.dispersion"]) == 2.0


def test_observables_and_outcomes_must_read_what_exists():
    with pytest.raises(ConfigError, match=r"observable 'x' reads firm.stok, which is neither a state nor an event of "
                                          r"the model; did you mean 'firm.stock'\?"):
        Model([Supply()], observables=[{"name": "x", "source": "firm.stok", "kind": "mean"}])
    with pytest.raises(ConfigError, match=r"outcome 'o' reduces series 'stok', which the model does not observe; "
                                          r"did you mean 'stock'\?"):
        Model([Supply()], outcomes={"o": {"series": "stok"}})
    with pytest.raises(ConfigError, match="the model observes nothing"):
        Model([Declared("x", state=[STOCK])])


@pytest.mark.parametrize("spec, match", [
    ({"name": "x", "source": "firm.failed", "kind": "mean"}, r"a indicator state \(firm.failed\) is not observed as "
                                                             r"'mean'"),
    ({"name": "x", "source": "firm.stock", "kind": "count"}, r"a continuous state \(firm.stock\) is not observed as "
                                                             r"'count'"),
    ({"name": "x", "source": "firm.failed", "kind": "count", "category": "on"}, r"category 'on' for the indicator"),
    ({"name": "x", "source": "firm.failures", "kind": "count"}, r"an event \(firm.failures\) is observed as 'sum'"),
    ({"name": "x", "source": "firm.stock", "kind": "mean", "by": ["region"]}, r"grouped by 'region', which "
                                                                              r"model.groupings does not define"),
    ({"name": "x", "source": "retailer.inventory", "kind": "mean", "by": ["sector"]}, r"\(on retailer\) cannot be "
                                                                                      r"grouped by 'sector', a "
                                                                                      r"grouping of firm"),
    ({"name": "stock", "source": "firm.failed", "kind": "count"}, r"two observables are named 'stock'"),
])
def test_observables_must_fit_their_source(spec, match):
    with pytest.raises(ConfigError, match=match):
        Model(supply_chain(), observables=[spec], groupings={"sector": {"node_type": "firm"}})


def test_a_process_grouping_by_an_undefined_grouping():
    class Grouped(Declared):
        def requirements(self):
            return Requirements(groupings={"sector": Grouping("sector", "firm")})

    with pytest.raises(ConfigError, match=r"process 'g' groups by 'sector', which model.groupings does not define"):
        Model([owner(), Grouped("g")])


def test_a_process_may_name_a_grouping_and_gets_the_models_definition():
    class Named(Declared):
        def requirements(self):
            return Requirements(groupings={"sector": None})  # a name: model.groupings defines it

    model = Model([owner(), Named("g")], groupings={"sector": {"node_type": "firm"}})
    graph = model.prepare(supply_graph())
    assert graph.group_sizes()["sector"] == 3 and graph.group_index("sector").numel() == 6
    with pytest.raises(ConfigError, match=r"process 'g' groups by 'sector', which model.groupings does not define"):
        Model([owner(), Named("g")])


def test_settings_are_checked():
    for dt in (0, -1.0, True, "1"):
        with pytest.raises(ConfigError, match="model.dt must be a positive number"):
            Model([Supply()], dt=dt)
    with pytest.raises(ConfigError, match="model.mode"):
        Model([Supply()], mode="fast")
    model = Model([Supply()])
    for steps in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="steps must be a positive integer"):
            model(supply_graph(), steps=steps)
    with pytest.raises(ConfigError, match="replicates must be a positive integer"):
        model(supply_graph(), steps=1, replicates=0)


# --------------------------------------------------------------------------- processes by name, the plan


def test_mapping_form_processes_are_named_by_their_keys():
    model = Model({"mill": Supply(), "failure": Failure(), "ship": Ship(), "deliver": Deliver(),
                   "stockroom": Stockroom(), "removed": None},
                  params={"mill": {"growth": 2.0}})
    assert [p.name for p in model.order] == ["mill", "failure", "ship", "deliver", "stockroom"]
    assert float(model.params["mill.growth"]) == 2.0 and "supply.growth" not in model.params
    assert model.process("mill").stream("shock") == "mill.shock"
    with pytest.raises(KeyError, match="no process named 'supply'"):
        model.process("supply")


def test_mapping_form_refuses_a_conflicting_name_a_bad_key_and_a_non_process():
    with pytest.raises(ConfigError, match=r"model.processes.mill is named 'bakery'; a mapping's key names its "
                                          r"process, so drop name: or use the key 'bakery'"):
        Model({"mill": Supply(name="bakery")})
    Model({"mill": Supply(name="mill")})
    with pytest.raises(ConfigError, match=r"the key 'a.b' names a process and must be an identifier"):
        Model({"a.b": Supply()})
    with pytest.raises(ConfigError, match=r"model.processes.mill must be a process .* got dict"):
        Model({"mill": {"_target_": "Supply"}})
    with pytest.raises(ConfigError, match=r"model.environment\[0\] must be a process"):
        Model([Supply()], environment=["closure"])


def test_environment_then_behaviour_then_processes():
    env, beh = Declared("env", role="environment"), Declared("beh", role="behaviour")
    model = Model([Supply()], behavior=[beh], environment=[env])
    assert [p.name for p in model.order] == ["env", "beh", "supply"]


def test_plan_lists_processes_in_order_with_their_declarations():
    model = Model(supply_chain())
    rows = model.plan()
    assert [(r["order"], r["name"], r["role"], r["class"]) for r in rows] == [
        (1, "supply", "update", "Supply"), (2, "failure", "update", "Failure"), (3, "ship", "emission", "Ship"),
        (4, "deliver", "interaction", "Deliver"), (5, "stockroom", "update", "Stockroom")]
    ship, deliver = rows[2], rows[3]
    assert ship["reads"] == ["firm.stock", "firm.ship_factor?"] and ship["writes"] == ["firm.shipment"]
    assert ship["params"] == ["ship.share"]
    assert deliver["writes"] == ["retailer.received (sum)"] and deliver["owns"] == [] and deliver["params"] == []
    assert rows[0]["owns"] == ["firm.stock"] and rows[0]["events"] == ["firm.produced"]
    assert rows[0]["params"] == ["supply.growth", "supply.decay", "supply.initial"]


def test_describe_is_the_plan_then_parameters_observables_and_outcomes():
    model = Model(supply_chain(), params={"supply": {"growth": 1.5}}, learnable=["ship.share"],
                  outcomes={"final_inventory": {"series": "inventory"}})
    text = model.describe()
    lines = text.splitlines()
    assert lines[0] == "step (mode=stochastic, dt=1):"
    order = [lines.index(f"  {i}. {n}") for i, n in enumerate(
        ["supply [update] Supply", "failure [update] Failure", "ship [emission] Ship",
         "deliver [interaction] Deliver", "stockroom [update] Stockroom"], start=1)]
    assert order == sorted(order)
    assert "       writes  retailer.received (sum)" in lines
    assert "  supply.growth = 1.5  nonnegative, scalar" in lines
    assert "  ship.share = 0.5 (learnable)  probability, scalar" in lines
    assert "  then: observe stock, produced, failed, failures, inventory" in lines
    assert "  failed: count of firm.failed" in lines and "  final_inventory: final of inventory" in lines


# --------------------------------------------------------------------------- the step


class Spy(Process):
    """Emits what it sees of firm.stock and of a field, for checks of the step's data flow."""

    default_name = "spy"

    def __init__(self, field="firm.ship_factor", name=None):
        super().__init__(name)
        self.field = field

    def reads(self):
        return ["firm.stock", Read(self.field, optional=True, default=1.0)]

    def event_specs(self):
        return [EventSpec("firm", "seen_stock"), EventSpec("firm", "seen_field")]

    def forward(self, ctx, state, fields):
        stock = state["firm.stock"]
        return Output(events={"firm.seen_stock": stock, "firm.seen_field": stock * 0 + fields.get(self.field, 1.0)})


SPY_OBS = [{"name": "seen_stock", "source": "firm.seen_stock", "kind": "sum"},
           {"name": "seen_field", "source": "firm.seen_field", "kind": "sum"},
           {"name": "stock_total", "source": "firm.stock", "kind": "mean"}]


def test_a_later_process_sees_the_state_an_earlier_one_returned():
    before = Model([Spy(), Supply()], observables=SPY_OBS).double()(supply_graph(), steps=3, seed=1)
    after = Model([Supply(), Spy()], observables=SPY_OBS).double()(supply_graph(), steps=3, seed=1)
    n = 6
    # after Supply: this step's new stock (the row's own value); before it: the previous row's
    assert torch.allclose(after.series["seen_stock"][1:], n * after.series["stock_total"][1:], rtol=1e-14, atol=0)
    assert torch.allclose(before.series["seen_stock"][1:], n * before.series["stock_total"][:-1], rtol=1e-14, atol=0)


def test_an_optional_field_without_writer_reads_its_default_and_writers_combine():
    class Factor(Declared):
        def __init__(self, name, value):
            super().__init__(name, role="environment", fields=[FieldSpec("firm", "ship_factor", combine="product")])
            self.v = value

        def forward(self, ctx, state, fields):
            return Output(fields={"firm.ship_factor": torch.tensor(self.v, dtype=ctx.dtype)})

    none = Model([Supply(), Spy()], observables=SPY_OBS).double()(supply_graph(), steps=2)
    assert torch.equal(none.series["seen_field"][1:], torch.full((2, 1), 6.0, dtype=F64))
    two = Model([Supply(), Spy()], environment=[Factor("a", 0.5), Factor("b", 3.0)],
                observables=SPY_OBS).double()(supply_graph(), steps=2)
    assert torch.equal(two.series["seen_field"][1:], torch.full((2, 1), 6.0 * 1.5, dtype=F64))


def test_sum_fields_from_two_interactions_add_up():
    d = supply_graph()
    other = ("firm", "backorder", "retailer")
    d[other].edge_index = torch.tensor([[0, 1, 2], [2, 2, 0]])
    obs = [{"name": "arrivals", "source": "retailer.arrivals", "kind": "sum"}]
    chain = [Supply(), Ship(), Deliver(), Stockroom()]
    one = Model(chain, observables=obs).double()(d, steps=3, seed=2)
    alone = Model([Supply(), Ship(), Deliver(other, name="back"), Stockroom()], observables=obs).double()(
        d, steps=3, seed=2)
    both = Model([Supply(), Ship(), Deliver(), Deliver(other, name="back"), Stockroom()], observables=obs).double()(
        d, steps=3, seed=2)
    assert torch.allclose(both.series["arrivals"], one.series["arrivals"] + alone.series["arrivals"], rtol=1e-14,
                          atol=0)


def test_init_must_return_exactly_the_owned_state_in_its_shape():
    class Partial(Supply):
        def init(self, ctx):
            return Output(state={"firm.other": ctx.zeros("firm")})

    class Flat(Supply):
        def init(self, ctx):
            return Output(state={"firm.stock": torch.zeros(6, dtype=ctx.dtype)})

    with pytest.raises(ConfigError, match=r"process 'supply': init\(\) returned state \['firm.other'\] but the process "
                                          r"owns \['firm.stock'\]"):
        Model([Partial()])(supply_graph(), steps=1)
    with pytest.raises(ConfigError, match=r"initial firm.stock has shape \(6,\), expected \[6, 2, ...\]"):
        Model([Flat()])(supply_graph(), steps=1, replicates=2)


def test_a_time_varying_parameter_takes_its_period_entry():
    obs = [{"name": "produced", "source": "firm.produced", "kind": "sum"}]
    const = Model([Supply()], observables=obs)(supply_graph(), steps=6, seed=1)
    varying = Model([Supply()], observables=obs, params={"supply": {"growth": [1.0, 0.0]}},
                    time_varying={"supply": {"growth": 3}})(supply_graph(), steps=6, seed=1)
    # steps 0-2 (rows 1-3) use entry 0 = the default 1.0 (the same numbers), steps 3-5 entry 1 = 0
    assert torch.equal(varying.series["produced"][:4], const.series["produced"][:4])
    assert torch.equal(varying.series["produced"][4:], torch.zeros(3, 1))
    assert bool((const.series["produced"][4:] > 0).all())


def test_time_varying_edges_drive_an_interaction_window_by_window():
    d = supply_graph()
    window = torch.arange(d[SUPPLIES].edge_index.size(1)) % 2 * 2     # windows 0 and 2 of period 3: 1 is empty
    d[SUPPLIES].time = window
    d[SUPPLIES].time_period = 3
    obs = [{"name": "arrivals", "source": "retailer.arrivals", "kind": "sum"}]
    chain = [Supply(), Ship(), Deliver(), Stockroom()]
    traj = Model(chain, observables=obs).double()(d, steps=7, seed=2)
    # the firms' shipments do not depend on the edges: step t delivers what a static graph of window t mod 3's
    # edges delivers in step t
    for w, steps in ((0, [0, 3, 6]), (2, [2, 5])):
        static = supply_graph()
        keep = window == w
        static[SUPPLIES].edge_index = d[SUPPLIES].edge_index[:, keep]
        static[SUPPLIES].edge_weight = d[SUPPLIES].edge_weight[keep]
        ref = Model(chain, observables=obs).double()(static, steps=7, seed=2).series["arrivals"]
        rows = [t + 1 for t in steps]  # row t + 1 holds step t
        assert torch.allclose(traj.series["arrivals"][rows], ref[rows], rtol=1e-14, atol=0), w
        assert bool((ref[rows] > 0).all())
    assert torch.equal(traj.series["arrivals"][[2, 5]], torch.zeros(2, 1, dtype=F64))  # steps 1, 4: no edges


def test_overrides_replace_parameter_values_and_take_gradients():
    model = Model([Supply()], observables=[{"name": "produced", "source": "firm.produced", "kind": "sum"}]).double()
    base = model(supply_graph(), steps=3, seed=4).series["produced"]
    growth = torch.tensor(2.0, dtype=F64, requires_grad=True)
    over = model(supply_graph(), steps=3, seed=4, overrides={"supply.growth": growth}).series["produced"]
    assert torch.allclose(over, 2.0 * base, rtol=1e-14, atol=0)   # produced = growth * u
    over.sum().backward()
    assert math.isclose(float(growth.grad), float(base.sum()), rel_tol=1e-12)
    with pytest.raises(ConfigError, match=r"overrides name \['supply.speed'\]"):
        model(supply_graph(), steps=1, overrides={"supply.speed": growth})


# --------------------------------------------------------------------------- properties of the unrolled run


def learnable_chain(**kw):
    names = ["supply.growth", "supply.decay", "ship.share", "failure.hazard"]
    return Model(supply_chain(), learnable=names, **kw).double()


def loss(traj):
    return (traj.series["inventory"][-1].sum() + 0.3 * traj.series["stock"].sum()
            + 2.0 * traj.series["failed"][-1].sum())


@pytest.mark.parametrize("node_type", ["firm", "retailer"])
def test_permuting_the_nodes_of_a_type_with_their_uids_changes_nothing(node_type):
    data = supply_graph(num_firms=40, num_retailers=7, seed=5)
    n = data[node_type].num_nodes
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    model = Model(supply_chain(), params={"failure": {"hazard": 0.2}}).double()
    a = model(data, steps=12, seed=9, replicates=3)
    b = model(permute_nodes(data, node_type, perm), steps=12, seed=9, replicates=3)
    assert float(a.series["failed"][-1].detach().sum()) > 0   # failures happened: the hard events are compared too
    for k in ("failed", "failures"):
        assert torch.equal(a.series[k], b.series[k]), k
    for k in ("stock", "produced", "inventory"):  # sums over nodes in another order: float64 round-off only
        assert torch.allclose(a.series[k], b.series[k], rtol=1e-13, atol=0), k
    for key, value in a.final_state.items():
        moved = value[perm] if key.startswith(node_type) else value
        if key == "retailer.inventory":
            assert torch.allclose(b.final_state[key], moved, rtol=1e-13, atol=0)
        else:  # per-firm state is elementwise: identical
            assert torch.equal(b.final_state[key], moved), key


def test_same_seed_same_run_other_seed_other_run():
    model = Model(supply_chain())
    a, b, c = (model(supply_graph(), steps=5, seed=s) for s in (4, 4, 5))
    assert all(torch.equal(a.series[k], b.series[k]) for k in a.series)
    assert not torch.equal(a.series["stock"], c.series["stock"])


# SplitMix64's finaliser and its inverse (unsigned 64-bit Python ints), to find the seed of one replicate
_MASK = (1 << 64) - 1
_GOLDEN, _M1, _M2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _final(z):
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return z ^ (z >> 31)


def _unfinal(z):
    z ^= (z >> 31) ^ (z >> 62)
    z = (z * pow(_M2, -1, 1 << 64)) & _MASK
    z ^= (z >> 27) ^ (z >> 54)
    z = (z * pow(_M1, -1, 1 << 64)) & _MASK
    return z ^ (z >> 30) ^ (z >> 60)


def replicate_seed(seed: int, r: int) -> int:
    """The seed whose replicate 0 is replicate ``r`` of ``seed``: replicate r is keyed by mix(mix(seed) + r),
    mix(v) = final(v + golden), so s' = final^-1(mix(seed) + r) - golden has mix(mix(s') + 0) the same key."""
    target = (_final((seed + _GOLDEN) & _MASK) + r) & _MASK
    return (_unfinal(target) - _GOLDEN) & _MASK


def test_replicate_columns_are_single_runs_with_the_replicates_keys():
    uid = torch.arange(5) * 11
    for r in range(3):
        s = replicate_seed(7, r)
        assert _unfinal(_final(s)) == s
        for nt in ("person", "firm"):
            one = CounterRNG(uid, s, 1, nt).bits(2, "x")
            assert torch.equal(one[:, 0], CounterRNG(uid, 7, 3, nt).bits(2, "x")[:, r])
    model = Model(supply_chain(), params={"failure": {"hazard": 0.3}}).double()
    wide = model(supply_graph(), steps=8, seed=7, replicates=3)
    assert float(wide.series["failed"][-1].sum()) > 0
    for r in range(3):
        single = model(supply_graph(), steps=8, seed=replicate_seed(7, r), replicates=1)
        for k in wide.series:  # counts exactly; means may sum [N, 1] and [N, 3] in another order
            exact = k in ("failed", "failures")
            assert torch.allclose(single.series[k][:, 0], wide.series[k][:, r], rtol=0 if exact else 1e-14,
                                  atol=0), (k, r)
        for k in wide.final_state:
            assert torch.equal(single.final_state[k][:, 0], wide.final_state[k][:, r]), (k, r)
    # the first columns of a wider run are the narrower run
    two = model(supply_graph(), steps=8, seed=7, replicates=2)
    assert all(torch.equal(two.final_state[k], wide.final_state[k][:, :2]) for k in wide.final_state)


@pytest.mark.parametrize("surrogate", ["gumbel", "straight_through"])
def test_checkpointing_gives_the_same_values_and_gradients(surrogate):
    runs = []
    for ckpt in (False, True):
        model = learnable_chain(checkpoint=ckpt, surrogate=surrogate, params={"failure": {"hazard": 0.2}})
        traj = model(supply_graph(), steps=10, seed=3, replicates=2)
        loss(traj).backward()
        runs.append((traj, {n: model.params.raw(n).grad.clone() for n in model.params.learnable}))
    (a, ga), (b, gb) = runs
    assert float(a.series["failed"][-1].detach().sum()) > 0
    for k in a.series:
        assert torch.equal(a.series[k], b.series[k]), k
    for n in ga:
        assert float(ga[n]) != 0 and torch.allclose(ga[n], gb[n], rtol=1e-13, atol=0), n


def test_checkpointing_is_off_without_gradients():
    model = learnable_chain(checkpoint=True)
    with torch.no_grad():
        traj = model(supply_graph(), steps=3)
    assert not traj.series["stock"].requires_grad


def test_expected_mode_runs_one_replicate_of_the_mean_field():
    model = Model(supply_chain(), mode="expected", params={"failure": {"hazard": 0.2}}).double()
    data = supply_graph()
    traj = model(data, steps=6, seed=1, replicates=5)
    assert traj.series["failed"].shape == (7, 1)
    assert all(v.shape[1] == 1 for v in traj.final_state.values())
    # replay by hand: the stock from its uniforms, then failed' = failed + (1 - failed)(1 - exp(-hazard stock'))
    rng = CounterRNG(data["firm"].uid, 1, 1, "firm")
    hazard = float(model.params["failure.hazard"])   # 0.2 as stored (in float32, then converted)
    stock = 2.0 * rng.uniform(-1, "shock", F64)
    failed = torch.zeros_like(stock)
    for t in range(6):
        stock = 0.5 * stock + 1.0 * rng.uniform(t, "shock", F64)
        failed = failed + (1 - failed) * -torch.expm1(-hazard * stock)
        assert torch.allclose(traj.series["failed"][t + 1], failed.sum(0), rtol=1e-14, atol=0), t
    assert torch.allclose(traj.final_state["firm.failed"], failed, rtol=1e-14, atol=0)
    assert bool(((failed > 0) & (failed < 1)).all())   # probabilities, not 0/1 events


def _central_differences(model, f, h=1e-6):
    out = {}
    for name in model.params.learnable:
        raw = model.params.raw(name)
        with torch.no_grad():
            raw += h
            up = float(f())
            raw -= 2 * h
            down = float(f())
            raw += h
        out[name] = (up - down) / (2 * h)
    return out


@pytest.mark.parametrize("mode", ["stochastic", "expected"])
def test_gradients_match_central_finite_differences_in_float64(mode):
    # Stochastic: without the (discrete) failures the chain is smooth in its parameters given the draws, which a
    # seed fixes. Expected: the mean field of the whole chain, failures included.
    if mode == "stochastic":
        procs = [Supply(), Ship(), Deliver(), Stockroom()]
        names = ["supply.growth", "supply.decay", "supply.initial", "ship.share"]
    else:
        procs = supply_chain()
        names = ["supply.growth", "supply.decay", "ship.share", "failure.hazard"]
    model = Model(procs, mode=mode, learnable=names, params={"failure": {"hazard": 0.2}} if mode == "expected"
                  else {}).double()
    graph = model.prepare(supply_graph(), dtype=F64)

    def f():
        traj = model(graph, steps=8, seed=2, replicates=2)
        out = traj.series["inventory"][-1].sum() + 0.3 * traj.series["stock"].sum()
        return out + (2.0 * traj.series["failed"][-1].sum() if "failed" in traj.series else 0.0)

    f().backward()
    fd = _central_differences(model, f)
    for name in names:
        grad = float(model.params.raw(name).grad)
        assert grad != 0 and math.isclose(grad, fd[name], rel_tol=1e-6, abs_tol=1e-9), (name, grad, fd[name])


def test_denormals_are_flushed_only_inside_a_run():
    def denormal_survives():
        return float(torch.tensor([1e-30]) * 1e-10) != 0.0

    assert denormal_survives()
    with flush_denormals():
        assert not denormal_survives()
    assert denormal_survives()
    Model(supply_chain(), mode="expected")(supply_graph(), steps=2)
    assert denormal_survives(), "a model run must not change the process-wide setting"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_matches_cpu_and_has_the_same_gradients():
    runs = []
    for device in ("cpu", "cuda"):
        model = learnable_chain(params={"failure": {"hazard": 0.2}}).to(device)
        graph = model.prepare(supply_graph(num_firms=30, num_retailers=5), dtype=F64).to(device)
        traj = model(graph, steps=10, seed=5, replicates=3)
        loss(traj).backward()
        runs.append((traj, {n: model.params.raw(n).grad.cpu() for n in model.params.learnable}))
    (a, ga), (b, gb) = runs
    assert float(a.series["failed"][-1].detach().sum()) > 0
    for k in a.series:   # the same random numbers on both devices; sums may round differently
        assert torch.allclose(a.series[k], b.series[k].cpu(), rtol=1e-12, atol=1e-12), k
    for n in ga:
        assert torch.isfinite(gb[n]).all() and torch.allclose(ga[n], gb[n], rtol=1e-9, atol=0), n


# --------------------------------------------------------------------------- what a step may return


class Rogue(Process):
    """Returns, at step 2, a state it does not own, or a field or an event it does not declare."""

    role = "update"
    default_name = "rogue"

    def __init__(self, returns, name=None):
        super().__init__(name)
        self.returns = returns

    def forward(self, ctx, state, fields):
        if ctx.t < 2:
            return Output()
        value = torch.zeros_like(state["firm.stock"])
        return Output(**{self.returns[0]: {self.returns[1]: value}})


@pytest.mark.parametrize("returns", [("state", "firm.stock"), ("fields", "firm.anything"),
                                     ("events", "firm.produced")])
def test_a_process_may_return_only_what_it_declares(returns):
    model = Model([Supply(), Rogue(returns)])
    with pytest.raises(ConfigError, match=rf"process 'rogue' \(Rogue\) returned {returns[0]} \['{returns[1]}'\]"):
        model(supply_graph(), steps=4)


class Sometimes(Process):
    """Emits ``firm.sold`` on even steps only."""

    role = "update"
    default_name = "sometimes"

    def event_specs(self):
        return [EventSpec("firm", "sold")]

    def observables(self):
        return [Observable("sold", "firm.sold", "sum")]

    def forward(self, ctx, state, fields):
        if ctx.t % 2:
            return Output()
        return Output(events={"firm.sold": torch.ones(ctx.graph.num_nodes["firm"], ctx.replicates, dtype=ctx.dtype)})


def test_an_event_not_emitted_in_a_step_is_zero_then():
    traj = Model([Sometimes()])(supply_graph(), steps=5, replicates=2)
    n = supply_graph()["firm"].num_nodes
    # step 0 (init) and the odd steps emit nothing; steps t = 0, 2, 4 emit one per firm (rows t + 1)
    assert traj.series["sold"][:, 0].tolist() == [0, n, 0, n, 0, n]


def test_a_vector_state_is_not_observed_whole():
    vector = StateSpec("firm", "levels", "continuous", (3,))
    with pytest.raises(ConfigError, match=r"firm.levels has shape \[3\] per node"):
        Model([Declared("v", state=[vector], observables=[Observable("levels", "firm.levels", "mean")])])


def test_parameters_are_stored_in_the_models_dtype_from_the_config_values():
    # float32 would hold 0.2 as 0.20000000298..., and a float64 run would carry that error
    model = Model([Supply()], params={"supply": {"growth": 0.2}}, dtype=torch.float64)
    assert model.params["supply.growth"].dtype == F64 and float(model.params["supply.growth"]) == 0.2
    assert float(Model([Supply()], params={"supply": {"growth": 0.2}}).params["supply.growth"]) != 0.2


def test_a_field_no_later_process_reads_is_refused_with_the_nearest_name():
    # e.g. a closure of a misspelled venue type: it would run and change nothing
    with pytest.raises(ConfigError, match=r"process 'close' writes field schools.contact_scale, which no later "
                                          r"process reads.*did you mean 'school.contact_scale'"):
        Model([Declared("close", role="environment", fields=[FieldSpec("schools", "contact_scale", per_node=False)]),
               owner(reads=[Read("school.contact_scale", optional=True, default=1.0)])])


# --------------------------------------------------------------------------- main observable and progress


def test_the_main_observable_is_the_first_event_series_unless_named():
    # the chain observes stock (mean), produced (sum), inventory, failed (count), failures (sum), in step order
    assert Model(supply_chain()).main_observable == "produced"
    assert Model(supply_chain(), main_observable="failures").main_observable == "failures"
    assert "  failures: sum of firm.failures (main)" in Model(supply_chain(), main_observable="failures").describe()
    # no event series: the first observable
    assert Model([owner()]).main_observable == "stock"
    with pytest.raises(ConfigError, match=r"model.main_observable = 'failure' is not observed by the model; did you "
                                          r"mean 'failures'"):
        Model(supply_chain(), main_observable="failure")


@pytest.mark.parametrize("ckpt", [False, True])
def test_the_backward_pass_shows_its_progress_through_the_steps(ckpt, monkeypatch, capsys):
    import lpm_graph.core.loop as loop

    bars = []

    class Recorded(loop._BackwardProgress):
        def __init__(self, steps):
            super().__init__(steps)
            bars.append(self)

    monkeypatch.setattr(loop, "_BackwardProgress", Recorded)
    model = learnable_chain(checkpoint=ckpt)
    traj = model(supply_graph(), steps=6, seed=3, progress=True)
    assert len(bars) == 1 and bars[0].bar is None  # nothing before the backward pass
    loss(traj).backward()
    bar = bars[0].bar
    # every step's state receives a gradient (the loss reads the stock at every step): six ticks, then closed
    assert (bar.total, bar.n) == (6, 6)
    assert "backward:" in capsys.readouterr().err
    with torch.no_grad():
        model(supply_graph(), steps=3, progress=True)
    assert len(bars) == 1  # no backward pass, no bar
    model(supply_graph(), steps=3, progress=False)
    assert len(bars) == 1
