"""Population graphs: synthetic generation, validation and file I/O."""

from lpm_graph.data.io import PopulationFileError, load_population, save_population
from lpm_graph.data.synthetic import (
    MEMBER_OF,
    REV_MEMBER_OF,
    VENUE_TYPES,
    SyntheticPopulationSpec,
    generate_population,
)
from lpm_graph.data.validate import ConfigError, PopulationGraphError, validate_population

__all__ = [
    "MEMBER_OF",
    "REV_MEMBER_OF",
    "VENUE_TYPES",
    "ConfigError",
    "PopulationFileError",
    "PopulationGraphError",
    "SyntheticPopulationSpec",
    "generate_population",
    "load_population",
    "save_population",
    "validate_population",
]
