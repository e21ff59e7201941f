"""Interaction layers: one PyG ``MessagePassing`` per file, usable on their own."""
from lpm_graph.nn.contact_infection import ContactInfection
from lpm_graph.nn.sparse import LinearAggregation, SparseAdjacency, spmm
from lpm_graph.nn.venue_infection import VenueInfection
from lpm_graph.nn.venue_pressure import VenuePressure

__all__ = ["VenuePressure", "VenueInfection", "ContactInfection", "SparseAdjacency", "spmm", "LinearAggregation"]
