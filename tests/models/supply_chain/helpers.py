"""Small supply chains built by hand for the tests: a HeteroData and the model over it."""
from __future__ import annotations

import math

import torch
from torch_geometric.data import HeteroData

from lpm_graph.core import Model
from lpm_graph.models.supply_chain import BaseStock, Demand, Stage

REL = "supplies"


def line_graph(counts: dict[str, int], lead_times: list[int], capacity: dict[str, float] | None = None) -> HeteroData:
    """Tiers in order; every node of a tier buys from node ``i % n_up`` of the tier above; one lead time per pair."""
    d = HeteroData()
    names = list(counts)
    for nt in names:
        d[nt].num_nodes = counts[nt]
        d[nt].uid = torch.arange(counts[nt])
        d[nt].capacity = torch.full((counts[nt],), (capacity or {}).get(nt, math.inf), dtype=torch.float64)
    for (up, down), lead in zip(zip(names[:-1], names[1:]), lead_times):
        n = counts[down]
        d[up, REL, down].edge_index = torch.stack([torch.arange(n) % counts[up], torch.arange(n)])
        d[up, REL, down].lead_time = torch.full((n,), lead, dtype=torch.int64)
    return d


def chain_model(names: list[str], *, policies: dict | None = None, params: dict | None = None,
                mode: str = "stochastic", smoothing: float = 0.0, max_lead_time: int = 4, environment=(),
                dtype=torch.float64, behavior=None) -> Model:
    """Demand -> stages upstream first: ``names[0]`` produces, ``names[-1]`` consumes, the rest stock."""
    stages = {"demand": Demand(node_type=names[-1])}
    for i, nt in enumerate(names):
        down = [[nt, REL, names[i + 1]]] if i + 1 < len(names) else []
        stages[nt] = Stage(nt, downstream=down, produces=i == 0, consumes=i == len(names) - 1, capacity="capacity",
                           max_lead_time=max_lead_time, smoothing=smoothing)
    env = [BaseStock(nt, **kw, smoothing=smoothing, name=f"{nt}_policy") for nt, kw in (policies or {}).items()]
    return Model(processes=stages, environment=[*env, *environment], params=params or {}, mode=mode,
                 surrogate="straight_through", dtype=dtype, behavior=behavior or {})
