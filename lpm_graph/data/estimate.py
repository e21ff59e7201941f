"""The size of a population before it is built: node and edge counts and bytes, from its config.

:func:`population_size` reads a population config (the ``population`` group)
and returns its expected size, so that a run can be refused before the
population is built (:func:`lpm_graph.memory.estimate_config`).  Known for
the synthetic generator (from its spec: household sizes, enrolment,
employment, venue sizes) and for the random person-person graph (people and
ties); ``None`` for sources whose size is only known once read.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from omegaconf import OmegaConf

__all__ = ["PopulationSize", "population_size", "expected_memberships"]


@dataclass
class PopulationSize:
    """Expected node counts per type, edge counts per edge type, and bytes of the ``HeteroData``."""

    nodes: dict[str, int] = field(default_factory=dict)
    edges: dict[tuple[str, str, str], int] = field(default_factory=dict)
    bytes: int = 0


def _share(spec, lo: float, hi: float) -> float:
    """Share of people with integer ages ``lo..hi`` inclusive under the spec's age distribution."""
    ages = spec.age_distribution
    edges = torch.tensor(ages.bin_edges, dtype=torch.float64)
    w = torch.tensor(ages.weights, dtype=torch.float64)
    w = w / w.sum()
    a, b = edges[:-1], edges[1:]
    overlap = (torch.minimum(b, torch.tensor(hi + 1.0)) - torch.maximum(a, torch.tensor(float(lo)))).clamp_min(0)
    return float((w * overlap / (b - a)).sum())


def expected_memberships(spec) -> dict[str, float]:
    """Expected memberships per person of each venue type of a synthetic spec (household and community:
    everyone; school and workplace by age, enrolment and employment)."""
    school = _share(spec, spec.school.min_age, spec.school.max_age) * spec.school.enrolment
    work = _share(spec, spec.workplace.min_age, spec.workplace.max_age) * spec.workplace.employment_rate
    return {"household": 1.0, "school": school, "workplace": work, "community": 1.0}


def _random_graph_size(cfg) -> PopulationSize:
    import inspect

    from lpm_graph.data.random_graphs import _check, random_graph

    kwargs = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if not k.startswith("_")}
    defaults = {k: p.default for k, p in inspect.signature(random_graph).parameters.items()}
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        return None  # instantiating the config reports them
    args = {**defaults, **kwargs}
    _check(**args)
    n = int(args["num_people"])
    e = 2 * int(round(n * float(args["mean_degree"]) / 2))
    size = PopulationSize(nodes={"person": n}, edges={("person", args["relation"], "person"): e})
    size.bytes = n * (8 + (4 if args["age"] else 0)) + e * (16 + (4 if args["weighted"] else 0))
    return size


def population_size(cfg) -> PopulationSize | None:
    """The expected size of the population a config builds, or ``None`` if it cannot be known unbuilt."""
    target = "" if cfg is None else str(cfg.get("_target_", ""))
    if target.endswith("random_graphs.random_graph"):
        return _random_graph_size(cfg)
    if not target.endswith("synthetic.generate_population"):
        return None
    from lpm_graph.data.synthetic import MEMBER_OF, REV_MEMBER_OF, SyntheticPopulationSpec, _pareto_mean

    kwargs = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if not k.startswith("_")}
    spec = SyntheticPopulationSpec.from_config(**kwargs)
    n = spec.num_people
    sizes = torch.arange(1, len(spec.household_size_distribution) + 1, dtype=torch.float64)
    hh = torch.tensor(spec.household_size_distribution, dtype=torch.float64)
    mean_household = float((sizes * hh).sum() / hh.sum())
    members = expected_memberships(spec)
    venues = {"household": n / mean_household, "community": n / spec.community.mean_size,
              "school": n * members["school"] / spec.school.mean_size,
              "workplace": n * members["workplace"] / _pareto_mean(spec.workplace)}
    out = PopulationSize(nodes={"person": n})
    total = n * (8 + 4)  # uid int64, age float32
    for vt, count in venues.items():
        v = max(1, int(round(count)))
        e = int(round(n * members[vt]))
        out.nodes[vt] = v
        out.edges[("person", MEMBER_OF, vt)] = e
        out.edges[(vt, REV_MEMBER_OF, "person")] = e
        total += v * 16 + 2 * 16 * e  # uid and size int64; edge_index int64 both ways
    out.bytes = total
    return out
