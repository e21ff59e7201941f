"""Tasks: pure functions of a composed config and an output folder, returning metrics."""
from lpm_graph.tasks.calibrate import calibrate
from lpm_graph.tasks.simulate import simulate

TASKS = {"simulate": simulate, "calibrate": calibrate}


__all__ = ["simulate", "calibrate", "TASKS"]
