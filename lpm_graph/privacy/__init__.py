"""Privacy: secure aggregation of sums, private agents in a step, differential privacy of released sums.

Modules are imported by name (``lpm_graph.privacy.agents``, ``lpm_graph.privacy.dp``), so that importing the
package costs nothing.
"""
