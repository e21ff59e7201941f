"""The decision-field contract of ``lpm_graph.behavior.base``: names, checks, fields, the kept last decision."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData

from lpm_graph.behavior import Behavior, FixedDecisions, check_decisions, decision_key, last_key
from lpm_graph.core import Model, Output, Process, StateSpec
from lpm_graph.errors import ConfigError


class Reader(Process):
    """Owns ``person.seen``: the running sum of ``person.stays_home`` (so the decision has a reader; it reads
    the other ``decisions`` too)."""

    role = "update"
    default_name = "reader"

    def __init__(self, decisions=("stays_home",)):
        super().__init__()
        self.decisions = list(decisions)

    def state_specs(self):
        return [StateSpec("person", "seen", "continuous", init=0.0)]

    def reads(self):
        return [f"person.{d}" for d in self.decisions] + ["person.seen"]

    def forward(self, ctx, state, fields):
        return Output(state={"person.seen": state["person.seen"] + fields["person.stays_home"]})


class Ramp(Behavior):
    """Decides ``stays_home = (t + 1) / 10 + i / 100`` for node ``i``, in the shape ``shape`` asks for."""

    def __init__(self, shape: str = "nr", **kw):
        super().__init__(["stays_home"], **kw)
        self.shape = shape

    def decide(self, ctx, state, fields):
        n, R = ctx.graph.num_nodes["person"], ctx.replicates
        base = (ctx.t + 1) / 10
        if self.shape == "scalar":
            return {"stays_home": torch.tensor(base, dtype=ctx.dtype)}
        per_node = base + torch.arange(n, dtype=ctx.dtype).unsqueeze(1) / 100
        return {"stays_home": per_node if self.shape == "n1" else per_node.expand(n, R)}


def people(n: int = 6) -> HeteroData:
    d = HeteroData()
    d["person"].num_nodes = n
    d["person"].uid = torch.arange(n)
    d["person"].age = torch.tensor([5.0, 15.0, 25.0, 35.0, 45.0, 55.0])[:n]
    return d


def test_decision_and_last_keys_name_the_node_type_and_decision():
    assert decision_key("person", "avoids_school") == "person.avoids_school"
    assert last_key("household", "stays_home") == "household.last_stays_home"


@pytest.mark.parametrize("bad, match", [
    ("stays_home", "non-empty list"),      # a string is not a list of its characters
    ([], "non-empty list"),
    (["stays_home", "stays_home"], "distinct identifiers"),
    (["stays home"], "distinct identifiers"),
    (["1st"], "distinct identifiers"),
])
def test_check_decisions_refuses_what_is_not_a_list_of_distinct_identifiers(bad, match):
    with pytest.raises(ConfigError, match=rf"Where\.decisions must be .*{match}"):
        check_decisions("Where", bad)
    assert check_decisions("Where", ("stays_home", "masks")) == ["stays_home", "masks"]


def test_behaviour_role_and_decision_fields():
    b = FixedDecisions({"stays_home": 0.2, "masks": 0.1})
    assert b.role == "behavior" and isinstance(b, Behavior)
    assert [f.key for f in b.field_specs()] == ["person.stays_home", "person.masks"]
    assert all(f.unit == "probability" and f.per_node for f in b.field_specs())
    specs = b.state_specs()
    assert [s.key for s in specs] == ["person.last_stays_home", "person.last_masks"]
    assert all(s.kind == "continuous" and s.init == 0.0 for s in specs)  # 0 before the first step
    # the British spelling is the same role
    from lpm_graph.core.process import canonical_role

    assert canonical_role("behaviour") == "behavior"


def test_observables_are_the_mean_last_decision_by_the_grouping_or_in_total():
    by_age = {o.name: o for o in FixedDecisions(["stays_home"], node_type="household").observables()}
    o = by_age["household_stays_home"]   # named by its node type where not people: two types may decide alike
    assert (o.source, o.kind, o.by, o.panel) == ("household.last_stays_home", "mean", ("age",), "decisions")
    assert [o.name for o in FixedDecisions(["stays_home"]).observables()] == ["stays_home"]
    [total] = FixedDecisions(["stays_home"], grouping=None).observables()
    assert total.by == ()
    assert FixedDecisions(["a", "b", "c"]).workspace() == {"person": 3.0}  # one [N, R] tensor a decision


def test_a_subclass_must_implement_decide():
    class Lazy(Behavior):
        pass

    with pytest.raises(TypeError, match="decide"):
        Lazy(["stays_home"])


def test_a_behaviour_that_omits_a_declared_decision_is_named():
    class Forgetful(Ramp):
        def __init__(self):
            Behavior.__init__(self, ["stays_home", "masks"], grouping=None, name="forgetful")
            self.shape = "nr"

    model = Model(processes={"reader": Reader(["stays_home", "masks"])}, behavior={"forgetful": Forgetful()})
    with pytest.raises(ConfigError, match=r"behaviour 'forgetful' \(Forgetful\) decided \['stays_home'\] but "
                                          r"declares \['stays_home', 'masks'\]; missing \['masks'\]"):
        model(people(), steps=1)


@pytest.mark.parametrize("shape", ["nr", "n1", "scalar"])
def test_the_field_is_the_decision_and_the_last_decision_is_kept_per_node_and_replicate(shape):
    R, steps = 3, 4
    model = Model(processes={"reader": Reader()}, behavior={"ramp": Ramp(shape, grouping="age")},
                  groupings={"age": {"node_type": "person", "attribute": "age", "bins": [0, 30]}},
                  dtype=torch.float64)
    traj = model(people(), steps=steps, replicates=R, dtype=torch.float64)
    n = 6
    offset = torch.zeros(n, 1, dtype=torch.float64) if shape == "scalar" else \
        torch.arange(n, dtype=torch.float64).unsqueeze(1) / 100
    # the reader saw the decision of every step: sum_t (t+1)/10 + steps * i/100
    seen = sum((t + 1) / 10 for t in range(steps)) + steps * offset
    torch.testing.assert_close(traj.final_state["person.seen"], seen.expand(n, R))
    last = traj.final_state["person.last_stays_home"]
    assert last.shape == (n, R)  # expanded to every replicate whatever shape the behaviour decided in
    torch.testing.assert_close(last, (steps / 10 + offset).expand(n, R))
    # the observable: 0 before the first step, then the mean of the step's decision, overall and by age group
    want = torch.tensor([0.0] + [(t + 1) / 10 for t in range(steps)], dtype=torch.float64).unsqueeze(1)
    torch.testing.assert_close(traj.series["stays_home"], (want + (want > 0) * offset.mean()).expand(-1, R))
    young = traj.group("stays_home", "age", traj.labels["age"][0])
    torch.testing.assert_close(young, (want + (want > 0) * offset[:3].mean()).expand(-1, R))
