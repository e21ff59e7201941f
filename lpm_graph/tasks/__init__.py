"""Tasks: pure functions of a composed config and an output folder, returning metrics."""
from lpm_graph.tasks.analyze import analyze
from lpm_graph.tasks.build_population import build_population
from lpm_graph.tasks.calibrate import calibrate
from lpm_graph.tasks.simulate import simulate

TASKS = {"simulate": simulate, "calibrate": calibrate}

TASKS["build_population"] = build_population
TASKS["analyze"] = analyze

__all__ = ["simulate", "calibrate", "build_population", "analyze", "TASKS"]
