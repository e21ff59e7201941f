"""Identity key files (lpm_graph/privacy/keys.py): what a server and clients on separate machines read."""
from __future__ import annotations

import pytest

pytest.importorskip("cryptography")

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from lpm_graph.errors import DataFileError, MissingInputError  # noqa: E402
from lpm_graph.privacy.keys import (read_private_key, read_public_keys, write_private_key,  # noqa: E402
                                    write_public_keys)


def write_keys(tmp_path, n):
    """A server key and ``n`` client keys in ``tmp_path`` (server.pem, client<i>.pem, keys.json)."""
    server = Ed25519PrivateKey.generate()
    clients = {i: Ed25519PrivateKey.generate() for i in range(n)}
    write_private_key(tmp_path / "server.pem", server)
    for i, k in clients.items():
        write_private_key(tmp_path / f"client{i}.pem", k)
    write_public_keys(tmp_path / "keys.json", server.public_key(), {i: k.public_key() for i, k in clients.items()})
    return server, clients


def test_key_files_round_trip_and_bad_files_refused(tmp_path):
    server, clients = write_keys(tmp_path, 3)
    assert read_private_key(tmp_path / "client1.pem").public_key().public_bytes_raw() == \
        clients[1].public_key().public_bytes_raw()
    s, c = read_public_keys(tmp_path / "keys.json")
    assert s.public_bytes_raw() == server.public_key().public_bytes_raw() and sorted(c) == [0, 1, 2]
    assert c[2].public_bytes_raw() == clients[2].public_key().public_bytes_raw()  # ids keep their own keys
    assert (tmp_path / "server.pem").stat().st_mode & 0o077 == 0
    with pytest.raises(FileExistsError):
        write_private_key(tmp_path / "server.pem", server)
    with pytest.raises(MissingInputError):
        read_private_key(tmp_path / "nope.pem")
    (tmp_path / "bad.json").write_text('{"server": "00"}')
    with pytest.raises(DataFileError, match="bad.json"):
        read_public_keys(tmp_path / "bad.json")


def test_a_public_keys_file_without_clients_and_a_non_key_file_are_refused(tmp_path):
    server, _ = write_keys(tmp_path, 1)
    (tmp_path / "none.json").write_text('{"server": "%s", "clients": {}}' % server.public_key().public_bytes_raw().hex())
    with pytest.raises(DataFileError, match="lists no client"):
        read_public_keys(tmp_path / "none.json")
    (tmp_path / "text.pem").write_text("not a key\n")
    with pytest.raises(DataFileError, match="not an unencrypted PEM private key"):
        read_private_key(tmp_path / "text.pem")
