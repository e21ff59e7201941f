"""Generate the small synthetic input samples shipped in data/samples/ (300 people each).

Not real data: inputs in each supported format, for the tests and for trying the
config choices (``population=tables|edgelist|networkx``):

* ``data/samples/tables/persons.csv``: a 300-person synthetic population
  (``lpm_graph.data.generate_population(300, seed=3)``) as a person table with
  string household ids (``H0001``...), integer school/workplace/community ids, and
  the extra attributes ``sex`` (F/M) and ``vaccinated`` (true/false);
  ``data/samples/tables/venues.csv``: one venue table (``venue_id, type,
  district``) listing every venue plus one unused school.
* ``data/samples/edgelist/contacts.parquet``: a time-varying multi-layer contact
  list over 300 people (ids 0..299): layer ``home`` (household pairs, 8 h, every
  day), ``work`` (pairs within workplaces, 4 h, days 0-4 only) and ``community``
  (random distinct pairs, 0.5 h); column ``day`` 0..6. No duplicate records.
* ``data/samples/network.graphml``: a Watts-Strogatz small world (300 nodes, k=6,
  p=0.1) with node attributes ``age`` and ``sex`` and edge weights.

Deterministic (fixed seeds). Run from the repository root:

    python scripts/make_data_samples.py
"""
from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd

from lpm_graph.data import generate_population
from lpm_graph.data.tables import to_tables

SEED = 3
OUT = Path("data/samples")


def tables() -> None:
    rng = np.random.default_rng(SEED)
    data = generate_population(300, seed=SEED)
    persons, venues = to_tables(data)
    persons["household_id"] = persons["household_id"].map(lambda v: f"H{int(v) + 1:04d}").astype("string")
    persons["sex"] = rng.choice(["F", "M"], size=len(persons))
    persons["vaccinated"] = rng.random(len(persons)) < 0.6
    rows = []
    for vt, frame in venues.items():
        ids = frame["venue_id"].astype(int)
        for v in ids:
            rows.append({"venue_id": f"H{v + 1:04d}" if vt == "household" else str(v), "type": vt,
                         "district": f"D{int(rng.integers(1, 4))}"})
    rows.append({"venue_id": str(int(venues["school"]["venue_id"].max()) + 1), "type": "school",
                 "district": "D1"})  # a school nobody attends (size 0)
    (OUT / "tables").mkdir(parents=True, exist_ok=True)
    persons.to_csv(OUT / "tables" / "persons.csv", index=False)
    pd.DataFrame(rows).to_csv(OUT / "tables" / "venues.csv", index=False)


def edgelist() -> None:
    rng = np.random.default_rng(SEED + 1)
    data = generate_population(300, seed=SEED + 1)
    frames = []
    for layer, venue, hours, days in (("home", "household", 8.0, range(7)), ("work", "workplace", 4.0, range(5))):
        person, place = data["person", "member_of", venue].edge_index.numpy()
        order = np.argsort(place, kind="stable")
        person, place = person[order], place[order]
        pairs = [(a, b) for k, a in enumerate(person) for b, pb in zip(person[k + 1:], place[k + 1:])
                 if pb == place[k]][:1500]
        for day in days:
            frames.append(pd.DataFrame({"src": [a for a, _ in pairs], "dst": [b for _, b in pairs],
                                        "weight": hours, "layer": layer, "day": day}))
    for day in range(7):
        src = np.arange(300)
        dst = rng.integers(0, 300, size=300)
        pairs = np.unique(np.stack([np.minimum(src, dst), np.maximum(src, dst)], 1)[src != dst], axis=0)
        frames.append(pd.DataFrame({"src": pairs[:, 0], "dst": pairs[:, 1], "weight": 0.5,
                                    "layer": "community", "day": day}))
    edges = pd.concat(frames, ignore_index=True).astype({"src": "int64", "dst": "int64", "day": "int64"})
    (OUT / "edgelist").mkdir(parents=True, exist_ok=True)
    edges.to_parquet(OUT / "edgelist" / "contacts.parquet", index=False)


def graphml() -> None:
    rng = np.random.default_rng(SEED + 2)
    graph = nx.watts_strogatz_graph(300, 6, 0.1, seed=SEED + 2)
    for node in graph:
        graph.nodes[node]["age"] = float(rng.integers(0, 90))
        graph.nodes[node]["sex"] = str(rng.choice(["F", "M"]))
    for u, v in graph.edges:
        graph.edges[u, v]["weight"] = float(np.round(rng.exponential(1.0), 3))
    nx.write_graphml(graph, OUT / "network.graphml")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tables()
    edgelist()
    graphml()
    for path in sorted(OUT.rglob("*.*")):
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
