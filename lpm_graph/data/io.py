"""Saving and loading population graphs as tagged plain-tensor files.

The file is a ``torch.save`` of a plain dict, so it loads with ``weights_only=True``
(no arbitrary code runs on load)::

    {'format': 'lpm_graph.population', 'version': 1,
     'nodes': {node_type: {'num_nodes': int, attr: tensor, ...}},
     'edges': {'src__rel__dst': {'edge_type': [src, rel, dst], attr: tensor, ...}},
     'graph': {attr: tensor, ...}}

The string key of an edge type is only a label; the ``edge_type`` list inside is what
is read back, so type names that themselves contain ``__`` cannot be mis-split.
Tensors are stored detached and on the CPU. Attributes may be tensors or plain
``int``/``float``/``bool``/``str`` values; anything else is refused at save time.

Files are written through a temporary file beside the target,
``.<name>.<host>.<pid>.<random>.tmp`` (:func:`temporary_file`), then renamed onto it
(:func:`publish`) with the mode a plain ``open`` would give (``0o666`` less the umask).
A process killed mid-write leaves its temporary behind; :func:`remove_stale_temporaries`
removes those of one target whose writer is gone: on this host, when no process has
its pid any more; from another host, or without a pid in the name, when it has not
been modified for :data:`STALE_SECONDS`. A temporary whose writer may still be running
is left alone.
"""

from __future__ import annotations

import glob
import os
import re
import socket
import tempfile
import time
from pathlib import Path

import torch
from torch_geometric.data import HeteroData

from lpm_graph.data import progress
from lpm_graph.data.validate import validate_population
from lpm_graph.errors import MissingInputError, PopulationFileError, PopulationGraphError

__all__ = [
    "FORMAT_TAG",
    "FORMAT_VERSION",
    "PopulationFileError",
    "load_population",
    "publish",
    "remove_stale_temporaries",
    "save_population",
    "temporary_file",
]

FORMAT_TAG = "lpm_graph.population"
FORMAT_VERSION = 1

_PLAIN = (bool, int, float, str)

#: A temporary whose writer cannot be checked (another host, no pid in its name) is
#: stale once it has not been modified for this long (a live write keeps touching it).
STALE_SECONDS = 3600.0

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:64] or "host"


def temporary_file(path: Path) -> tuple[int, str]:
    """``mkstemp`` beside ``path``, named ``.<name>.<host>.<pid>.<random>.tmp`` (see the module docstring)."""
    return tempfile.mkstemp(prefix=f".{path.name}.{_HOST}.{os.getpid()}.", suffix=".tmp", dir=path.parent)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish(tmp: str | os.PathLike, path: Path) -> None:
    """Give the closed temporary ``tmp`` the mode ``0o666 & ~umask``, then rename it onto ``path``.

    ``mkstemp`` creates files readable by their owner only; a cache or output file should
    be as readable as any other file the user writes.
    """
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike, max_age: float = STALE_SECONDS) -> list[Path]:
    """Remove the temporaries of ``path`` left by writers that are gone (module docstring); return them."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.)?[^.]+\.tmp")
    removed = []
    try:
        candidates = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    except OSError:
        return removed
    now = time.time()
    for tmp in candidates:
        match = pattern.fullmatch(tmp.name)
        if match is None:
            continue
        if match["pid"] is not None and match["host"] == _HOST:
            stale = not _alive(int(match["pid"]))
        else:
            try:
                stale = now - tmp.stat().st_mtime > max_age
            except OSError:
                continue
        if stale:
            try:
                tmp.unlink()
            except FileNotFoundError:
                continue
            removed.append(tmp)
    return removed


def _plain_attrs(where: str, items) -> dict:
    out = {}
    for key, value in items:
        if isinstance(value, torch.Tensor):
            out[key] = value.detach().cpu()
        elif isinstance(value, _PLAIN):
            out[key] = value
        else:
            raise PopulationGraphError(
                f"{where}: attribute {key!r} of type {type(value).__name__} cannot be saved; "
                f"population files hold tensors and int/float/bool/str values only"
            )
    return out


def _to_payload(data: HeteroData) -> dict:
    nodes = {}
    for node_type in data.node_types:
        store = data[node_type]
        nodes[node_type] = _plain_attrs(f"node type {node_type!r}", store.items())
    edges = {}
    for edge_type in data.edge_types:
        store = data[edge_type]
        entry = _plain_attrs(f"edge type {edge_type!r}", store.items())
        if "edge_type" in entry:
            raise PopulationGraphError(
                f"edge type {edge_type!r}: attribute name 'edge_type' is reserved by the file format"
            )
        entry["edge_type"] = list(edge_type)
        key = "__".join(edge_type)
        if key in edges:  # names containing '__' can collide; the key is only a label
            key = f"{key}#{len(edges)}"
        edges[key] = entry
    graph = _plain_attrs("graph-level", data.to_dict()["_global_store"].items())
    return {
        "format": FORMAT_TAG,
        "version": FORMAT_VERSION,
        "nodes": nodes,
        "edges": edges,
        "graph": graph,
    }


def save_population(data: HeteroData, path: str | os.PathLike) -> None:
    """Validate ``data`` and write it to ``path`` atomically.

    The payload goes to a temporary file in the target directory which is then
    ``os.replace``-d onto ``path`` with the mode ``0o666 & ~umask``; if anything fails
    (or the process is interrupted by an exception) the temporary file is removed and
    ``path`` is left untouched, so a partial write never produces a file that loads.
    A process killed outright leaves the temporary; see :func:`remove_stale_temporaries`.

    Raises:
        PopulationGraphError: if ``data`` fails :func:`validate_population` or holds an
            attribute that cannot be stored.
        FileNotFoundError: if the directory of ``path`` does not exist.
    """
    validate_population(data)
    path = Path(path)
    payload = _to_payload(data)
    directory = path.parent
    if not directory.is_dir():
        raise FileNotFoundError(
            f"cannot save population to {str(path)!r}: directory {str(directory)!r} does not "
            f"exist; create it first"
        )
    fd, tmp_name = temporary_file(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        publish(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _not_population(path: Path, why: str) -> PopulationFileError:
    return PopulationFileError(
        f"{str(path)!r} is not a population file ({why}); expected a file written by "
        f"lpm_graph.data.save_population (format tag {FORMAT_TAG!r}). Regenerate it, e.g. "
        f"save_population(generate_population(...), path)"
    )


def load_population(path: str | os.PathLike) -> HeteroData:
    """Load and validate a population graph written by :func:`save_population`.

    Raises:
        MissingInputError: if ``path`` does not exist (a ``FileNotFoundError`` and a
            ``PopulationGraphError``, which the CLI reports in one line).
        PopulationFileError: if the file is not a population file, has an unsupported
            format version, or holds a graph that fails :func:`validate_population`
            (messages name the path).
    """
    path = Path(path)
    with progress.stages(f"population file {path.name}", 2) as stage:
        return _load_population(path, stage)


def _load_population(path: Path, stage) -> HeteroData:
    if not path.is_file():
        raise MissingInputError(
            f"population file {str(path)!r} does not exist; check the path, or create it "
            f"with lpm_graph.data.save_population(generate_population(...), path)"
        )
    stage("read")
    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise _not_population(path, f"torch.load failed: {type(exc).__name__}") from exc
    if not isinstance(payload, dict) or "format" not in payload:
        raise _not_population(path, "it has no format tag")
    if payload["format"] != FORMAT_TAG:
        raise _not_population(path, f"its format tag is {payload['format']!r}")
    version = payload.get("version")
    if version != FORMAT_VERSION:
        raise PopulationFileError(
            f"{str(path)!r} has population file format version {version!r}, but this "
            f"lpm_graph reads version {FORMAT_VERSION} only; load it with the lpm_graph "
            f"version that wrote it, or regenerate the file"
        )
    nodes, edges, graph = payload.get("nodes"), payload.get("edges"), payload.get("graph", {})
    if not isinstance(nodes, dict) or not isinstance(edges, dict) or not isinstance(graph, dict):
        raise _not_population(path, "its 'nodes', 'edges' or 'graph' section is missing or not a dict")

    data = HeteroData()
    for key, value in graph.items():
        data[key] = value
    for node_type, attrs in nodes.items():
        if not isinstance(attrs, dict):
            raise _not_population(path, f"node type {node_type!r} is not a dict of attributes")
        for key, value in attrs.items():
            data[node_type][key] = value
    for key, attrs in edges.items():
        edge_type = attrs.get("edge_type") if isinstance(attrs, dict) else None
        if not (isinstance(edge_type, (list, tuple)) and len(edge_type) == 3
                and all(isinstance(t, str) for t in edge_type)):
            raise _not_population(path, f"edge entry {key!r} has no valid 'edge_type' [src, rel, dst]")
        store = data[tuple(edge_type)]
        for attr, value in attrs.items():
            if attr != "edge_type":
                store[attr] = value
    stage("validate")
    try:
        validate_population(data)
    except PopulationGraphError as exc:
        raise PopulationFileError(
            f"{str(path)!r} holds an invalid population graph: {exc}; regenerate the file"
        ) from exc
    return data
