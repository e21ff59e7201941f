"""Agent behaviour :math:`\\ell(\\cdot \\mid s_i)`: processes of role ``behavior`` that write decision fields.

The contract (:mod:`lpm_graph.behavior.base`, ``docs/behavior.md``): a
behaviour writes ``<node type>.<decision>`` fields, probabilities in [0, 1] of
shape ``[N, R]`` (``person.stays_home``, ``person.avoids_<venue type>``,
``person.masks``, ``person.vaccinates``, ``person.tunes_out``), which later processes read as
optional; ``conf/behavior/<name>.yaml`` adds its processes to the mapping
``model.behavior`` and its parameters to ``model.params.<process name>``.

* :class:`Behavior`: the base (fields, the last decision as state, observables);
* :class:`RuleBehavior`: thresholds and logistic responses (``behavior=rules``);
* :class:`NeuralBehavior` with :class:`DecisionMLP`: any network (``behavior=neural``);
* :class:`FixedDecisions`: given shares, as parameters (a scenario, an observed mobility series);
* :class:`VenuePrevalence`: what an agent observes, the prevalence in its venues;
* :class:`ContactPrevalence`: the prevalence among its contacts, per contact relation;
* :class:`NeighbourDisagreement`: how far its neighbours' opinions are from its own;
* :class:`StateShare`: what a node observes of its own state, as a share (a retailer's stock);
* :class:`Announcement`: an announced policy (an environment field);
* :mod:`lpm_graph.behavior.llm`: LLM archetypes, one question per group of agents (``behavior=llm``).
"""
from lpm_graph.behavior.base import Behavior, check_decisions, decision_key, last_key
from lpm_graph.behavior.fixed import FixedDecisions
from lpm_graph.behavior.neural import DecisionMLP, NeuralBehavior
from lpm_graph.behavior.observe import (Announcement, ContactPrevalence, NeighbourDisagreement, StateShare,
                                       VenuePrevalence)
from lpm_graph.behavior.rules import RuleBehavior, logistic_response

__all__ = ["Behavior", "decision_key", "last_key", "check_decisions", "RuleBehavior", "logistic_response",
           "NeuralBehavior", "DecisionMLP", "FixedDecisions", "VenuePrevalence", "Announcement",
           "StateShare", "ContactPrevalence", "NeighbourDisagreement"]
