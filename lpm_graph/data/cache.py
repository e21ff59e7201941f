"""On-disk cache of processed population graphs, keyed by input contents and build options.

An importer called with ``cache_dir`` (every ``conf/population`` choice that reads
files sets it, default ``data/processed`` relative to the working directory, or
``$LPM_GRAPH_CACHE_DIR``) goes through :func:`cached_build`:

* **key** = SHA-256 of ``{cache format, source, builder version, build options,
  SHA-256 of each input file's bytes}`` (first 20 hex digits). File paths are not
  part of the key: a moved but unchanged file hits the cache; one changed byte misses.
* **hit**: ``<cache_dir>/<source>-<key>.pt`` is loaded with
  :func:`~lpm_graph.data.io.load_population` (validated on load) instead of rebuilding.
* **miss**: the graph is built, written atomically with
  :func:`~lpm_graph.data.io.save_population`, and a manifest ``<source>-<key>.json``
  (options, input paths and digests) is written beside it. If an earlier entry was
  built from the same input paths with the same options, the inputs have changed:
  the log says which file changed (logger ``lpm_graph.data.cache``, level WARNING)
  and the stale entry is removed once the new one is in place.
* a cache file that no longer loads is logged and rebuilt.
* with :func:`lpm_graph.data.progress.shown` on (the run setting ``progress``), the
  stages -- hash inputs, load cached graph or read and build, validate and write
  cache -- are shown on stderr.
* :func:`last_record` tells what the last call did: ``"hit"``; ``"built"`` (no entry
  for these inputs and options yet); ``"rebuilt"``, with the reason (which input
  changed, with both digests, or that the cached file did not load).
* both files are written through a temporary beside them and renamed, with the mode
  ``0o666 & ~umask``. A build killed while writing leaves its temporary
  (``.<source>-<key>.pt.<host>.<pid>.<random>.tmp``); the next build of the same key
  removes those of that key whose writer is gone (a dead pid on this host, or unmodified
  for an hour; :func:`~lpm_graph.data.io.remove_stale_temporaries`) and logs each one.

Hashing reads every input once per call (about 1 GB/s); loading a cached graph costs
``torch.load`` of its tensors.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from torch_geometric.data import HeteroData

from lpm_graph.data import progress
from lpm_graph.data.io import (PopulationFileError, load_population, publish, remove_stale_temporaries,
                               save_population, temporary_file)
from lpm_graph.errors import ConfigError

__all__ = ["CacheRecord", "cached_build", "file_digest", "last_record", "cache_key", "DEFAULT_CACHE_DIR"]

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
#: Where the shipped configs put the cache (relative to the working directory).
DEFAULT_CACHE_DIR = "data/processed"

_LAST: list = [None]


@dataclass(frozen=True)
class CacheRecord:
    """What :func:`cached_build` did: ``status`` is ``"hit"``, ``"built"`` or ``"rebuilt"``."""

    source: str
    key: str
    path: Path
    status: str
    reason: str
    seconds: float

    @property
    def hit(self) -> bool:
        return self.status == "hit"


def last_record() -> CacheRecord | None:
    """The record of the most recent :func:`cached_build` in this process (None if none yet)."""
    return _LAST[0]


def clear_last_record() -> None:
    _LAST[0] = None


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _canonical(options: Mapping) -> str:
    try:
        return json.dumps(options, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"population cache: build options must be plain JSON values ({exc}); got {options!r}") \
            from None


def cache_key(source: str, digests: Mapping[str, str], options: Mapping, version: int = 1) -> str:
    """The cache key of a build (see the module docstring)."""
    payload = _canonical({"format": CACHE_FORMAT, "source": source, "version": version,
                          "options": options, "inputs": dict(sorted(digests.items()))})
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def _write_json(path: Path, payload: dict) -> None:
    fd, tmp = temporary_file(path)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True)
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _stale_entries(root: Path, source: str, paths: Mapping[str, str], options_json: str, key: str):
    """Manifests of earlier builds from the same input paths and options (their inputs changed)."""
    for manifest in root.glob(f"{source}-*.json"):
        try:
            entry = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        if entry.get("key") == key or entry.get("source") != source:
            continue
        if _canonical(entry.get("options", {})) != options_json:
            continue
        inputs = entry.get("inputs", {})
        if {k: v.get("path") for k, v in inputs.items()} == dict(paths):
            yield manifest, entry


def cached_build(source: str, inputs: Mapping[str, str | os.PathLike], options: Mapping,
                 build: Callable[[], HeteroData], cache_dir: str | os.PathLike | None,
                 version: int = 1) -> HeteroData:
    """Load the graph built from ``inputs`` with ``options`` from the cache, or build and store it.

    Args:
        source: the importer's name (file prefix), e.g. ``"tables"``.
        inputs: name -> existing file; their bytes are part of the key.
        options: every build option that changes the result (plain JSON values).
        build: builds the graph on a miss.
        cache_dir: the cache root; ``None`` builds without caching.
        version: the importer's output version; bump it when its output changes.
    """
    with progress.stages(f"population {source}") as stage:
        return _cached_build(source, inputs, options, build, cache_dir, version, stage)


def _cached_build(source, inputs, options, build, cache_dir, version, stage) -> HeteroData:
    t0 = time.perf_counter()
    if cache_dir is None:
        stage("read and build")
        data = build()
        _LAST[0] = None
        return data
    root = Path(cache_dir).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"population.cache_dir: cannot create the cache directory {str(root)!r} ({exc}); "
                          "set population.cache_dir to a writable directory or null") from None
    stage("hash inputs")
    paths = {name: str(Path(p).resolve()) for name, p in inputs.items()}
    digests = {name: file_digest(p) for name, p in paths.items()}
    key = cache_key(source, digests, options, version)
    target = root / f"{source}-{key}.pt"
    manifest = root / f"{source}-{key}.json"
    for orphan in remove_stale_temporaries(target) + remove_stale_temporaries(manifest):
        log.warning("population cache: removed %s, left by an interrupted write of this entry", orphan)
    unreadable = None
    if target.is_file():
        stage("load cached graph")
        try:
            data = load_population(target)
        except PopulationFileError as exc:
            log.warning("population cache: %s does not load (%s); rebuilding", target, exc)
            unreadable = f"the cached file {target.name} does not load ({exc})"
        else:
            log.info("population cache: loaded %s (inputs and options unchanged)", target)
            _LAST[0] = CacheRecord(source, key, target, "hit", "inputs and options unchanged",
                                   time.perf_counter() - t0)
            return data
    options_json = _canonical(options)
    stale = list(_stale_entries(root, source, paths, options_json, key))
    if stale:
        old = stale[0][1]["inputs"]
        changed = [f"{name} ({paths[name]}: sha256 {old[name].get('sha256', '?')[:12]} -> {digests[name][:12]})"
                   for name in paths if old.get(name, {}).get("sha256") != digests[name]]
        reason = "input changed since the cached build: " + "; ".join(changed)
        log.warning("population cache: %s; rebuilding %s", reason, target.name)
        status = "rebuilt"
    elif unreadable is not None:
        reason, status = unreadable, "rebuilt"
    else:
        reason = "no cached build for these inputs and options"
        log.info("population cache: %s; building %s", reason, target.name)
        status = "built"
    stage("read and build")
    data = build()
    stage("validate and write cache")
    save_population(data, target)
    _write_json(manifest, {
        "source": source, "key": key, "version": version, "format": CACHE_FORMAT, "options": dict(options),
        "inputs": {name: {"path": paths[name], "sha256": digests[name]} for name in paths},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    for old_manifest, _ in stale:
        for stale_file in (old_manifest, old_manifest.with_suffix(".pt")):
            stale_file.unlink(missing_ok=True)
    _LAST[0] = CacheRecord(source, key, target, status, reason, time.perf_counter() - t0)
    return data
