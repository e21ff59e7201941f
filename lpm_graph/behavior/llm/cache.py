"""The answer cache: every valid answer a backend gave, on disk (SQLite) and in memory.

**Key** = SHA-256 of the canonical JSON of ``{cache format, backend kind,
model id, endpoint, messages, temperature, seed, max_tokens, answer contract
(schema, method, candidates)}``.  Nothing else — not the run's seed, the
step, the population or the process's name — so a rerun, every iteration of
a calibration, a resumed calibration, another scenario of ``task=analyze``
and a step recomputed by checkpointing in the backward pass all ask the
same question with the same key, and get the stored answer without a call.

Only valid answers are stored on disk (the reply as received, validated
again when read).  A failed question is remembered in memory for the rest
of the run, so a recomputed step does not ask again; a new run asks again.

The file is one table ``answers(key, request, reply, created)``; ``request``
is the canonical JSON of what was asked (no API key is ever part of it), so
the file can be read with ``sqlite3`` to see what was asked and answered.
Several processes may share one file (SQLite's locking, a 30 s busy
timeout).
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

from lpm_graph.errors import ConfigError

__all__ = ["AnswerCache", "request_key", "canonical", "CACHE_FORMAT"]

CACHE_FORMAT = 1


def canonical(payload) -> str:
    """Sorted-key, compact JSON (refusing NaN): the text that is hashed."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def request_key(payload: dict) -> str:
    """The cache key of a request payload (module docstring)."""
    return hashlib.sha256(canonical({"format": CACHE_FORMAT, **payload}).encode()).hexdigest()


class AnswerCache:
    """Answers by request key, in a SQLite file (``path``; ``None``: in memory only, for this process).

    Args:
        path (str | PathLike, optional): the SQLite file; its folder is created.
    """

    def __init__(self, path: str | os.PathLike | None):
        self.path = None if path is None else Path(path).expanduser()
        self._memory: dict[str, str] = {}
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def __getstate__(self):  # a copied model opens its own connection
        state = dict(self.__dict__)
        state["_conn"], state["_lock"] = None, None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False)
                conn.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, request TEXT NOT NULL, "
                             "reply TEXT NOT NULL, created REAL NOT NULL)")
                conn.commit()
            except (OSError, sqlite3.Error) as exc:
                raise ConfigError(f"the answer cache {str(self.path)!r} cannot be opened ({exc}); set the "
                                  "behaviour's cache to a writable file or null") from None
            self._conn = conn
        return self._conn

    def get(self, key: str) -> tuple[str | None, str]:
        """``(reply, where)``: where is ``"memory"``, ``"disk"`` or ``"miss"`` (reply None)."""
        with self._lock:
            if key in self._memory:
                return self._memory[key], "memory"
            if self.path is None:
                return None, "miss"
            row = self._connection().execute("SELECT reply FROM answers WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None, "miss"
            self._memory[key] = row[0]
            return row[0], "disk"

    def put(self, key: str, request: str, reply: str) -> None:
        """Store a valid reply (memory, and the file if there is one)."""
        with self._lock:
            self._memory[key] = reply
            if self.path is not None:
                conn = self._connection()
                conn.execute("INSERT OR REPLACE INTO answers (key, request, reply, created) VALUES (?, ?, ?, ?)",
                             (key, request, reply, time.time()))
                conn.commit()

    def forget_memory(self) -> None:
        """Drop the in-memory layer (what a new process would see: only the file)."""
        with self._lock:
            self._memory.clear()

    def __len__(self) -> int:
        if self.path is None:
            return len(self._memory)
        with self._lock:
            return int(self._connection().execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass
