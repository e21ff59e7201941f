"""The observed prevalence and the rules' logistic response, written out."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.behavior import RuleBehavior, VenuePrevalence, logistic_response
from lpm_graph.core.graph import Graph
from lpm_graph.core.process import StepContext
from lpm_graph.core.sampling import Sampler
from tests.behavior.conftest import random_venues

TYPES = ["household", "school", "workplace"]


def _ctx(process, data, params=None, R=2, dtype=torch.float64):
    graph = Graph(data, process.requirements(), dtype)
    values = {k: torch.as_tensor(v, dtype=dtype) for k, v in (params or {}).items()}
    return StepContext(0, graph, values, Sampler("expected"), 1.0, R, dtype)


@pytest.mark.parametrize("weighted", [True, False])
def test_prevalence_is_the_share_infectious_among_the_members_of_ones_venues(weighted):
    data = random_venues(16, seed=7, weighted=weighted)
    proc = VenuePrevalence(venue_types=TYPES)
    I = (torch.rand(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) < 0.4).double()
    out = proc(_ctx(proc, data), {"person.I": I}, {}).fields
    for vt in TYPES:
        et = ("person", "member_of", vt)
        src, dst = data[et].edge_index
        w = data[et].edge_weight.double() if weighted else torch.ones(src.numel(), dtype=torch.float64)
        want = torch.zeros(16, 2, dtype=torch.float64)
        for i in range(16):
            mine = (src == i).nonzero().flatten()
            if not mine.numel():
                continue  # no venue of this type: 0
            num = torch.zeros(2, dtype=torch.float64)
            for e in mine:
                v = dst[e]
                members = (dst == v).nonzero().flatten()
                m = (w[members].unsqueeze(1) * I[src[members]]).sum(0) / w[members].sum()
                num += w[e] * m
            want[i] = num / w[mine].sum()
        torch.testing.assert_close(out[f"person.prevalence_{vt}"], want, rtol=1e-12, atol=1e-14)


def test_logistic_response_is_half_its_maximum_at_the_threshold_and_has_the_slope():
    pi = torch.tensor([0.0, 0.05, 0.1, 0.3], dtype=torch.float64)
    r = logistic_response(pi, torch.tensor(40.0, dtype=torch.float64), torch.tensor(0.1, dtype=torch.float64))
    assert float(r[2]) == 0.5
    torch.testing.assert_close(r, 1 / (1 + torch.exp(-40 * (pi - 0.1))))
    # the derivative at the threshold is slope / 4
    p = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    logistic_response(p, torch.tensor(40.0, dtype=torch.float64), torch.tensor(0.1, dtype=torch.float64)).backward()
    assert float(p.grad) == pytest.approx(10.0)


def test_rule_combines_venue_responses_own_state_and_policy_as_independent_reasons():
    data = random_venues(8, seed=1)
    rules = RuleBehavior(["stays_home", "masks"], venue_types=TYPES)
    slope, thr, mx = [30.0, 80.0, 50.0], [0.3, 0.05, 0.1], [0.5, 0.4, 0.2]
    params = {"rules.stays_home_slope": slope, "rules.stays_home_threshold": thr, "rules.stays_home_max": mx,
              "rules.stays_home_own": 0.6, "rules.stays_home_policy": 0.7,
              "rules.masks_slope": 10.0, "rules.masks_threshold": 0.2, "rules.masks_max": 0.3,
              "rules.masks_own": 0.0, "rules.masks_policy": 0.0}
    g = torch.Generator().manual_seed(5)
    pis = {vt: torch.rand(8, 2, generator=g, dtype=torch.float64) * 0.5 for vt in TYPES}
    I = (torch.rand(8, 2, generator=g, dtype=torch.float64) < 0.5).double()
    fields = {f"person.prevalence_{vt}": pis[vt] for vt in TYPES}
    ctx = _ctx(rules, data, params)
    out = rules(ctx, {"person.I": I}, {**fields, "policy.stay_home": torch.tensor(1.0, dtype=torch.float64)})
    sig = torch.sigmoid
    none = torch.ones(8, 2, dtype=torch.float64)
    for k, vt in enumerate(TYPES):
        none = none * (1 - mx[k] * sig(torch.tensor(slope[k]) * (pis[vt] - thr[k])))
    want = 1 - none * (1 - 0.6 * I) * (1 - 0.7)
    torch.testing.assert_close(out.fields["person.stays_home"], want)
    masks = 1 - torch.stack([1 - 0.3 * sig(10 * (pis[vt] - 0.2)) for vt in TYPES]).prod(0)
    torch.testing.assert_close(out.fields["person.masks"], masks)
    # the last decision is kept as state, and observed (mean by age, panel "decisions")
    torch.testing.assert_close(out.state["person.last_stays_home"], want)
    obs = {o.name: o for o in rules.observables()}
    assert obs["stays_home"].kind == "mean" and obs["stays_home"].by == ("age",)
    assert obs["stays_home"].panel == "decisions"
    # without an announcement (no writer: the optional default 0) the policy term drops out
    quiet = rules(ctx, {"person.I": I}, fields).fields["person.stays_home"]
    torch.testing.assert_close(quiet, 1 - none * (1 - 0.6 * I))
    # more prevalence, more staying home (every slope positive)
    more = rules(ctx, {"person.I": I}, {k: v + 0.05 for k, v in fields.items()}).fields["person.stays_home"]
    assert bool((more > quiet).all())
