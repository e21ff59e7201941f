r"""A vaccine network on the synthetic population: depots and clinics added to its people and venues.

:func:`vaccine_network` builds the synthetic population
(:func:`lpm_graph.data.synthetic.generate_population`, every one of its
arguments passed through) and adds:

* ``clinic`` nodes: communities are laid out in ``districts`` consecutive blocks
  (districts); each community of :math:`n_c` people gets
  :math:`\max(1, \operatorname{round}(n_c / m_k))` clinics, :math:`m_k` its district's
  ``people_per_clinic``, its members (in household order, so households stay together)
  cut into consecutive near-equal catchments.  Attributes: ``uid``, ``population`` (catchment size),
  ``district`` (0..K-1), ``capacity`` (doses administered per day: the district's
  ``capacity_per_person`` times the catchment).
* ``depot`` nodes (``depots`` of them): ``uid`` and ``capacity``, the daily supply of
  doses, ``supply`` times the population split equally.
* ``('person', catchment_relation, 'clinic')`` (each person's clinic; ``registered_at``,
  not ``member_of``: to the epidemic a ``member_of`` venue is a place of transmission,
  and :class:`~lpm_graph.models.epidemic.VenueTransmission` refuses one it has no rate
  for) and its reverse ``('clinic', serve_relation, 'person')`` — the edges clinics administer along, lead
  time 0 (a dose reaches the person the day it is given) — and the person attribute
  ``clinic`` (the clinic's index, for the grouping the vaccination draws by).
* ``('depot', relation, 'clinic')``: every clinic buys from every depot in equal
  shares; lead times ``lead_time + U{0..spread}`` steps per edge.

One ``torch.Generator`` seeded with ``seed`` (after the synthetic population's own
draws) makes the lead times, so equal arguments give identical graphs.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch_geometric.data import HeteroData

from lpm_graph.data.synthetic import MEMBER_OF, generate_population
from lpm_graph.errors import ConfigError

__all__ = ["vaccine_network", "add_clinics"]


def _count(value, what: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(f"population.{what} must be an integer >= {low}, got {value!r}")
    return int(value)


def _rate(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (value >= 0 and math.isfinite(value)):
        raise ConfigError(f"population.{what} must be a finite number >= 0, got {value!r}")
    return float(value)


def add_clinics(data: HeteroData, people_per_clinic: int | Sequence[int] = 1000, depots: int = 2, districts: int = 4,
                capacity_per_person: float | Sequence[float] = 0.005, supply: float = 0.005, lead_time: int = 1,
                spread: int = 2, relation: str = "supplies", serve_relation: str = "serves",
                catchment_relation: str = "registered_at", seed: int = 0) -> HeteroData:
    """Add clinics, depots and their edges to a population with ``('person', 'member_of', 'community')`` edges
    (module docstring); returns ``data``."""
    depots = _count(depots, "depots")
    districts = _count(districts, "districts")
    ppc = (list(people_per_clinic) if isinstance(people_per_clinic, Sequence) and not isinstance(people_per_clinic, str)
           else [people_per_clinic] * districts)
    if len(ppc) != districts:
        raise ConfigError(f"population.people_per_clinic must be one number or one per district ({districts}), "
                          f"got {ppc}")
    ppc = [_count(v, "people_per_clinic") for v in ppc]
    lead_time, spread = _count(lead_time, "lead_time", 0), _count(spread, "spread", 0)
    supply = _rate(supply, "supply")
    caps = (list(capacity_per_person) if isinstance(capacity_per_person, Sequence)
            and not isinstance(capacity_per_person, str) else [capacity_per_person] * districts)
    if len(caps) != districts:
        raise ConfigError(f"population.capacity_per_person must be one number or one per district ({districts}), "
                          f"got {caps}")
    caps = [_rate(c, "capacity_per_person") for c in caps]
    for label, rel in (("relation", relation), ("serve_relation", serve_relation),
                       ("catchment_relation", catchment_relation)):
        if not isinstance(rel, str) or not rel or "." in rel or rel != rel.strip():
            raise ConfigError(f"population.{label} must be a name without dots or spaces, got {rel!r}")
    key = ("person", MEMBER_OF, "community")
    if catchment_relation == MEMBER_OF:
        raise ConfigError(f"population.catchment_relation must not be {MEMBER_OF!r}: people's {MEMBER_OF!r} "
                          "venues are where the epidemic transmits; name the clinic catchment otherwise")
    if key not in data.edge_types:
        raise ConfigError("a vaccine network needs people in communities: ('person', 'member_of', 'community') edges")
    n = int(data["person"].num_nodes)
    person, community = data[key].edge_index
    num_communities = int(data["community"].num_nodes)
    # people in household order within their community (stable sort keeps the synthetic layout)
    household = torch.zeros(n, dtype=torch.long)
    hh = data["person", MEMBER_OF, "household"].edge_index
    household[hh[0]] = hh[1]
    comm = torch.zeros(n, dtype=torch.long)
    comm[person] = community
    order = torch.argsort(comm * (int(household.max()) + 1 if n else 1) + household, stable=True)
    sizes = torch.bincount(comm, minlength=num_communities)
    community_district = torch.div(torch.arange(num_communities) * districts, max(1, num_communities),
                                   rounding_mode="floor")
    target = torch.tensor(ppc, dtype=torch.float64)[community_district]
    per_community = torch.clamp(torch.round(sizes.double() / target), min=1).long()
    per_community = torch.where(sizes > 0, per_community, torch.zeros_like(per_community))
    first_clinic = torch.cumsum(per_community, 0) - per_community
    start = torch.cumsum(sizes, 0) - sizes
    sorted_comm = comm[order]
    rank = torch.arange(n) - start[sorted_comm]  # position of each person within their community
    local = torch.div(rank * per_community[sorted_comm], sizes[sorted_comm].clamp_min(1), rounding_mode="floor")
    clinic = torch.empty(n, dtype=torch.long)
    clinic[order] = first_clinic[sorted_comm] + local
    num_clinics = int(per_community.sum())
    population = torch.bincount(clinic, minlength=num_clinics)
    district = torch.repeat_interleave(community_district, per_community)
    data["clinic"].num_nodes = num_clinics
    data["clinic"].uid = torch.arange(num_clinics)
    data["clinic"].population = population.to(torch.float32)
    data["clinic"].district = district.to(torch.float32)
    data["clinic"].capacity = (torch.tensor(caps, dtype=torch.float64)[district] * population).to(torch.float32)
    data["person"].clinic = clinic
    members = torch.stack([torch.arange(n), clinic])
    data["person", catchment_relation, "clinic"].edge_index = members
    serve = data["clinic", serve_relation, "person"]
    serve.edge_index = members.flip(0)
    serve.lead_time = torch.zeros(n, dtype=torch.int64)
    data["depot"].num_nodes = depots
    data["depot"].uid = torch.arange(depots)
    data["depot"].capacity = torch.full((depots,), supply * n / depots, dtype=torch.float32)
    gen = torch.Generator().manual_seed(int(seed) + 1)
    src = torch.arange(depots).repeat_interleave(num_clinics)
    dst = torch.arange(num_clinics).repeat(depots)
    ship = data["depot", relation, "clinic"]
    ship.edge_index = torch.stack([src, dst])
    ship.edge_weight = torch.ones(src.numel(), dtype=torch.float32)
    ship.lead_time = lead_time + torch.randint(0, spread + 1, (src.numel(),), generator=gen)
    return data


def vaccine_network(num_people: int = 100000, seed: int = 0, people_per_clinic: int | Sequence[int] = 1000,
                    depots: int = 2, districts: int = 4, capacity_per_person: float | Sequence[float] = 0.005,
                    supply: float = 0.005,
                    lead_time: int = 1, spread: int = 2, relation: str = "supplies", serve_relation: str = "serves",
                    catchment_relation: str = "registered_at", **synthetic) -> HeteroData:
    """The synthetic population of ``num_people`` (``synthetic``: the other arguments of
    :func:`~lpm_graph.data.synthetic.generate_population`) with clinics and depots added (module docstring).

    Args:
        people_per_clinic: about one clinic per this many people of a community (at least one each), one number
            or one per district.
        depots: number of depots.
        districts: number of districts the communities (and their clinics) are laid out in.
        capacity_per_person: doses a clinic administers per day per person of its catchment, one number or one
            per district.
        supply: the depots' daily supply of doses as a fraction of the population.
        lead_time, spread: depot -> clinic lead times ``lead_time + U{0..spread}`` steps.
        relation, serve_relation, catchment_relation: relations of the depot -> clinic, clinic -> person and
            person -> clinic edges.
        seed: the seed of the synthetic population and of the lead times.
    """
    data = generate_population(num_people=num_people, seed=seed, **synthetic)
    return add_clinics(data, people_per_clinic=people_per_clinic, depots=depots, districts=districts,
                       capacity_per_person=capacity_per_person, supply=supply, lead_time=lead_time, spread=spread,
                       relation=relation, serve_relation=serve_relation, catchment_relation=catchment_relation,
                       seed=seed)
