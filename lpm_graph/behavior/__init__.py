"""Behaviours of agents: the decisions a model's processes read (``<node type>.<decision>`` fields)."""
