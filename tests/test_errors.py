"""The error types (lpm_graph.errors): what each one is, so that callers and the CLI catch them as one."""
from __future__ import annotations

from lpm_graph import errors


def test_hierarchy():
    assert issubclass(errors.InsufficientMemoryError, errors.ConfigError)
    assert issubclass(errors.ConfigError, ValueError) and issubclass(errors.PopulationGraphError, ValueError)
    assert issubclass(errors.DataFileError, errors.PopulationGraphError)
    assert issubclass(errors.MissingInputError, errors.DataFileError)
    assert issubclass(errors.MissingInputError, FileNotFoundError)
    assert issubclass(errors.PopulationFileError, errors.PopulationGraphError)
    assert issubclass(errors.PopulationDataWarning, UserWarning)


def test_every_module_raises_the_shared_types():
    # no module keeps a private copy of an error type (they used to be defined in three places)
    import lpm_graph.data.io
    import lpm_graph.data.readers
    import lpm_graph.data.validate
    import lpm_graph.memory

    assert lpm_graph.data.readers.DataFileError is errors.DataFileError
    assert lpm_graph.data.io.PopulationFileError is errors.PopulationFileError
    assert lpm_graph.data.validate.PopulationGraphError is errors.PopulationGraphError
    assert lpm_graph.memory.InsufficientMemoryError is errors.InsufficientMemoryError
