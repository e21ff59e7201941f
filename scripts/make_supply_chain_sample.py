"""Make the shipped sample supply network (data/samples/supply_chain/) read by population=supply_edgelist.

    python scripts/make_supply_chain_sample.py

Draws an 80-node network with the synthetic generator (2 suppliers, 4 warehouses,
10 retailers, 64 consumers; seed 7) and writes it as the importer reads it:

- nodes.csv      id (text: <type>-<index>), type, capacity (units per step; empty: unlimited)
- shipments.csv  src, dst, lead_time (steps), capacity (empty: unlimited), share
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lpm_graph.models.supply_chain.network import supply_network  # noqa: E402

OUT = ROOT / "data" / "samples" / "supply_chain"
TIERS = {"supplier": 2, "warehouse": 4, "retailer": 10, "consumer": 64}


def _number(x: float):
    return "" if math.isinf(x) else round(float(x), 3)


def make(out: Path = OUT) -> tuple[Path, Path]:
    data = supply_network(TIERS, suppliers_per_node=[2, 1, 1], lead_time=[2, 1, 0], spread=[1, 1, 0],
                          capacity={"supplier": 50.0}, seed=7)
    nodes = pd.DataFrame([{"id": f"{nt}-{i}", "type": nt, "capacity": _number(c)}
                          for nt in TIERS for i, c in enumerate(data[nt].capacity.tolist())])
    rows = []
    for (up, _, down) in data.edge_types:
        store = data[up, _, down]
        for (s, d), lead, cap in zip(store.edge_index.t().tolist(), store.lead_time.tolist(), store.capacity.tolist()):
            rows.append({"src": f"{up}-{s}", "dst": f"{down}-{d}", "lead_time": lead,
                         "capacity": _number(cap if down != "retailer" else 40.0), "share": 1.0})
    out.mkdir(parents=True, exist_ok=True)
    nodes.to_csv(out / "nodes.csv", index=False)
    pd.DataFrame(rows).to_csv(out / "shipments.csv", index=False)
    return out / "nodes.csv", out / "shipments.csv"


if __name__ == "__main__":
    for path in make():
        print(f"wrote {path}")
