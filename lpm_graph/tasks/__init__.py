"""Tasks: pure functions of a composed config and an output folder, returning metrics."""
from lpm_graph.tasks.simulate import simulate

TASKS = {"simulate": simulate}

__all__ = ["simulate", "TASKS"]
