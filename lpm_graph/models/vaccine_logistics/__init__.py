"""Vaccine logistics: depots -> clinics -> people, the supply chain and the epidemic composed on one graph.

Nothing here copies either package: ``conf/model/vaccine_logistics.yaml`` runs the
supply chain's :class:`~lpm_graph.models.supply_chain.Stage` for depots, clinics and
people (the people consume doses: a clinic's sales are the doses it administers) and the
epidemic's :class:`~lpm_graph.models.epidemic.Vaccination` (doses from a field),
:class:`~lpm_graph.models.epidemic.Infectiousness`,
:class:`~lpm_graph.models.epidemic.VenueTransmission` and
:class:`~lpm_graph.models.epidemic.SEIR` for people.  This package holds only the glue
(:mod:`.glue`: :class:`DoseDemand`, :class:`Arrivals`, :class:`DoseAllocation`) and the
default population (:func:`vaccine_network`).  ``docs/vaccine_logistics.md`` has the
equations.
"""
from lpm_graph.models.vaccine_logistics.glue import ALLOCATIONS, Arrivals, DoseAllocation, DoseDemand
from lpm_graph.models.vaccine_logistics.population import add_clinics, vaccine_network

__all__ = ["DoseDemand", "Arrivals", "DoseAllocation", "ALLOCATIONS", "vaccine_network", "add_clinics"]
