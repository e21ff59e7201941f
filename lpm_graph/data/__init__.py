"""Population graphs: synthetic generation, importers, validation, caching and file I/O.

Importers (each a ``conf/population`` choice) return a validated ``HeteroData``:
:func:`from_tables` (person/venue tables), :func:`from_edgelist` (contact lists),
:func:`from_sociopatterns` (temporal contacts), :func:`from_networkx` (graphs and
GraphML/GML files), :func:`population_from_marginals` (census marginals);
:func:`random_graph` generates a random person-person graph. Ids,
attributes and time-varying edges follow :mod:`lpm_graph.data.assemble`; bad files
raise :class:`DataFileError`; merged/dropped records warn with
:class:`PopulationDataWarning`; :mod:`lpm_graph.data.cache` keeps processed graphs.
"""

from lpm_graph.data.io import PopulationFileError, load_population, save_population
from lpm_graph.data.synthetic import (
    MEMBER_OF,
    REV_MEMBER_OF,
    VENUE_TYPES,
    SyntheticPopulationSpec,
    generate_population,
)
from lpm_graph.data.validate import validate_population
from lpm_graph.errors import ConfigError, PopulationGraphError
from lpm_graph.data.readers import DataFileError, MissingInputError, PopulationDataWarning
from lpm_graph.data.assemble import attribute_values, original_ids
from lpm_graph.data.cache import cached_build
from lpm_graph.data.tables import from_tables, to_tables, write_tables
from lpm_graph.data.edgelist import from_edgelist, to_edgelist
from lpm_graph.data.sociopatterns import from_sociopatterns
from lpm_graph.data.networkx_io import from_networkx, to_networkx
from lpm_graph.data.census import load_marginals, population_from_marginals
from lpm_graph.data.random_graphs import random_graph

__all__ = [
    "MEMBER_OF",
    "REV_MEMBER_OF",
    "VENUE_TYPES",
    "ConfigError",
    "DataFileError",
    "MissingInputError",
    "PopulationDataWarning",
    "PopulationFileError",
    "PopulationGraphError",
    "SyntheticPopulationSpec",
    "attribute_values",
    "cached_build",
    "from_edgelist",
    "from_networkx",
    "from_sociopatterns",
    "from_tables",
    "generate_population",
    "load_marginals",
    "load_population",
    "original_ids",
    "population_from_marginals",
    "random_graph",
    "save_population",
    "to_edgelist",
    "to_networkx",
    "to_tables",
    "validate_population",
    "write_tables",
]
