"""Population size estimates (lpm_graph.data.estimate) against the built graphs and the builds' peaks.

For every population source, inputs of a moderate size are written to a
temporary folder; then, in a fresh process per source, the RSS after the
imports is recorded, the size is estimated from the config, the population is
built (no cache), and the process's peak RSS and the built graph's tensor
bytes are read.  Prints, per source, estimate / actual of the graph's bytes
and of the RSS the build added (``bytes + build_bytes`` against peak - start)::

    python scripts/bench_estimate.py                 # 200,000 people / 1,000,000 records
    python scripts/bench_estimate.py --people 50000  # quicker
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
import lpm_graph  # noqa: F401
import networkx, pandas, pyarrow.csv, pyarrow.parquet  # noqa: F401,E401  (their imports are not the build's)
import torch
import lpm_graph.data  # noqa: F401
torch.set_num_threads(1)
from lpm_graph import memory
from lpm_graph.data.estimate import population_size
from lpm_graph.tasks.simulate import instantiate_config
from tests.conftest import compose_config
cfg = compose_config(json.loads(sys.argv[2]))
base = memory.current_rss()
size = population_size(cfg.population)
data = instantiate_config(cfg.population)
peak = memory.peak_rss()
actual = sum(v.numel() * v.element_size() for s in data.stores for v in s.values() if torch.is_tensor(v))
print(json.dumps({"bytes": size.bytes, "build": size.build_bytes, "actual": actual, "added": peak - base,
                  "nodes": {nt: int(data[nt].num_nodes) for nt in data.node_types},
                  "estimated_nodes": size.nodes}))
'''


def inputs(folder: Path, people: int, records: int) -> dict[str, list[str]]:
    """Write every file source's input; the overrides that build each source."""
    import networkx as nx
    import numpy as np

    from lpm_graph.data import generate_population, random_graph, save_population, to_edgelist, to_networkx
    from lpm_graph.data.tables import write_tables

    pop = generate_population(people, seed=1)
    csv = write_tables(pop, folder / "csv", format="csv")
    pq = write_tables(pop, folder / "pq", format="parquet")
    edges = to_edgelist(random_graph(people, mean_degree=2 * records / people, seed=2))
    edges.to_csv(folder / "edges.csv", index=False)
    edges.to_parquet(folder / "edges.parquet", index=False)
    rng = np.random.default_rng(3)
    who = max(2, people // 10)
    i = rng.integers(0, who, records)
    j = (i + rng.integers(1, who, records)) % who
    t = np.sort(rng.integers(0, 5 * 86400 // 20, records)) * 20
    np.savetxt(folder / "contacts.dat", np.stack([t, i, j], 1), fmt="%d")
    small = max(100, people // 10)
    nx.write_graphml(to_networkx(random_graph(small, mean_degree=10, seed=4, weighted=True)), folder / "g.graphml")
    save_population(pop, folder / "pop.pt")
    _shipments(folder, records)
    none = "population.cache_dir=null"
    return {
        "synthetic": [f"population.num_people={people}"],
        "nyc": ["population=nyc", f"population.num_people={people}", none],
        "random_graph": ["population=random_graph", f"population.num_people={people}"],
        "tables (csv)": ["population=tables", f"population.persons={csv['persons']}", none],
        "tables (parquet)": ["population=tables", f"population.persons={pq['persons']}", none],
        "edgelist (csv)": ["population=edgelist", f"population.edges={folder / 'edges.csv'}", none],
        "edgelist (parquet)": ["population=edgelist", f"population.edges={folder / 'edges.parquet'}", none],
        "sociopatterns": ["population=sociopatterns", f"population.path={folder / 'contacts.dat'}", none],
        "networkx": ["population=networkx", f"population.path={folder / 'g.graphml'}", none],
        "file": ["population=file", f"population.path={folder / 'pop.pt'}"],
        "supply_network": ["model=supply_chain", f"population.tiers.consumer={people}",
                           f"population.tiers.retailer={max(1, people // 100)}"],
        "shipments (types)": ["model=supply_chain", "population=supply_edgelist",
                              f"population.edges={folder / 'shipments.csv'}", "population.nodes=null"],
        "shipments (nodes)": ["model=supply_chain", "population=supply_edgelist",
                              f"population.edges={folder / 'shipments_ids.csv'}",
                              f"population.nodes={folder / 'firms.csv'}"],
        "vaccine_network": ["model=vaccine_logistics", f"population.num_people={max(1, 2 * people // 5)}"],
    }


def _shipments(folder: Path, records: int) -> None:
    """A shipment list of about ``records`` rows (a synthetic supply network's edges, shuffled): with the node
    types in it, and with ids only and a node table."""
    import pandas as pd

    from lpm_graph.models.supply_chain.network import supply_network

    net = supply_network({"supplier": 20, "warehouse": 200, "retailer": max(1, records // 100), "consumer": records},
                         seed=1)
    nodes = pd.concat([pd.DataFrame({"id": [f"{nt}-{i}" for i in range(net[nt].num_nodes)], "type": nt,
                                     "capacity": 10.0}) for nt in net.node_types])
    rows = []
    for et in net.edge_types:
        s, t = net[et].edge_index.numpy()
        rows.append(pd.DataFrame({"src": [f"{et[0]}-{i}" for i in s], "dst": [f"{et[2]}-{i}" for i in t],
                                  "lead_time": net[et].lead_time.numpy(), "src_type": et[0], "dst_type": et[2]}))
    edges = pd.concat(rows).sample(frac=1, random_state=0)
    nodes.to_csv(folder / "firms.csv", index=False)
    edges.to_csv(folder / "shipments.csv", index=False)
    edges.drop(columns=["src_type", "dst_type"]).to_csv(folder / "shipments_ids.csv", index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=200_000)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        for name, over in inputs(Path(tmp), args.people, args.records).items():
            if args.only and name.split(" ")[0] not in args.only:
                continue
            proc = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), json.dumps(over)], capture_output=True,
                                  text=True, cwd=ROOT)
            if proc.returncode:
                print(f"{name}: failed\n{proc.stderr[-2000:]}", flush=True)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{name:20s} graph {r['bytes'] / 2**20:8.1f} MB est / {r['actual'] / 2**20:8.1f} MB = "
                  f"{r['bytes'] / r['actual']:.2f};  build {(r['bytes'] + r['build']) / 2**20:8.1f} MB est / "
                  f"{r['added'] / 2**20:8.1f} MB added = {(r['bytes'] + r['build']) / r['added']:.2f}", flush=True)


if __name__ == "__main__":
    main()
