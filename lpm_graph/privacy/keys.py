"""Identity keys on disk, so that a server and clients on different machines can take part in a round.

- A private Ed25519 key: a PEM file (PKCS#8, unencrypted; protect it with file permissions), written by
  :func:`write_private_key` and read by :func:`read_private_key`.
- The public keys every party must hold: one JSON file ``{"server": hex, "clients": {"<id>": hex, ...}}`` of raw
  32-byte Ed25519 public keys, written by :func:`write_public_keys` and read by :func:`read_public_keys`.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lpm_graph.errors import DataFileError, MissingInputError

__all__ = ["write_private_key", "read_private_key", "write_public_keys", "read_public_keys"]


def write_private_key(path: str | Path, key: Ed25519PrivateKey) -> None:
    """Write ``key`` as PEM (PKCS#8) to a new file readable by its owner only; an existing file is refused."""
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def read_private_key(path: str | Path) -> Ed25519PrivateKey:
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: no such private key file (write one with write_private_key)")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        raise DataFileError(f"{path}: not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise DataFileError(f"{path}: the key is {type(key).__name__}, not an Ed25519 key")
    return key


def write_public_keys(path: str | Path, server: Ed25519PublicKey, clients: Mapping[int, Ed25519PublicKey]) -> None:
    body = {"server": server.public_bytes_raw().hex(),
            "clients": {str(i): k.public_bytes_raw().hex() for i, k in sorted(clients.items())}}
    Path(path).write_text(json.dumps(body, indent=1) + "\n")


def read_public_keys(path: str | Path) -> tuple[Ed25519PublicKey, dict[int, Ed25519PublicKey]]:
    """``(server key, {client id: key})`` from a public-keys JSON file."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: no such public-keys file (write one with write_public_keys)")
    try:
        body = json.loads(path.read_text())
        server = Ed25519PublicKey.from_public_bytes(bytes.fromhex(body["server"]))
        clients = {int(i): Ed25519PublicKey.from_public_bytes(bytes.fromhex(h)) for i, h in body["clients"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataFileError(f"{path}: not a public-keys file {{'server': hex, 'clients': {{id: hex}}}} ({e})") \
            from None
    if not clients:
        raise DataFileError(f"{path}: field 'clients' lists no client")
    return server, clients
