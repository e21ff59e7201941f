"""Calibration checkpoints: written atomically, verified before any value is used.

A checkpoint file is one header line and a ``torch.save`` payload::

    lpm_graph.calibration_checkpoint/2 sha256=<hex digest of the payload> bytes=<payload length>\\n
    <payload>

:func:`read` checks the header, the length and the SHA-256 digest before it
unpickles anything (with ``weights_only=True``), so a file cut short, modified
or of another kind is refused with a reason and a fix, never used.  The
payload holds only what a resumed run cannot get from its config: the values
of the fitted parameters (``model.learnable``), the calibration network's
weights, the optimiser state, the loss and parameter history, torch's RNG
state and the iteration; plus the resolved config (less :data:`RESUMABLE`)
and the data digest it was made with, to refuse, naming the changed keys, a
resumption with another config or other data.  Fixed parameters, bounds and
everything else come from the config of the resumed run.

:func:`process_weights` reads, from the same verified file, the trained
weights of the processes that hold modules of their own (a neural
behaviour's network), by process name, for a later run to start from them
(``model.behavior.<name>.weights=<calibrate run folder>``).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from lpm_graph.data.io import publish, remove_stale_temporaries, temporary_file
from lpm_graph.errors import ConfigError

__all__ = ["FORMAT", "RESUMABLE", "resumable_config", "resume_key", "config_changes", "write", "read",
           "save_calibration", "load_calibration", "restore_fitted", "process_weights"]

FORMAT = "lpm_graph.calibration_checkpoint/2"
_PREFIX = FORMAT.rsplit("/", 1)[0] + "/"
_EARLIER = b"lpm_graph.calibration_checkpoint/1"  # torch.save of a plain dict, no header, no digest
#: config keys that may change between a checkpoint and its resumption
RESUMABLE = ("task.resume", "task.iterations", "task.checkpoint_every", "task.plot", "progress", "threads")
_FIX = "rerun without task.resume, or resume from another checkpoint"
_SHOWN = 10  # changed config keys listed in a refusal


def resumable_config(cfg: DictConfig) -> dict:
    """The resolved config without the keys a resumed run may change, as JSON values."""
    c = OmegaConf.to_container(cfg, resolve=True)
    for dotted in RESUMABLE:
        node, *rest = dotted.split(".")
        if rest:
            c.get(node, {}).pop(rest[0], None)
        else:
            c.pop(node, None)
    return json.loads(json.dumps(c, sort_keys=True, default=str))


def resume_key(cfg: DictConfig) -> str:
    """Digest of the config without the keys a resumed run may change."""
    return hashlib.sha256(json.dumps(resumable_config(cfg), sort_keys=True).encode()).hexdigest()[:16]


def _leaves(value, prefix: str = "") -> dict:
    if isinstance(value, dict) and value:
        out = {}
        for k, v in value.items():
            out.update(_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _show(value, absent: bool = False) -> str:
    if absent:
        return "(absent)"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def config_changes(old: dict, new: dict, limit: int = _SHOWN) -> list[str]:
    """``key: old -> new`` for every dotted key whose value differs, at most ``limit`` then ``and N more``."""
    a, b = _leaves(old), _leaves(new)
    missing = object()
    lines = [f"{k}: {_show(a.get(k), k not in a)} -> {_show(b.get(k), k not in b)}"
             for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)]
    if len(lines) > limit:
        lines = lines[:limit] + [f"and {len(lines) - limit} more"]
    return lines


def write(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` with its header to ``path`` atomically: a reader sees the old file or the whole new one.

    Through a temporary file beside ``path``, renamed onto it with the mode an ordinary new file gets (``0o666``
    less the umask); temporaries of ``path`` that killed writers left are removed first (:mod:`lpm_graph.data.io`).
    """
    path = Path(path)
    buf = io.BytesIO()
    torch.save(payload, buf)
    body = buf.getvalue()
    head = f"{FORMAT} sha256={hashlib.sha256(body).hexdigest()} bytes={len(body)}\n".encode()
    remove_stale_temporaries(path)
    fd, tmp = temporary_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(head)
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _foreign(raw: bytes) -> str:
    """Why a file without the checkpoint header is not a checkpoint."""
    if raw.startswith(b"PK\x03\x04"):  # a torch.save archive
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as z:
                pickles = [i for i in z.infolist() if i.filename.endswith("/data.pkl")]
                if pickles and pickles[0].file_size < 1 << 24 and _EARLIER in z.read(pickles[0]):
                    return ("was written by an earlier version of lpm_graph, without the content digest that "
                            f"lets a checkpoint be verified; {_FIX}")
        except (zipfile.BadZipFile, OSError):
            pass
        return ("is a PyTorch file but not a calibration checkpoint (a saved population or other tensors?); "
                "task.resume takes the checkpoint.pt a task=calibrate run writes to its output folder")
    text = raw[:64].decode("utf-8", "ignore")
    if text.strip() and all(c.isprintable() or c in "\r\n\t" for c in text):
        first = text.splitlines()[0]
        return (f"is a text file (it starts {first[:40]!r}), not a calibration checkpoint; task.resume takes the "
                "checkpoint.pt a task=calibrate run writes to its output folder")
    return ("is not a calibration checkpoint (it does not start with the checkpoint header); task.resume takes "
            "the checkpoint.pt a task=calibrate run writes to its output folder")


def read(path: str | os.PathLike, field: str = "task.resume") -> dict:
    """The payload of the checkpoint at ``path``, after its header, length and digest are checked.

    Raises:
        ConfigError: naming ``field`` and the file, the reason it cannot be used, and the fix.
    """
    path = Path(path)
    where = f"{field}: checkpoint {str(path)!r}"
    if path.is_dir():
        inside = path / "checkpoint.pt"
        hint = f"; did you mean {str(inside)!r}?" if inside.is_file() else ""
        raise ConfigError(f"{where} is a folder, not a file: give the path of a checkpoint.pt{hint}")
    if not path.exists():
        raise ConfigError(f"{where} does not exist; give the path of a checkpoint.pt a task=calibrate run wrote")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{where} cannot be read ({e.strerror or e}); check its permissions") from None
    if not raw:
        raise ConfigError(f"{where} is empty (0 bytes): it was not written completely; {_FIX}")
    end = raw.find(b"\n", 0, 256)
    if end < 0:
        if raw.startswith(_PREFIX.encode()) or _PREFIX.encode().startswith(raw):
            raise ConfigError(f"{where} is truncated: it ends inside its header ({len(raw)} bytes); {_FIX}")
        raise ConfigError(f"{where} {_foreign(raw)}")
    head = raw[:end].decode("utf-8", "replace")
    if not head.startswith(_PREFIX):
        raise ConfigError(f"{where} {_foreign(raw)}")
    fmt, *fields = head.split(" ")
    if fmt != FORMAT:
        raise ConfigError(f"{where} is in format {fmt!r}; this version of lpm_graph reads {FORMAT!r}: {_FIX}")
    meta = dict(f.split("=", 1) for f in fields if "=" in f)
    try:
        digest, size = meta["sha256"], int(meta["bytes"])
    except (KeyError, ValueError):
        raise ConfigError(f"{where} has a damaged header ({head[:120]!r}): it was modified or corrupted; "
                          f"{_FIX}") from None
    body = raw[end + 1:]
    if len(body) < size:
        raise ConfigError(f"{where} is truncated: it holds {len(body)} of its {size} payload bytes (an interrupted "
                          f"copy or a full disk?); {_FIX}")
    if len(body) > size or hashlib.sha256(body).hexdigest() != digest:
        raise ConfigError(f"{where} was modified or corrupted after it was written: its content does not match "
                          f"the SHA-256 digest in its header; {_FIX}")
    try:
        payload = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as e:  # an intact file this version cannot unpickle
        raise ConfigError(f"{where} cannot be loaded by this version of lpm_graph ({type(e).__name__}: {e}); "
                          f"{_FIX}") from None
    if not isinstance(payload, dict):
        raise ConfigError(f"{where} holds a {type(payload).__name__}, not a calibration checkpoint; {_FIX}")
    return payload


def _fitted(module) -> dict:
    return {n: p.detach().cpu().clone() for n, p in module.named_parameters()}


def save_calibration(path: str | os.PathLike, *, iteration: int, model, net, optimizer, history: list,
                     trace: list, config: dict, digest: str) -> None:
    """Write a calibration checkpoint: fitted values, network weights, optimiser and RNG state, history."""
    write(path, {"iteration": int(iteration), "learnable": _fitted(model),
                 "net": _fitted(net) if net is not None else None, "optimizer": optimizer.state_dict(),
                 "history": list(history), "trace": [list(r) for r in trace],
                 "torch_rng": torch.get_rng_state(), "config": json.dumps(config, sort_keys=True),
                 "data_digest": digest, "processes": _process_names(model)})


def load_calibration(path: str | os.PathLike, config: dict, digest: str, iterations: int) -> dict:
    """The verified payload of a calibration checkpoint a run with ``config``, ``digest`` and ``iterations``
    may resume from."""
    ckpt = read(path)
    where = f"task.resume: checkpoint {str(path)!r}"
    try:
        old = json.loads(ckpt["config"])
        iteration = int(ckpt["iteration"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{where} is not a calibration checkpoint (no config or iteration); {_FIX}") from None
    if old != config:
        changes = "; ".join(config_changes(old, config))
        raise ConfigError(f"{where} was made with a different config ({changes}); resume only with the same "
                          f"config (only {list(RESUMABLE)} may change), or start a new run")
    if ckpt.get("data_digest") != digest:
        raise ConfigError(f"{where} was made with different observation data; resume with the same files, "
                          "or start a new run")
    if iterations < iteration:
        raise ConfigError(f"task.iterations={iterations} is below the iteration of checkpoint {str(path)!r} "
                          f"({iteration}): set task.iterations >= {iteration} to continue from it, or rerun "
                          "without task.resume")
    return ckpt


def restore_fitted(ckpt: dict, path: str | os.PathLike, model, net, optimizer) -> None:
    """Copy the fitted values, network weights and optimiser state of ``ckpt`` into the run; nothing else."""
    where = f"task.resume: checkpoint {str(path)!r}"
    for what, module, saved in (("model.learnable", model, ckpt.get("learnable")),
                                ("task.calibration_net", net, ckpt.get("net"))):
        own = dict(module.named_parameters()) if module is not None else {}
        saved = saved or {}
        if set(saved) != set(own):
            raise ConfigError(f"{where} holds {what} values {sorted(saved)} but this run fits {sorted(own)}; "
                              f"{_FIX}")
        with torch.no_grad():
            for name, p in own.items():
                v = saved[name]
                if not isinstance(v, torch.Tensor) or v.shape != p.shape:
                    raise ConfigError(f"{where}: {what} value {name!r} has shape "
                                      f"{tuple(getattr(v, 'shape', ()))}, the run's has {tuple(p.shape)}; {_FIX}")
                p.copy_(v)
    optimizer.load_state_dict(ckpt["optimizer"])


_SECTIONS = ("environment", "behavior", "processes")


def _process_names(model) -> dict[str, list[str]]:
    """The names of the model's processes per section, in order (what ``learnable``'s keys index)."""
    return {s: [p.name for p in getattr(model, s)] for s in _SECTIONS if hasattr(model, s)}


def process_weights(path: str | os.PathLike, field: str = "weights") -> dict[str, dict]:
    """The trained weights of every process with modules of its own in a calibration checkpoint, by name.

    Args:
        path: a checkpoint, or the output folder of a ``task=calibrate`` run (its ``checkpoint.pt``); read with
            :func:`read` (header, length and SHA-256 digest verified before any value is used).
        field (str): the config field that named ``path``, for messages.

    Returns:
        ``{process name: {"weights": {name within the process: tensor}, "config": its entry of the run's
        model config}}`` (names as a ``named_parameters()`` of the process gives them, e.g. ``net.layers.0.weight``;
        of a checkpoint written before process names were saved, ``<section>[<index>]`` and config ``None``).

    Raises:
        ConfigError: the file cannot be used (:func:`read`), or it holds no process weights.
    """
    path = Path(path)
    if path.is_dir() and (path / "checkpoint.pt").is_file():
        path = path / "checkpoint.pt"
    ckpt = read(path, field)
    where = f"{field}: checkpoint {str(path)!r}"
    try:
        model_config = json.loads(ckpt["config"]).get("model") or {}
        learnable = dict(ckpt["learnable"])
        names = ckpt.get("processes") or {}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ConfigError(f"{where} is not a calibration checkpoint (no config or fitted values); give the "
                          "checkpoint.pt, or the folder, of a task=calibrate run") from None
    out: dict[str, dict] = {}
    for key, value in learnable.items():
        section, _, rest = key.partition(".")
        index, _, local = rest.partition(".")
        if section not in _SECTIONS or not index.isdigit() or not local:
            continue  # the parameter set (params.*) and anything else that is not a process's own module
        i, known = int(index), names.get(section) or []
        name = known[i] if i < len(known) else f"{section}[{i}]"  # a checkpoint without the names: by position
        entries = model_config.get(section)
        entry = entries.get(name) if isinstance(entries, dict) and i < len(known) else None
        out.setdefault(name, {"weights": {}, "config": entry if isinstance(entry, dict) else None})
        out[name]["weights"][local] = value
    if not out:
        raise ConfigError(f"{where} holds no trained weights of a process (its run fitted only "
                          f"{sorted(learnable)}); give the checkpoint of a calibration that trained one, e.g. "
                          "+experiment=behavior_neural")
    return out
