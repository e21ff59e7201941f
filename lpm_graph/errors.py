"""The error and warning types of lpm_graph, in one place.

Every error a user can act on is one of these; the CLI prints it as one line
``lpm-graph: error: <message>`` and exits with status 2.  Messages name the
config field, file, node type, process or parameter at fault and the fix.

==========================  ==================================================
type                        raised for
==========================  ==================================================
:class:`ConfigError`        a config value, or the wiring of a model's
                            processes (a read with no producer, two owners
                            of one state, a missing or ill-shaped parameter)
:class:`InsufficientMemoryError`  a run estimated not to fit in memory
:class:`PopulationGraphError`     a graph that breaks the schema a model needs
:class:`DataFileError`      a malformed input file (names file, row, column)
:class:`MissingInputError`  an input file that does not exist
:class:`PopulationFileError`  a saved population that cannot be loaded
:class:`RunDirectoryError`  a folder ``lpm-graph report`` cannot read as a run
:class:`PrivacyError`       a secure-aggregation round refused: too few
                            contributors, a bad signature, a wrong round id, an
                            overflowing sum, a request that would reveal a
                            client's input (``lpm_graph.privacy``)
:class:`PrivacyConfigError` a privacy setting out of range (also a ConfigError)
:class:`EnsembleError`      a multirun folder whose members cannot be summarised
                            (missing or failed members, outputs that differ)
:class:`PopulationDataWarning`  records merged or dropped by an importer
:class:`SimulationWarning`      a run that will likely not show what was meant
:class:`CalibrationWarning`     observations and model that may not match (scale,
                                a column compared by default)
==========================  ==================================================
"""
from __future__ import annotations

__all__ = ["ConfigError", "InsufficientMemoryError", "PopulationGraphError", "DataFileError", "MissingInputError",
           "PopulationFileError", "PopulationDataWarning", "SimulationWarning",
           "CalibrationWarning", "RunDirectoryError", "PrivacyError", "PrivacyConfigError", "EnsembleError"]


class ConfigError(ValueError):
    """A configuration value is invalid; the message names it by its dotted config path."""


class InsufficientMemoryError(ConfigError):
    """A run is estimated not to fit in the memory of its device."""


class RunDirectoryError(ValueError):
    """A folder that is not a run directory ``lpm-graph report`` can read, naming what it lacks."""


class PrivacyError(ValueError):
    """A secure-aggregation round or encoding is refused; the message names the client, stage and reason."""


class PrivacyConfigError(PrivacyError, ConfigError):
    """A privacy setting (minimum group size, threshold, neighbours, encoding range) is out of range."""


class EnsembleError(ValueError):
    """A multirun folder ``lpm-graph ensemble`` cannot summarise, naming the members that are missing or failed."""


class PopulationGraphError(ValueError):
    """A population graph violates the schema; the message names the offending type/attribute."""


class DataFileError(PopulationGraphError):
    """An input file is malformed; the message names the file, and the row and column where known."""


class MissingInputError(DataFileError, FileNotFoundError):
    """An input file does not exist."""


class PopulationFileError(PopulationGraphError):
    """A saved population file cannot be read back."""


class PopulationDataWarning(UserWarning):
    """An importer merged or dropped records; the message says which and how many."""


class SimulationWarning(UserWarning):
    """A run will likely not show what was meant (e.g. replicates without any initial infection)."""


class CalibrationWarning(UserWarning):
    """Observations and the model may not match: their scales differ widely, or a column was compared with the
    model's main observable because the config named none."""
