"""The client library of the aggregation service: one :class:`~lpm_graph.privacy.SecAggClient` driven over HTTP.

Every wait is bounded: a step's message is polled every ``poll_interval`` seconds for at most ``timeout``
seconds, then :class:`~lpm_graph.errors.PrivacyError` is raised. A message sent after its step closed is answered
with :class:`~lpm_graph.privacy.service.RoundClosed` (the client counts as a dropout); a failed round with
:class:`~lpm_graph.privacy.service.RoundFailed`.
"""
from __future__ import annotations

import base64
import time
from collections.abc import Mapping

import httpx
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lpm_graph.errors import PrivacyConfigError, PrivacyError
from lpm_graph.privacy.secagg import SERVER, Envelope, SecAggClient
from lpm_graph.privacy.service import RoundClosed, RoundFailed

__all__ = ["RemoteClient"]


class RemoteClient:
    """One client of one round served by :func:`~lpm_graph.privacy.service.create_app` at ``base_url``.

    Args:
        base_url: the service, e.g. ``http://127.0.0.1:8000``.
        client_id, identity, server_key, peer_keys: as for :class:`~lpm_graph.privacy.SecAggClient`.
        timeout: the longest wait, in seconds, for any one step's message (and for the result).
        poll_interval: seconds between polls of a step that is not ready.
        request_timeout: the HTTP timeout of one request, in seconds.
    """

    def __init__(self, base_url: str, client_id: int, identity: Ed25519PrivateKey, server_key: Ed25519PublicKey,
                 peer_keys: Mapping[int, Ed25519PublicKey], *, timeout: float = 30.0, poll_interval: float = 0.05,
                 request_timeout: float = 10.0):
        if not timeout > 0 or not poll_interval > 0 or not request_timeout > 0:
            raise PrivacyConfigError("RemoteClient: timeout, poll_interval and request_timeout must be positive")
        self.id = client_id
        self.protocol = SecAggClient(client_id, identity, server_key, peer_keys)
        self._server_key = server_key
        self.timeout = float(timeout)
        self.poll_interval = float(poll_interval)
        self._http = httpx.Client(base_url=base_url, timeout=request_timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, payload: object = None) -> dict:
        try:
            response = self._http.request(method, path, json=payload)
        except httpx.HTTPError as e:
            raise PrivacyError(f"secagg client {self.id}: {method} {path} failed: {e}") from None
        if response.status_code == 200:
            return response.json()
        try:
            detail = response.json()["detail"]
            kind, message = detail["error"], detail["message"]
        except (ValueError, KeyError, TypeError):
            kind, message = "refused", response.text[:500]
        error = {"closed": RoundClosed, "failed": RoundFailed}.get(kind, PrivacyError)
        raise error(f"secagg client {self.id}: {method} {path}: {message} (HTTP {response.status_code})")

    def _wait(self, path: str) -> dict:
        end = time.monotonic() + self.timeout
        while True:
            body = self._request("GET", path)
            if body.get("status") == "ready":
                return body
            if time.monotonic() + self.poll_interval > end:
                raise PrivacyError(f"secagg client {self.id}: {path} was not ready within {self.timeout} s")
            time.sleep(self.poll_interval)

    def _message(self, path: str) -> Envelope:
        env = Envelope.from_dict(self._wait(path)["message"])
        if env.sender != SERVER:
            raise PrivacyError(f"secagg client {self.id}: {path} returned a message not sent by the server")
        return env

    # the steps, in order --------------------------------------------------------------------------------
    def join(self) -> None:
        """Round 0: read the announcement, advertise fresh keys."""
        self._request("POST", "/keys", self.protocol.advertise(self._message("/round")).to_dict())

    def share(self) -> None:
        """Round 1: wait for the neighbours' keys, send the encrypted shares."""
        self._request("POST", "/shares", self.protocol.share_keys(self._message(f"/key_list/{self.id}")).to_dict())

    def upload(self, x: np.ndarray) -> None:
        """Round 2: wait for the inbox, upload the masked input ``x`` (uint64 ``[length]``)."""
        masked = self.protocol.masked_input(self._message(f"/inbox/{self.id}"), x)
        self._request("POST", "/masked", masked.to_dict())

    def reveal(self) -> None:
        """Round 4: wait for the unmask request, send the shares it asks for (or refuse it)."""
        self._request("POST", "/reveal", self.protocol.unmask(self._message(f"/unmask/{self.id}")).to_dict())

    def result(self) -> tuple[np.ndarray, list[int]]:
        """The released sum (uint64 ``[length]``) and the survivors whose inputs it holds."""
        cfg = self.protocol.config
        if cfg is None:
            raise PrivacyError(f"secagg client {self.id}: join the round before asking for its result")
        body = self._message("/result").open(self._server_key, kind="result", round_id=cfg.round_id)
        total = np.frombuffer(base64.b64decode(body["sum"]), dtype="<u8").astype(np.uint64)
        if total.shape != (cfg.length,):
            raise PrivacyError(f"secagg client {self.id}: the result has {total.size} words, not {cfg.length}")
        return total, list(body["survivors"])

    def run(self, x: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """Every step of the round with input ``x``; returns :meth:`result`."""
        self.join()
        self.share()
        self.upload(x)
        self.reveal()
        return self.result()


def main(argv: list[str] | None = None) -> int:
    """Join one round as one client: ``python -m lpm_graph.privacy.client --url URL --id I --key KEY.pem
    --public-keys KEYS.json --input X.npy [--frac-bits F --clip C]``; prints ``{"sum": [...], "survivors": [...]}``.
    Without ``--frac-bits``/``--clip`` the input must already be uint64 (``FixedPoint.encode``)."""
    import argparse
    import json
    import sys

    from lpm_graph.errors import DataFileError
    from lpm_graph.privacy.encoding import FixedPoint
    from lpm_graph.privacy.keys import read_private_key, read_public_keys

    parser = argparse.ArgumentParser(prog="python -m lpm_graph.privacy.client",
                                     description="Join one secure-aggregation round over HTTP.")
    parser.add_argument("--url", required=True)
    parser.add_argument("--id", type=int, required=True, help="this client's id")
    parser.add_argument("--key", required=True, help="this client's Ed25519 private key (PEM)")
    parser.add_argument("--public-keys", required=True, help="JSON of every party's public key")
    parser.add_argument("--input", required=True, help=".npy vector: float with --frac-bits/--clip, else uint64")
    parser.add_argument("--frac-bits", type=int, default=None)
    parser.add_argument("--clip", type=float, default=None)
    parser.add_argument("--timeout", type=float, default=600.0, help="the longest wait for one step (seconds)")
    args = parser.parse_args(argv)
    try:
        if (args.frac_bits is None) != (args.clip is None):
            raise PrivacyConfigError("--frac-bits and --clip go together")
        try:
            x = np.load(args.input, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataFileError(f"{args.input}: not a .npy array ({e})") from None
        if args.frac_bits is not None:
            x = FixedPoint(args.frac_bits, args.clip).encode(x)
        server_key, peers = read_public_keys(args.public_keys)
        with RemoteClient(args.url, args.id, read_private_key(args.key), server_key, peers,
                          timeout=args.timeout) as client:
            total, survivors = client.run(x)
        print(json.dumps({"sum": [int(v) for v in total], "survivors": survivors}), flush=True)
    except (PrivacyError, DataFileError) as e:
        print(f"lpm_graph.privacy.client: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
