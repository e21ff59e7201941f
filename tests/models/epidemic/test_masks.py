"""MaskEffect (lpm_graph.models.epidemic.masks): a mask decision as susceptibility and infectiousness factors."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData

from lpm_graph.core.graph import Graph
from lpm_graph.core.process import StepContext
from lpm_graph.core.sampling import Sampler
from lpm_graph.models.epidemic import MaskEffect

F64 = torch.float64


def _factors(effect: MaskEffect, masks: torch.Tensor, **params):
    data = HeteroData()
    data["person"].num_nodes = masks.size(0)
    data["person"].uid = torch.arange(masks.size(0))
    graph = Graph(data, effect.requirements(), F64)
    values = {effect.param(k): torch.tensor(v, dtype=F64) for k, v in params.items()}
    ctx = StepContext(0, graph, values, Sampler("expected"), 1.0, masks.size(1), F64)
    return effect(ctx, {}, {effect.decision: masks}).fields


def test_the_factors_are_one_minus_each_efficacy_times_the_mask_probability():
    m = torch.tensor([[0.0, 1.0], [0.5, 0.25], [1.0, 0.0]], dtype=F64)
    out = _factors(MaskEffect(), m, efficacy_in=0.3, efficacy_out=0.5)
    # susceptibility by the wearer's protection (in), infectiousness by the protection of others (out)
    torch.testing.assert_close(out["person.susceptibility_factor"], 1 - 0.3 * m, rtol=0, atol=0)
    torch.testing.assert_close(out["person.infectiousness_factor"], 1 - 0.5 * m, rtol=0, atol=0)
    # no one masked: both factors 1; everyone masked with perfect masks: both 0
    none = _factors(MaskEffect(), torch.zeros(2, 1, dtype=F64), efficacy_in=0.3, efficacy_out=0.5)
    assert all(bool((v == 1).all()) for v in none.values())
    full = _factors(MaskEffect(), torch.ones(2, 1, dtype=F64), efficacy_in=1.0, efficacy_out=1.0)
    assert all(bool((v == 0).all()) for v in full.values())


def test_declarations_combine_by_product_with_the_other_writers_and_follow_the_decision():
    effect = MaskEffect(decision="host.masks", efficacy_in=0.2, efficacy_out=0.7, name="masks_effect")
    assert effect.reads() == ["host.masks"]
    specs = {f.key: f.combine for f in effect.field_specs()}
    assert specs == {"host.susceptibility_factor": "product", "host.infectiousness_factor": "product"}
    defaults = {p.name: (p.domain, p.default) for p in effect.param_specs()}
    assert defaults == {"efficacy_in": ("probability", 0.2), "efficacy_out": ("probability", 0.7)}
    out = _factors(MaskEffect(decision="person.masks", efficacy_in=0.2, efficacy_out=0.7),
                   torch.full((1, 1), 0.5, dtype=F64), efficacy_in=0.2, efficacy_out=0.7)
    assert float(out["person.susceptibility_factor"]) == pytest.approx(0.9)
    assert float(out["person.infectiousness_factor"]) == pytest.approx(0.65)


def test_the_factors_have_the_efficacies_gradients():
    m = torch.tensor([[0.2], [0.9]], dtype=F64)
    eff = torch.tensor(0.4, dtype=F64, requires_grad=True)
    data = HeteroData()
    data["person"].num_nodes = 2
    data["person"].uid = torch.arange(2)
    effect = MaskEffect()
    ctx = StepContext(0, Graph(data, effect.requirements(), F64),
                      {"mask_effect.efficacy_in": eff, "mask_effect.efficacy_out": torch.tensor(0.5, dtype=F64)},
                      Sampler("expected"), 1.0, 1, F64)
    out = effect(ctx, {}, {"person.masks": m}).fields["person.susceptibility_factor"].sum()
    out.backward()
    assert float(eff.grad) == pytest.approx(-(0.2 + 0.9), abs=1e-15)  # d/d eps of sum(1 - eps m)
