"""Models built from the core's parts: each a package with its processes and a ``conf/model`` config."""
