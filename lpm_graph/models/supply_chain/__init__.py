"""A supply chain: suppliers -> warehouses -> retailers -> consumers, with lead times, capacities and spoilage.

Built from the core's parts (:mod:`lpm_graph.core`): one :class:`Stage` per
node type (stock, in-transit pipeline, outstanding orders, backlog; ships what
it has), :class:`Demand` (Poisson demand of end consumers), replenishment
policies :class:`BaseStock` (order-up-to) and :class:`ReorderPoint` (a
differentiable (s, S)) and :class:`Disruption` (nodes closed for a window) as
environment processes, and a network generator and shipment-list importer
(:mod:`lpm_graph.models.supply_chain.network`).  Node and edge types come
from config.  ``docs/supply_chain.md`` has the equations.
"""
from lpm_graph.models.supply_chain.network import from_shipments, supply_network
from lpm_graph.models.supply_chain.policy import BaseStock, Disruption, ReorderPoint, inventory_position
from lpm_graph.models.supply_chain.stage import Demand, Stage

__all__ = ["Stage", "Demand", "BaseStock", "ReorderPoint", "Disruption", "inventory_position", "supply_network",
           "from_shipments"]
