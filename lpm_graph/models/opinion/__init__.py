"""Opinion dynamics: DeGroot averaging over a person-person graph.

One model among others, built from the core's parts (:mod:`lpm_graph.core`):
``conf/model/opinion.yaml`` composes :class:`NeighbourMean` (the interaction:
each person's neighbours' weighted mean opinion) and :class:`DeGroot` (the
update: move part of the way towards it); the generic
:class:`lpm_graph.core.Scale` environment process can scale the influence
(``person.influence_scale``), e.g. a platform shutdown.  ``docs/opinion.md``
has the equations, config keys and commands.
"""
from lpm_graph.models.opinion.degroot import INITIAL, DeGroot
from lpm_graph.models.opinion.interaction import NeighbourMean

__all__ = ["NeighbourMean", "DeGroot", "INITIAL"]
