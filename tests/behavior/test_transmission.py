"""Decisions change the venue transmission: against the force written out edge by edge, gradients, no decision."""
from __future__ import annotations

import pytest
import torch

from lpm_graph.core.graph import Graph
from lpm_graph.core.process import StepContext
from lpm_graph.core.sampling import Sampler
from lpm_graph.models.epidemic import VenueTransmission
from tests.behavior.conftest import VENUES, random_venues, reference_force

BETAS = {"household": 0.4, "school": 0.25, "workplace": 0.15, "community": 0.3}


def _force(data, x, fields, dtype=torch.float64):
    """The process alone, on a graph laid out for it, as a step runs it."""
    tr = VenueTransmission(venue_types=list(VENUES))
    graph = Graph(data, tr.requirements(), dtype)
    params = {f"transmission.beta_{k}": torch.tensor(v, dtype=dtype) for k, v in BETAS.items()}
    ctx = StepContext(0, graph, params, Sampler("expected"), 1.0, x.size(1), dtype)
    return tr(ctx, {}, {"person.infectiousness": x, **fields}).fields["person.force_of_infection"]


@pytest.mark.parametrize("weighted", [True, False])
def test_presence_matches_the_force_written_out_edge_by_edge(weighted):
    data = random_venues(15, seed=3, weighted=weighted)
    g = torch.Generator().manual_seed(1)
    n, R = 15, 3
    x = torch.rand(n, R, generator=g, dtype=torch.float64)
    home = torch.rand(n, R, generator=g, dtype=torch.float64)
    avoid = {"community": torch.rand(n, R, generator=g, dtype=torch.float64),
             "household": torch.rand(n, 1, generator=g, dtype=torch.float64)}
    fields = {"person.stays_home": home, "person.avoids_community": avoid["community"],
              "person.avoids_household": avoid["household"]}
    got = _force(data, x, fields)
    want = reference_force(data, x, BETAS, home, avoid)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    # one decision shared by the replicates ([N, 1]) is the same as each replicate's own copy of it
    shared = _force(data, x, {"person.stays_home": home[:, :1]})
    torch.testing.assert_close(shared, _force(data, x, {"person.stays_home": home[:, :1].expand(n, R).clone()}))
    torch.testing.assert_close(shared, reference_force(data, x, BETAS, home[:, :1].expand(n, R), {}))


def test_no_decision_or_zero_decisions_are_the_plain_step():
    data = random_venues(15, seed=4)
    x = torch.rand(15, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    plain = _force(data, x, {})
    torch.testing.assert_close(plain, reference_force(data, x, BETAS, None, {}), rtol=1e-10, atol=1e-12)
    zero = _force(data, x, {"person.stays_home": torch.zeros(15, 2, dtype=torch.float64)})
    torch.testing.assert_close(zero, plain, rtol=1e-12, atol=1e-14)


def test_staying_home_leaves_school_and_work_and_keeps_the_household():
    data = random_venues(15, seed=5)
    x = torch.rand(15, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    everyone_home = _force(data, x, {"person.stays_home": torch.ones(15, 1, dtype=torch.float64)})
    only = {vt: {k: (v if k in (vt,) else 0.0) for k, v in BETAS.items()} for vt in ("household", "community")}
    want = sum(reference_force(data, x, only[vt], None, {}) for vt in only)
    torch.testing.assert_close(everyone_home, want, rtol=1e-10, atol=1e-12)
    # a venue all of whose members stay away has no transmission (size 0, not a division by zero)
    avoid_all = _force(data, x, {f"person.avoids_{vt}": torch.ones(15, 1, dtype=torch.float64) for vt in VENUES})
    assert torch.equal(avoid_all, torch.zeros_like(avoid_all))


def test_gradient_of_the_force_in_the_decisions_matches_finite_differences():
    data = random_venues(10, seed=6)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(10, 2, generator=g, dtype=torch.float64)
    home = (0.8 * torch.rand(10, 2, generator=g, dtype=torch.float64)).requires_grad_(True)
    avoid = (0.8 * torch.rand(10, 2, generator=g, dtype=torch.float64)).requires_grad_(True)
    xs = x.clone().requires_grad_(True)

    def f(h, a, xx):
        lam = _force(data, xx, {"person.stays_home": h, "person.avoids_school": a})
        return (lam * torch.linspace(0.5, 1.5, lam.numel(), dtype=lam.dtype).view_as(lam)).sum()

    assert torch.autograd.gradcheck(f, (home, avoid, xs), eps=1e-6, atol=1e-8)
