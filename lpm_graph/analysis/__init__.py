"""Analyses on top of the simulator: outcomes, sensitivity by autograd, counterfactuals, policy optimisation.

One concern per module:

* :mod:`~lpm_graph.analysis.outcomes`: scalar outcomes per replicate (attack rate, peak, peak day, deaths);
* :mod:`~lpm_graph.analysis.sensitivity`: derivatives and elasticities by autograd, finite differences;
* :mod:`~lpm_graph.analysis.counterfactual`: scenarios with common random numbers, paired differences;
* :mod:`~lpm_graph.analysis.policy`: vaccine allocation optimised by gradient through the unroll;
* :mod:`~lpm_graph.analysis.statistics`: paired summaries and Student-t quantiles.

Nothing here reads a config: :mod:`lpm_graph.tasks.analyze` builds the models and calls these functions.
"""
from lpm_graph.analysis.counterfactual import ScenarioRun, compare, run_scenarios
from lpm_graph.analysis.outcomes import OUTCOMES, infections_by_age, outcome, outcomes
from lpm_graph.analysis.policy import PolicyResult, optimise_allocation, population_share_logits
from lpm_graph.analysis.sensitivity import finite_differences, sensitivity
from lpm_graph.analysis.statistics import paired_summary, t_quantile

__all__ = ["OUTCOMES", "outcome", "outcomes", "infections_by_age", "sensitivity", "finite_differences",
           "ScenarioRun", "run_scenarios", "compare", "PolicyResult", "optimise_allocation",
           "population_share_logits", "paired_summary", "t_quantile"]
