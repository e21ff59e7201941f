"""Opinion dynamics over a person-person graph: DeGroot averaging, stubborn agents, bounded confidence.

Models built from the core's parts (:mod:`lpm_graph.core`), each a config of
``conf/model/``: ``opinion.yaml`` composes :class:`NeighbourMean` (the
interaction: each person's neighbours' weighted mean opinion) and
:class:`DeGroot` (the update: move part of the way towards it);
``opinion_stubborn.yaml`` replaces the update with :class:`FriedkinJohnsen`
(anchored to the initial opinion); ``opinion_hk.yaml`` the interaction with
:class:`BoundedConfidence` (Hegselmann–Krause) and ``opinion_deffuant.yaml``
with :class:`DeffuantPairs` (random pairs that compromise); :class:`OpinionClusters`
counts the clusters.  The generic :class:`lpm_graph.core.Scale` environment
process can scale the influence (``person.influence_scale``), e.g. a
platform shutdown.  ``docs/opinion.md`` has the equations, config keys and commands.
"""
from lpm_graph.models.opinion.bounded_confidence import BoundedConfidence, BoundedConfidenceMean
from lpm_graph.models.opinion.clusters import OpinionClusters
from lpm_graph.models.opinion.deffuant import DeffuantPairs, PairwiseCompromise
from lpm_graph.models.opinion.degroot import INITIAL, DeGroot
from lpm_graph.models.opinion.interaction import NeighbourMean
from lpm_graph.models.opinion.stubborn import FriedkinJohnsen

__all__ = ["NeighbourMean", "DeGroot", "INITIAL", "FriedkinJohnsen", "BoundedConfidence", "BoundedConfidenceMean",
           "DeffuantPairs", "PairwiseCompromise", "OpinionClusters"]
