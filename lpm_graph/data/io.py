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
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch_geometric.data import HeteroData

from lpm_graph.data.validate import validate_population
from lpm_graph.errors import MissingInputError, PopulationFileError, PopulationGraphError

__all__ = [
    "FORMAT_TAG",
    "FORMAT_VERSION",
    "PopulationFileError",
    "load_population",
    "save_population",
]

FORMAT_TAG = "lpm_graph.population"
FORMAT_VERSION = 1

_PLAIN = (bool, int, float, str)


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
    ``os.replace``-d onto ``path``; if anything fails (or the process is interrupted
    by an exception) the temporary file is removed and ``path`` is left untouched, so
    a partial write never produces a file that loads.

    Raises:
        PopulationGraphError: if ``data`` fails :func:`validate_population` or holds an
            attribute that cannot be stored.
        FileNotFoundError: if the directory of ``path`` does not exist.
    """
    validate_population(data)
    path = Path(path)
    payload = _to_payload(data)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(
            f"cannot save population to {str(path)!r}: directory {str(directory)!r} does not "
            f"exist; create it first"
        )
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
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
    if not path.is_file():
        raise MissingInputError(
            f"population file {str(path)!r} does not exist; check the path, or create it "
            f"with lpm_graph.data.save_population(generate_population(...), path)"
        )
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
    try:
        validate_population(data)
    except PopulationGraphError as exc:
        raise PopulationFileError(
            f"{str(path)!r} holds an invalid population graph: {exc}; regenerate the file"
        ) from exc
    return data
