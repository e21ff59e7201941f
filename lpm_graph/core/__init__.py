"""The model-agnostic core: graph, state, processes, parameters, random numbers, the loop, observables.

Nothing here knows which model it runs (:mod:`lpm_graph.models`).
"""
from lpm_graph.core.environment import Scale, Window
from lpm_graph.core.graph import Graph, Grouping, Requirements, Stack
from lpm_graph.core.loop import Model, flush_denormals
from lpm_graph.core.observe import Observable, Outcome, Trajectory
from lpm_graph.core.params import GROUP, ParameterSet, ParamSpec
from lpm_graph.core.process import Output, Process, StepContext
from lpm_graph.core.random import CounterRNG
from lpm_graph.core.sampling import Sampler
from lpm_graph.core.state import EventSpec, FieldSpec, Read, StateSpec

__all__ = ["Model", "Graph", "Grouping", "Requirements", "Stack", "Process", "Output", "StepContext", "StateSpec",
           "FieldSpec", "EventSpec", "Read", "ParamSpec", "ParameterSet", "GROUP", "Observable", "Outcome",
           "Trajectory", "CounterRNG", "Sampler", "Scale", "Window", "flush_denormals"]
