"""Analyses on top of the simulator, for any model: outcomes, sensitivity, counterfactuals, policies.

One concern per module:

* :mod:`~lpm_graph.analysis.outcomes`: the model's declared outcomes per replicate;
* :mod:`~lpm_graph.analysis.sensitivity`: derivatives and elasticities by autograd, finite differences;
* :mod:`~lpm_graph.analysis.counterfactual`: scenarios with common random numbers, paired differences;
* :mod:`~lpm_graph.analysis.policy`: any learnable policy parameter optimised by gradient through the unroll;
* :mod:`~lpm_graph.analysis.statistics`: paired summaries and Student-t quantiles.

Nothing here reads a config: :mod:`lpm_graph.tasks.analyze` builds the models and calls these functions.
"""
from lpm_graph.analysis.counterfactual import ScenarioRun, compare, run_scenarios
from lpm_graph.analysis.outcomes import group_totals, outcomes
from lpm_graph.analysis.policy import PolicyResult, optimise
from lpm_graph.analysis.sensitivity import finite_differences, sensitivity
from lpm_graph.analysis.statistics import paired_summary, t_quantile

__all__ = ["outcomes", "group_totals", "sensitivity", "finite_differences", "ScenarioRun", "run_scenarios",
           "compare", "PolicyResult", "optimise", "paired_summary", "t_quantile"]
