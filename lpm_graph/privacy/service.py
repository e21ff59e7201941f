"""The aggregator as a network service: one secure-aggregation round over HTTP (FastAPI, served by uvicorn).

The service speaks the messages of :mod:`lpm_graph.privacy.secagg` — signed :class:`~lpm_graph.privacy.Envelope`
objects as JSON — so a client on another machine runs the same :class:`~lpm_graph.privacy.SecAggClient` through
:class:`~lpm_graph.privacy.client.RemoteClient`. Each step has a deadline: it closes when every client it expects
has sent, or when its deadline passes; a client that has not sent by then counts as a dropout, and the round
continues if enough remain (else it fails, and every later request is answered with the reason).

==========================  ======  =========================================================================
path                        method  what
==========================  ======  =========================================================================
``/round``                  GET     the signed round announcement
``/keys``                   POST    a client's key advertisement
``/key_list/{client}``      GET     its neighbours' advertisements, once Round 0 closes (``pending`` before)
``/shares``                 POST    a client's encrypted shares
``/inbox/{client}``         GET     the shares addressed to it, once Round 1 closes
``/masked``                 POST    a client's masked input
``/unmask/{client}``        GET     its unmask request, once Round 2 closes
``/reveal``                 POST    a client's revealed shares
``/result``                 GET     the signed sum (base64 of little-endian uint64) and survivors, once done
``/status``                 GET     the step, the clients it still waits for, the seconds to its deadline
                                    (``null`` before the first client reads the announcement)
==========================  ======  =========================================================================

A ``GET`` answers ``{"status": "pending"}`` until its step is ready and ``{"status": "ready", "message": ...}``
after. Errors carry ``{"detail": {"error": kind, "message": reason}}``: a message the server refuses, 400
``refused``; one that comes after its step closed, 409 ``closed``; a request of a client that dropped out, 410
``closed``; anything asked of a failed round, 410 ``failed``.
"""
from __future__ import annotations

import base64
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lpm_graph.errors import PrivacyConfigError, PrivacyError
from lpm_graph.privacy.secagg import SERVER, Envelope, RoundConfig, SecAggServer, seal

__all__ = ["AggregatorService", "RoundClosed", "RoundFailed", "create_app", "serve"]

_NEXT = {"keys": "shares", "shares": "masked", "masked": "reveal", "reveal": "done"}


class RoundClosed(PrivacyError):
    """A message that arrived after its step closed (the sender counts as a dropout of that step)."""


class RoundFailed(PrivacyError):
    """The round cannot complete (too few clients remained); the message says at which step and why."""


class AggregatorService:
    """One round of a :class:`SecAggServer` with a deadline per step, safe to call from many threads.

    Args:
        config: the round (:func:`~lpm_graph.privacy.make_round`).
        identity: the server's Ed25519 signing key.
        client_keys: each client's Ed25519 verification key.
        step_timeout: seconds each step stays open for clients that have not sent, from the moment it opens (the
            first step: when the first client reads the announcement; each later one: when the previous closes).
        clock: a monotonic clock in seconds (``time.monotonic``).
    """

    def __init__(self, config: RoundConfig, identity: Ed25519PrivateKey, client_keys: Mapping[int, Ed25519PublicKey],
                 *, step_timeout: float, clock: Callable[[], float] = time.monotonic):
        if not step_timeout > 0:
            raise PrivacyConfigError(f"AggregatorService: step_timeout={step_timeout!r} must be a positive number of "
                                     "seconds")
        self.server = SecAggServer(config, identity, client_keys)
        self._identity = identity
        self._result_message: Envelope | None = None
        self.step_timeout = float(step_timeout)
        self._clock = clock
        self._lock = threading.RLock()
        self._announcement = self.server.announcement()
        self._opened: float | None = None  # the first step opens when the first client reads the announcement
        self._closed_steps: dict[str, object] = {}  # step -> what its closing produced
        self._failure: str | None = None
        self._result: np.ndarray | None = None
        self._done = threading.Event()

    # ------------------------------------------------------------------------------------------------------
    @property
    def stage(self) -> str:
        return "failed" if self._failure else self.server.stage

    def advance(self) -> None:
        """Close the current step if every expected client has sent or its deadline has passed."""
        with self._lock:
            while self._failure is None and self.server.stage in _NEXT:
                if self.server.waiting() and (self._opened is None or self._clock() < self._opened + self.step_timeout):
                    return
                self._close()

    def _close(self) -> None:
        stage = self.server.stage
        try:
            if stage == "keys":
                self._closed_steps[stage] = self.server.key_lists()
            elif stage == "shares":
                self._closed_steps[stage] = self.server.inboxes()
            elif stage == "masked":
                self._closed_steps[stage] = self.server.unmask_requests()
            else:
                self._result = self.server.result()
                self._result_message = seal(self._identity, SERVER, {
                    "type": "result", "round": self.server.round_id, "survivors": sorted(self.server.survivors),
                    "sum": base64.b64encode(self._result.astype("<u8").tobytes()).decode("ascii")})
                self._done.set()
        except PrivacyError as e:
            self._failure = f"the round failed when closing step {stage!r}: {e}"
            self._done.set()
        self._opened = self._clock()

    def _check_open(self) -> None:
        if self._failure:
            raise RoundFailed(self._failure)

    # ------------------------------------------------------------------------------------------------------
    def announcement(self) -> Envelope:
        """The signed announcement; the first call opens the round's first step (its deadline starts)."""
        with self._lock:
            if self._opened is None:
                self._opened = self._clock()
            return self._announcement

    def receive(self, step: str, payload: object) -> None:
        """A client's message for ``step`` (``keys``, ``shares``, ``masked``, ``reveal``), as decoded JSON."""
        with self._lock:
            self.advance()
            self._check_open()
            if self.server.stage != step:
                raise RoundClosed(f"a {step!r} message arrived while the round is at step {self.server.stage!r}; "
                                  "the step closed at its deadline and its sender counts as a dropout")
            env = Envelope.from_dict(payload)
            {"keys": self.server.receive_keys, "shares": self.server.receive_shares,
             "masked": self.server.receive_masked, "reveal": self.server.receive_reveal}[step](env)
            self.advance()

    def message_for(self, step: str, client: int) -> Envelope | None:
        """What the closing of ``step`` produced for ``client``; ``None`` while the step is open."""
        with self._lock:
            self.advance()
            self._check_open()
            if step not in self._closed_steps:
                return None
            produced = self._closed_steps[step]
            if step == "masked" and client not in produced:  # the unmask requests: one for each survivor
                raise RoundClosed(f"client {client} did not upload a masked input in time; it is a dropout")
            if client not in produced:
                raise RoundClosed(f"client {client} did not send its {step!r} message in time; it is a dropout")
            return produced[client]

    def result(self) -> np.ndarray | None:
        """The sum (uint64 ``[length]``), ``None`` while the round runs; raises :class:`RoundFailed` if it failed."""
        with self._lock:
            self.advance()
            self._check_open()
            return self._result

    def result_message(self) -> Envelope | None:
        """The signed ``result`` message (the sum, base64 of little-endian uint64, and the survivors)."""
        with self._lock:
            self.result()
            return self._result_message

    def wait_result(self, timeout: float, poll: float = 0.02) -> np.ndarray:
        """Wait (at most ``timeout`` seconds, advancing the deadlines) for the round's sum."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            out = self.result()
            if out is not None:
                return out
            self._done.wait(poll)
        raise PrivacyError(f"AggregatorService: no result within {timeout} s (step {self.stage!r}, waiting for "
                           f"{sorted(self.server.waiting())[:10]})")

    def status(self) -> dict:
        with self._lock:
            self.advance()
            if self._opened is None or self.server.stage not in _NEXT:
                left = None if self._opened is None else 0.0
            else:
                left = max(0.0, self._opened + self.step_timeout - self._clock())
            return {"round": self.server.round_id, "stage": self.stage, "waiting": sorted(self.server.waiting()),
                    "seconds_left": left, "failure": self._failure}


# ----------------------------------------------------------------------------------------------------------
# HTTP


def create_app(service: AggregatorService):
    """The FastAPI application serving ``service`` (paths in the module docstring)."""
    from fastapi import Body, FastAPI, HTTPException

    app = FastAPI(title="lpm_graph secure aggregation", docs_url=None, redoc_url=None, openapi_url=None)

    def answer(fn, *args, closed: int = 410):
        try:
            return fn(*args)
        except RoundFailed as e:
            raise HTTPException(status_code=410, detail={"error": "failed", "message": str(e)}) from None
        except RoundClosed as e:
            raise HTTPException(status_code=closed, detail={"error": "closed", "message": str(e)}) from None
        except PrivacyError as e:
            raise HTTPException(status_code=400, detail={"error": "refused", "message": str(e)}) from None

    def ready(env: Envelope | None) -> dict:
        return {"status": "pending"} if env is None else {"status": "ready", "message": env.to_dict()}

    @app.get("/round")
    def get_round() -> dict:
        return ready(service.announcement())

    for step in ("keys", "shares", "masked", "reveal"):
        def post(payload: dict = Body(...), _step: str = step) -> dict:  # noqa: B008 (FastAPI's idiom)
            answer(service.receive, _step, payload, closed=409)
            return {"status": "accepted"}
        app.post(f"/{step}")(post)

    for path, step in (("key_list", "keys"), ("inbox", "shares"), ("unmask", "masked")):
        def get(client: int, _step: str = step) -> dict:
            return ready(answer(service.message_for, _step, client))
        app.get(f"/{path}/{{client}}")(get)

    @app.get("/result")
    def get_result() -> dict:
        return ready(answer(service.result_message))

    @app.get("/status")
    def get_status() -> dict:
        return service.status()

    return app


@contextlib.contextmanager
def serve(app, host: str = "127.0.0.1", port: int = 0, *, start_timeout: float = 10.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yield its base URL (``port=0``: an ephemeral port)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", ws="none",
                                           lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, name="lpm_graph-secagg-service", daemon=True)
    thread.start()
    end = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > end:
            server.should_exit = True
            raise PrivacyError(f"secagg service: uvicorn did not start on {host}:{port} within {start_timeout} s")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=start_timeout)


# ----------------------------------------------------------------------------------------------------------
# command line: python -m lpm_graph.privacy.service


def main(argv: list[str] | None = None) -> int:
    """Serve one round; print ``{"listening": url, "round": id}`` once listening and, when the round completes,
    ``{"sum": [...], "survivors": [...]}`` (the sum as unsigned 64-bit integers, and decoded when
    ``--frac-bits`` and ``--clip`` are given). Exit status 2 with one line on a refused round or bad input."""
    import argparse
    import json
    import sys

    from lpm_graph.errors import DataFileError
    from lpm_graph.privacy.encoding import FixedPoint
    from lpm_graph.privacy.keys import read_private_key, read_public_keys
    from lpm_graph.privacy.secagg import make_round

    parser = argparse.ArgumentParser(prog="python -m lpm_graph.privacy.service",
                                     description="Serve one secure-aggregation round over HTTP.")
    parser.add_argument("--server-key", required=True, help="the server's Ed25519 private key (PEM)")
    parser.add_argument("--public-keys", required=True, help="JSON of every party's public key (keys.py)")
    parser.add_argument("--length", type=int, required=True, help="the vector length (uint64 words)")
    parser.add_argument("--threshold", type=int, required=True, help="the Shamir threshold t")
    parser.add_argument("--min-clients", type=int, default=3, help="the smallest sum released (at least 3)")
    parser.add_argument("--neighbours", type=int, default=None, help="SecAgg+ degree (even); default: everyone")
    parser.add_argument("--step-timeout", type=float, default=60.0, help="seconds each step waits for clients")
    parser.add_argument("--round-timeout", type=float, default=3600.0, help="seconds the whole round may take")
    parser.add_argument("--linger", type=float, default=10.0, help="seconds to keep serving the result")
    parser.add_argument("--frac-bits", type=int, default=None, help="decode the sum with FixedPoint(frac_bits, clip)")
    parser.add_argument("--clip", type=float, default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    args = parser.parse_args(argv)
    try:
        if (args.frac_bits is None) != (args.clip is None):
            raise PrivacyConfigError("--frac-bits and --clip go together")
        codec = None if args.frac_bits is None else FixedPoint(args.frac_bits, args.clip)
        server_key = read_private_key(args.server_key)
        server_public, clients = read_public_keys(args.public_keys)
        if server_public.public_bytes_raw() != server_key.public_key().public_bytes_raw():
            raise DataFileError(f"{args.public_keys}: field 'server' is not the public key of {args.server_key}")
        cfg = make_round(sorted(clients), threshold=args.threshold, min_clients=args.min_clients,
                         length=args.length, neighbours=args.neighbours)
        if codec is not None:
            codec.check_capacity(len(cfg.clients))
        service = AggregatorService(cfg, server_key, clients, step_timeout=args.step_timeout)
        with serve(create_app(service), args.host, args.port) as url:
            print(json.dumps({"listening": url, "round": cfg.round_id}), flush=True)
            total = service.wait_result(args.round_timeout, poll=0.05)
            survivors = sorted(service.server.survivors)
            out = {"sum": [int(v) for v in total], "survivors": survivors}
            if codec is not None:
                out["decoded"] = [float(v) for v in codec.decode_sum(total, len(survivors))]
            print(json.dumps(out), flush=True)
            time.sleep(args.linger)
    except (PrivacyError, DataFileError) as e:
        print(f"lpm_graph.privacy.service: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
