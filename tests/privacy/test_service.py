"""The aggregation service over HTTP on 127.0.0.1 (an ephemeral port): a full round, a client that stalls past a
step's deadline counted as a dropout, a round that fails when too few remain, refusals answered over the wire."""
from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("cryptography")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from lpm_graph.errors import PrivacyError  # noqa: E402
from lpm_graph.privacy import make_round  # noqa: E402
from lpm_graph.privacy.client import RemoteClient  # noqa: E402
from lpm_graph.privacy.secagg import Envelope  # noqa: E402
from lpm_graph.privacy.service import AggregatorService, RoundClosed, RoundFailed, create_app, serve  # noqa: E402

WAIT = 10.0  # the longest any client waits for one step (seconds); the tests finish far sooner


class Round:
    def __init__(self, n, *, threshold, step_timeout, length=16, min_clients=3, neighbours=None, seed=0):
        self.ids = list(range(n))
        self.identities = {i: Ed25519PrivateKey.generate() for i in self.ids}
        self.verify = {i: k.public_key() for i, k in self.identities.items()}
        self.server_identity = Ed25519PrivateKey.generate()
        cfg = make_round(self.ids, threshold=threshold, min_clients=min_clients, length=length, neighbours=neighbours)
        self.service = AggregatorService(cfg, self.server_identity, self.verify, step_timeout=step_timeout)
        rng = np.random.default_rng(seed)
        self.inputs = {i: rng.integers(0, 2 ** 64, size=length, dtype=np.uint64) for i in self.ids}

    def client(self, url, i):
        return RemoteClient(url, i, self.identities[i], self.server_identity.public_key(), self.verify,
                            timeout=WAIT, poll_interval=0.02)

    def plain_sum(self, ids):
        total = np.zeros_like(self.inputs[0])
        for i in ids:
            total = total + self.inputs[i]
        return total


def _stall_until(service, stage):
    end = time.monotonic() + WAIT
    while service.stage != stage:
        assert time.monotonic() < end, f"the service never reached step {stage!r}"
        time.sleep(0.02)


def _run_all(fns):
    with ThreadPoolExecutor(max_workers=len(fns)) as pool:
        futures = [pool.submit(f) for f in fns]
        return [f.result(timeout=3 * WAIT) for f in futures]


def test_a_round_over_http():
    r = Round(5, threshold=3, step_timeout=WAIT, neighbours=2)
    with serve(create_app(r.service)) as url:
        assert url.startswith("http://127.0.0.1:")

        def one(i):
            with r.client(url, i) as c:
                return c.run(r.inputs[i])

        results = _run_all([lambda i=i: one(i) for i in r.ids])
    for total, survivors in results:
        assert survivors == r.ids
        assert np.array_equal(total, r.plain_sum(r.ids))


def test_a_client_that_stalls_past_the_deadline_is_a_dropout():
    # client 5 stalls before its masked upload, client 4 before revealing: the steps close at their deadlines,
    # the round completes with the sum of the clients that uploaded (0..4), and the late upload is refused
    r = Round(6, threshold=4, step_timeout=2.0)  # generous: honest clients on a loaded machine stay in time
    with serve(create_app(r.service)) as url:

        def honest(i):
            with r.client(url, i) as c:
                return c.run(r.inputs[i])

        def stalls_before_upload():
            with r.client(url, 5) as c:
                c.join()
                c.share()
                _stall_until(r.service, "reveal")  # a bounded stall until the upload step has closed
                with pytest.raises(RoundClosed, match="dropout|closed"):
                    c.upload(r.inputs[5])
                with pytest.raises(RoundClosed, match="dropout"):
                    c.reveal()
                return c.result()

        def stalls_before_reveal():
            with r.client(url, 4) as c:
                c.join()
                c.share()
                c.upload(r.inputs[4])
                return c.result()  # never reveals

        results = _run_all([lambda i=i: honest(i) for i in range(4)] + [stalls_before_upload, stalls_before_reveal])
    expected = r.plain_sum(range(5))
    for total, survivors in results:
        assert survivors == [0, 1, 2, 3, 4]
        assert np.array_equal(total, expected)
    assert r.service.server.responders == frozenset(range(4))


def test_too_few_remaining_fails_the_round():
    r = Round(4, threshold=3, step_timeout=2.0)
    with serve(create_app(r.service)) as url:

        def honest(i):
            with r.client(url, i) as c:
                c.join()
                c.share()
                c.upload(r.inputs[i])
                with pytest.raises(RoundFailed, match="fewer than min_clients=3"):
                    c.reveal()
                return True

        def leaves(i):
            with r.client(url, i) as c:
                c.join()
                c.share()
                return True

        assert all(_run_all([lambda: honest(0), lambda: honest(1), lambda: leaves(2), lambda: leaves(3)]))
        with pytest.raises(RoundFailed):
            r.service.result()


def test_refusals_over_the_wire():
    r = Round(3, threshold=2, step_timeout=WAIT)
    with serve(create_app(r.service)) as url:
        c = r.client(url, 0)
        body = c._request("GET", "/round")
        advert = c.protocol.advertise(Envelope.from_dict(body["message"]))
        tampered = dataclasses.replace(advert, body=advert.body.replace(b'"keys"', b'"kays"'))
        with pytest.raises(PrivacyError, match="signature") as err:
            c._request("POST", "/keys", tampered.to_dict())
        assert "HTTP 400" in str(err.value)
        c._request("POST", "/keys", advert.to_dict())
        with pytest.raises(PrivacyError, match="not expected"):
            c._request("POST", "/keys", advert.to_dict())  # the same client twice
        response = httpx.post(url + "/keys", json={"sender": 1}, timeout=5)
        assert response.status_code == 400 and response.json()["detail"]["error"] == "refused"
        assert c._request("GET", "/key_list/0") == {"status": "pending"}
        assert r.service.status()["waiting"] == [1, 2]
        c.close()
