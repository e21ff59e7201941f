"""Interaction layers: PyG ``MessagePassing`` layers, one per file, usable in any PyG model.

:class:`WeightedSum` is every linear interaction (a model names it for its
own call sites: the epidemic's ``VenuePressure``, ``VenueInfection`` and
``ContactInfection`` in :mod:`lpm_graph.models.epidemic.transmission` are this
class).  Person → venue, then venue → person on one membership edge type,
a venue of :math:`k` members costs :math:`2k` edges instead of the
:math:`k^2` of a person–person clique.
"""
from lpm_graph.nn.sparse import SparseAdjacency, spmm
from lpm_graph.nn.weighted_sum import WeightedSum

__all__ = ["WeightedSum", "SparseAdjacency", "spmm"]
