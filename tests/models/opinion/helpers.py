"""Small graphs and models for the opinion tests."""
from __future__ import annotations

import torch
from torch_geometric.data import HeteroData

from lpm_graph.core import Model
from lpm_graph.models.opinion import DeGroot, NeighbourMean

CONTACT = ("person", "contact", "person")


def graph(edges, num_nodes: int, weights=None, opinion=None, uid=None, **attributes) -> HeteroData:
    """A person graph with directed edges ``(src, dst)`` of ``('person', 'contact', 'person')``."""
    data = HeteroData()
    data["person"].num_nodes = num_nodes
    data["person"].uid = torch.arange(num_nodes) if uid is None else uid
    if opinion is not None:
        data["person"].opinion = torch.as_tensor(opinion, dtype=torch.float64)
    for name, value in attributes.items():
        data["person"][name] = value
    store = data[CONTACT]
    store.edge_index = torch.as_tensor(edges, dtype=torch.int64).reshape(-1, 2).t().contiguous()
    if weights is not None:
        store.edge_weight = torch.as_tensor(weights, dtype=torch.float64)
    return data


def model(susceptibility=0.5, environment=(), dtype=torch.float64, mode="expected", **degroot) -> Model:
    """NeighbourMean then DeGroot (keyword arguments go to DeGroot)."""
    groupings = degroot.pop("groupings", None)
    m = Model(processes={"neighbours": NeighbourMean(), "degroot": DeGroot(**degroot)}, environment=list(environment),
              params={"degroot": {"susceptibility": susceptibility}}, groupings=groupings, mode=mode)
    return m.to(dtype)


def dense_w(data: HeteroData) -> torch.Tensor:
    """The row-stochastic ``W[i, j] = w_ji / sum_k w_ki`` (dense, float64); identity rows without neighbours."""
    n = data["person"].num_nodes
    src, dst = data[CONTACT].edge_index
    w = getattr(data[CONTACT], "edge_weight", None)
    w = torch.ones(src.numel(), dtype=torch.float64) if w is None else w.to(torch.float64)
    a = torch.zeros(n, n, dtype=torch.float64).index_put_((dst, src), w, accumulate=True)
    d = a.sum(1, keepdim=True)
    return torch.where(d > 0, a / d.clamp_min(1e-300), torch.eye(n, dtype=torch.float64))


def final(m: Model, data, steps: int, seed: int = 0, replicates: int = 1) -> torch.Tensor:
    """``x(steps)`` as ``[N, R]``."""
    with torch.no_grad():
        return m(data, steps=steps, seed=seed, replicates=replicates).final_state["person.opinion"]


def complete(num_nodes: int, **kwargs) -> HeteroData:
    """The complete graph on ``num_nodes`` people, every tie stored both ways."""
    i, j = torch.triu_indices(num_nodes, num_nodes, 1)
    return graph(torch.cat([torch.stack([i, j], 1), torch.stack([j, i], 1)]), num_nodes, **kwargs)
