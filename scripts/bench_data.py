"""Benchmarks of the data pipelines: edge-list import and cached population loads.

    python scripts/bench_data.py                      # 10M edges over 1M people; 1M-person cache load
    python scripts/bench_data.py --edges 1000000 --people 100000 --repeat 1

Measures (wall clock, best of ``--repeat``):

1. ``from_edgelist`` on a Parquet file of ``--edges`` random records (``src``, ``dst``
   uniform over ``--nodes`` integer ids, float32 ``weight``), undirected (the
   default: records canonicalised, duplicates merged, both directions stored) and
   directed, without the cache. The file is written first (not timed).
2. The same import answered from the cache (hash of the file + ``torch.load``).
3. ``population_from_marginals`` (NYC marginals) at ``--people`` people: the build,
   then the cached load (what ``population=nyc`` costs on a second run).

Inputs go to a temporary folder (``--workdir`` to keep them). Duplicate-merge and
self-loop warnings are expected on random data and silenced here.
"""
from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=10_000_000)
    parser.add_argument("--nodes", type=int, default=1_000_000)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import torch_geometric  # noqa: F401  (import cost outside the timings)

    from lpm_graph.data.census import population_from_marginals
    from lpm_graph.data.edgelist import from_edgelist
    from lpm_graph.data.readers import PopulationDataWarning

    warnings.simplefilter("ignore", PopulationDataWarning)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="lpm_bench_"))
    root.mkdir(parents=True, exist_ok=True)
    cache_dir = root / "cache"
    print(f"torch threads: {torch.get_num_threads()}; workdir {root}")

    rng = np.random.default_rng(0)
    path = root / "edges.parquet"
    t0 = time.perf_counter()
    pq.write_table(pa.table({"src": rng.integers(0, args.nodes, args.edges),
                             "dst": rng.integers(0, args.nodes, args.edges),
                             "weight": rng.random(args.edges, dtype=np.float32)}), path)
    print(f"wrote {args.edges:,} edges over {args.nodes:,} ids to {path.name} "
          f"({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t0:.1f} s")

    for directed in (False, True):
        seconds, data = best(lambda: from_edgelist(path, directed=directed, default_age=30.0), args.repeat)
        store = data["person", "contact", "person"]
        print(f"from_edgelist  directed={directed!s:5}  {seconds:6.2f} s  "
              f"({data['person'].num_nodes:,} people, {store.edge_index.shape[1]:,} stored edges)")
        del data

    from_edgelist(path, default_age=30.0, cache_dir=cache_dir)  # fill the cache
    seconds, _ = best(lambda: from_edgelist(path, default_age=30.0, cache_dir=cache_dir), args.repeat)
    print(f"from_edgelist  cached load            {seconds:6.2f} s")

    t0 = time.perf_counter()
    data = population_from_marginals(num_people=args.people, seed=0, cache_dir=cache_dir)
    build = time.perf_counter() - t0
    size = next(cache_dir.glob("census-*.pt")).stat().st_size
    print(f"population_from_marginals build       {build:6.2f} s  ({data['person'].num_nodes:,} people, "
          f"cache file {size / 2**20:.0f} MiB)")
    del data
    seconds, _ = best(lambda: population_from_marginals(num_people=args.people, seed=0, cache_dir=cache_dir),
                      args.repeat)
    print(f"population_from_marginals cached load {seconds:6.2f} s")


if __name__ == "__main__":
    main()
