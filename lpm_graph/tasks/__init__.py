"""Tasks: functions of a composed config and an output folder, returning metrics.

Each task lives in its own module, imported only when it runs (:func:`get`).
"""
from __future__ import annotations

import importlib

#: task name -> (module, function)
TASKS = {
    "simulate": ("lpm_graph.tasks.simulate", "simulate"),
    "calibrate": ("lpm_graph.tasks.calibrate", "calibrate"),
    "analyze": ("lpm_graph.tasks.analyze", "analyze"),
    "build_population": ("lpm_graph.tasks.build_population", "build_population"),
    "plan": ("lpm_graph.tasks.plan", "plan"),
}


def get(name: str):
    """The task function ``name``."""
    module, function = TASKS[name]
    return getattr(importlib.import_module(module), function)


def __getattr__(name: str):
    if name in TASKS:
        return get(name)
    raise AttributeError(f"module 'lpm_graph.tasks' has no attribute {name!r}")


__all__ = ["TASKS", "get", *TASKS]
