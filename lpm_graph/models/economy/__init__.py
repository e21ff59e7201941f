"""A labour-and-consumption economy: employment, wages, household spending, one goods market, a price level.

One model among others, built from the core's parts (:mod:`lpm_graph.core`):
``conf/model/economy.yaml`` composes :class:`PriceLevel` (environment: the
price moves with last step's excess demand), :class:`LabourMarket` (update:
separations, layoffs and Cobb-Douglas matching, per firm) and
:class:`GoodsMarket` (update: production, wages along the reverse membership
edges, dividends, consumption out of income and savings, sales); the
synthetic population's ``workplace`` nodes are the firms.
:class:`FirmClosure` and the generic :class:`lpm_graph.core.Scale` of
``person.spending_scale`` are shocks.  ``docs/economy.md`` has the equations,
the accounting identities, config keys and commands.
"""
from lpm_graph.models.economy.environment import FirmClosure, PriceLevel
from lpm_graph.models.economy.labour import LabourMarket
from lpm_graph.models.economy.market import GoodsMarket

__all__ = ["PriceLevel", "FirmClosure", "LabourMarket", "GoodsMarket"]
