"""Partition a synthetic population: time, edge cut, ghosts and balance of METIS against random and contiguous.

    nice -n 10 python scripts/bench_partition.py --people 1000000 --parts 2 4 8

One row per (method, parts): the seconds to partition (the population's build not included), the share of
edges (and of contact weight) whose endpoints lie in different parts, the ghosts summed over the parts (the
venue values exchanged per product), and the imbalance (largest part / mean) of people and households.
"""
from __future__ import annotations

import argparse
import time

from lpm_graph.data.synthetic import generate_population
from lpm_graph.distributed.partition import PartitionReport, partition_graph


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--parts", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--methods", nargs="+", default=["metis", "random", "contiguous"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    t0 = time.perf_counter()
    data = generate_population(num_people=args.people, seed=args.seed)
    edges = sum(data[et].edge_index.size(1) for et in data.edge_types)
    print(f"population: {args.people:,} people, {sum(int(data[nt].num_nodes) for nt in data.node_types):,} nodes, "
          f"{edges:,} edges (both directions), built in {time.perf_counter() - t0:.1f} s")
    print("| method | parts | seconds | cut edges | cut weight | ghosts (sum over parts) | person imbalance | "
          "household imbalance | balanced types |")
    print("|---|---|---|---|---|---|---|---|---|")
    for parts in args.parts:
        for method in args.methods:
            p = partition_graph(data, parts, method, seed=args.seed)
            r = PartitionReport.of(data, p)
            ghosts = sum(sum(g.values()) for g in r.ghosts)
            print(f"| {method} | {parts} | {r.seconds:.2f} | {100 * r.cut_fraction:.1f}% | "
                  f"{100 * r.cut_weight_fraction:.1f}% | {ghosts:,} | {r.imbalance['person']:.3f} | "
                  f"{r.imbalance['household']:.3f} | {'+'.join(r.constraints) or '-'} |", flush=True)


if __name__ == "__main__":
    main()
