"""Small graphs and models for the economy tests."""
from __future__ import annotations

import torch
from torch_geometric.data import HeteroData

from lpm_graph.core import Model, Scale
from lpm_graph.models.economy import FirmClosure, GoodsMarket, LabourMarket, PriceLevel

MEMBER = ("person", "member_of", "workplace")
REV = ("workplace", "rev_member_of", "person")

#: a tiny economy: firm 0 has people 0..3, firm 1 people 4 and 5; person 6 is outside the labour force
TINY_FIRMS = [0, 0, 0, 0, 1, 1, None]


def tiny_graph(firms=TINY_FIRMS, reverse: bool = True) -> HeteroData:
    data = HeteroData()
    data["person"].num_nodes = len(firms)
    data["person"].uid = torch.arange(len(firms))
    data["person"].age = torch.full((len(firms),), 30.0)
    nf = max(f for f in firms if f is not None) + 1
    data["workplace"].num_nodes = nf
    data["workplace"].uid = torch.arange(nf)
    pairs = [(i, f) for i, f in enumerate(firms) if f is not None]
    ei = torch.tensor(pairs, dtype=torch.int64).t().contiguous()
    data[MEMBER].edge_index = ei
    if reverse:
        data[REV].edge_index = ei.flip(0)
    return data


def model(params=None, environment=(), mode="expected", dtype="float64", **kwargs) -> Model:
    """PriceLevel, then LabourMarket and GoodsMarket; ``params`` by namespace on top of the defaults."""
    env = {"price": PriceLevel()}
    for p in environment:
        env[p.name] = p
    return Model(processes={"labour": LabourMarket(), "market": GoodsMarket()}, environment=env,
                 params=params or {}, mode=mode, dtype=dtype, **kwargs)


def closure(share=0.5, start=0, end=None):
    return FirmClosure(share=share, start=start, end=end)


def demand_shock(factor=0.8, start=0, end=None):
    return Scale(field="person.spending_scale", start=start, end=end, factor=factor, name="demand_shock")


def run(m: Model, data, steps: int, seed: int = 0, replicates: int = 1):
    with torch.no_grad():
        return m(data, steps=steps, seed=seed, replicates=replicates)
