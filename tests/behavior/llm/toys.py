"""A toy model whose agents read a decision field: people in communities, a contagion slowed by staying home.

``Contagion`` (update) owns ``person.I`` and reads ``person.stays_home``: the
hazard of a person is ``beta * (1 - stays_home) * local_I + 0.01``, where
``person.local_I`` is the share infectious in their community
(:class:`~lpm_graph.behavior.llm.VenueMean`).  The behaviour under test,
:class:`~lpm_graph.behavior.llm.LLMArchetypes`, groups people by age and by
the bin of ``person.local_I``.
"""
from __future__ import annotations

import json

import torch
from torch_geometric.data import HeteroData

from lpm_graph.behavior.llm import LLMArchetypes, VenueMean
from lpm_graph.core import Model, Observable, Output, ParamSpec, Process, StateSpec

AGE_BINS = [0, 20, 40, 60]
JOBS = ["none", "office", "shop"]


def town(num_people: int = 200, num_communities: int = 5, seed: int = 0) -> HeteroData:
    g = torch.Generator().manual_seed(seed)
    d = HeteroData()
    d["person"].num_nodes = num_people
    d["person"].uid = torch.arange(num_people) * 3 + 1
    d["person"].age = 90.0 * torch.rand(num_people, generator=g)
    d["person"].job = torch.randint(len(JOBS), (num_people,), generator=g)
    d["person"].job_categories = json.dumps(JOBS)
    d["community"].num_nodes = num_communities
    d["community"].uid = torch.arange(num_communities)
    member = torch.randint(num_communities, (num_people,), generator=g)
    d["person", "member_of", "community"].edge_index = torch.stack([torch.arange(num_people), member])
    return d


class Contagion(Process):
    """``person.I``: each step, susceptible people are infected with ``beta (1 - stays_home) local_I + 0.01``."""

    role = "update"
    default_name = "contagion"

    def state_specs(self):
        return [StateSpec("person", "I", "indicator", init=None)]

    def param_specs(self):
        return [ParamSpec("beta", "nonnegative", default=0.8), ParamSpec("seed_fraction", "probability", default=0.1)]

    def reads(self):
        return ["person.I", "person.stays_home", "person.local_I"]

    def streams(self):
        return [("person", self.stream("infection"))]

    def observables(self):
        return [Observable("infected", "person.I", "count")]

    def init(self, ctx):
        n = ctx.graph.num_nodes["person"]
        first = (torch.arange(n) % 10 == 0).to(ctx.dtype).unsqueeze(1).expand(n, ctx.replicates)
        return Output(state={"person.I": first.clone()})

    def forward(self, ctx, state, fields):
        I = state["person.I"]
        q = self.value(ctx, "beta") * (1 - fields["person.stays_home"]) * fields["person.local_I"] + 0.01
        u, j = ctx.rng("person").uniform_refined(ctx.t, self.stream("infection"), I.dtype) \
            if ctx.stochastic else (None, None)
        return Output(state={"person.I": I + (1 - I) * ctx.sampler(q.clamp(0, 1), u, j)})


PROMPT = {"system": "You answer for a typical person of a group.",
          "user": "A person aged {age} lives where {prevalence} of the neighbours are ill. "
                  "How likely are they to stay home this week?"}
VARIABLES = {"age": {"grouping": "age"},
             "prevalence": {"source": "person.local_I", "bins": [0, 0.1, 0.3, 0.6]}}


def toy_model(backend=None, mode: str = "expected", checkpoint: bool = False, learnable=(), dtype=torch.float64,
              **kwargs) -> Model:
    options = dict(variables=VARIABLES, prompt=PROMPT, backend=backend, every=3)
    options.update(kwargs)
    return Model(processes={"contagion": Contagion()}, environment={"local": VenueMean("person.I", "community")},
                 behavior={"llm": LLMArchetypes(**options)},
                 groupings={"age": {"node_type": "person", "attribute": "age", "bins": AGE_BINS},
                            "job": {"node_type": "person", "attribute": "job"}},
                 mode=mode, checkpoint=checkpoint, learnable=list(learnable), dtype=dtype)
