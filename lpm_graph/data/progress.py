"""Progress of a population build on stderr: the stage a generator or an importer is in.

Off by default, so library calls and tests stay silent; a task turns it on for its
population build with the run setting ``progress``::

    with progress.shown(run.progress):
        data = instantiate(cfg.population)

Code that builds a population names its stages::

    with progress.stages("synthetic population", 6) as stage:
        stage("people")
        ...
        stage("households")

Each stage redraws one ``tqdm`` line, ``<what>: <stage> (<k>/<n>) [elapsed]``, cleared
when the build ends. Builds inside a build (the census generator inside the cache's
``build`` stage) get a line of their own below it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm

__all__ = ["enabled", "shown", "stages"]

_ON = [False]


def enabled() -> bool:
    """Whether population builds show their stages now."""
    return _ON[0]


@contextmanager
def shown(on: bool = True) -> Iterator[None]:
    """Show (``on``) or hide the stages of population builds inside the block."""
    previous = _ON[0]
    _ON[0] = bool(on)
    try:
        yield
    finally:
        _ON[0] = previous


@contextmanager
def stages(what: str, total: int | None = None) -> Iterator[Callable[[str], None]]:
    """A progress line for the build of ``what``; call the function it gives with each stage's name.

    ``total``: the number of stages, when known. Silent unless :func:`enabled`.
    """
    if not _ON[0]:
        yield lambda name: None
        return
    bar = tqdm(total=total, desc=what, leave=False, bar_format="{desc} [{elapsed}]")
    count = [0]

    def stage(name: str) -> None:
        count[0] += 1
        of = f" ({count[0]}/{total})" if total else ""
        bar.set_description_str(f"{what}: {name}{of}", refresh=True)

    try:
        yield stage
    finally:
        bar.close()
