"""Interaction layers: PyG ``MessagePassing`` layers, one per file, usable in any PyG model.

:class:`WeightedSum` is every linear interaction; the names below it read
better at an epidemic's call sites and are the same class:

* ``VenuePressure``: person → venue, infectious pressure inside each venue;
* ``VenueInfection``: venue → person, force of infection from one's venues;
* ``ContactInfection``: person → person, force of infection along contacts.

With ``VenuePressure`` then ``VenueInfection`` on one membership edge type,
a venue of :math:`k` members costs :math:`2k` edges instead of the
:math:`k^2` of a person–person clique.
"""
from lpm_graph.nn.sparse import SparseAdjacency, spmm
from lpm_graph.nn.weighted_sum import WeightedSum

VenuePressure = WeightedSum
VenueInfection = WeightedSum
ContactInfection = WeightedSum

__all__ = ["WeightedSum", "VenuePressure", "VenueInfection", "ContactInfection", "SparseAdjacency", "spmm"]
