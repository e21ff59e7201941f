"""Secure aggregation (Bonawitz et al. 2017, SecAgg+): exact sums, dropouts at every step, refusals of small
groups, tampering, replays and requests for both secrets, and uploads that look uniform to the server."""
from __future__ import annotations

import base64
import dataclasses
import json
import math
from statistics import NormalDist

import numpy as np
import pytest

pytest.importorskip("cryptography")
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from lpm_graph.errors import ConfigError, PrivacyConfigError, PrivacyError  # noqa: E402
from lpm_graph.privacy import SecAggClient, SecAggServer, make_round, secure_sum  # noqa: E402
from lpm_graph.privacy.secagg import SERVER, Envelope, seal  # noqa: E402


def _inputs(n, d, seed):
    rng = np.random.default_rng(seed)
    return {i: rng.integers(0, 2 ** 64, size=d, dtype=np.uint64) for i in range(n)}


def _plain_sum(inputs, ids):
    total = np.zeros_like(next(iter(inputs.values())))
    for i in ids:
        total = total + inputs[i]
    return total


class Parties:
    """Identity keys for a set of clients and a server, reused across rounds (so replays can be tried)."""

    def __init__(self, ids):
        self.ids = list(ids)
        self.identities = {i: Ed25519PrivateKey.generate() for i in self.ids}
        self.verify = {i: k.public_key() for i, k in self.identities.items()}
        self.server_identity = Ed25519PrivateKey.generate()

    def round(self, length, threshold, min_clients=3, neighbours=None):
        cfg = make_round(self.ids, threshold=threshold, min_clients=min_clients, length=length, neighbours=neighbours)
        server = SecAggServer(cfg, self.server_identity, self.verify)
        clients = {i: SecAggClient(i, self.identities[i], self.server_identity.public_key(), self.verify)
                   for i in self.ids}
        return server, clients


def _to_upload(server, clients, inputs, skip=()):
    """Run a round up to the masked uploads (clients in ``skip`` do not upload); return the unmask request."""
    ann = server.announcement()
    for c in clients.values():
        server.receive_keys(c.advertise(ann))
    for i, kl in server.key_lists().items():
        server.receive_shares(clients[i].share_keys(kl))
    for i, inbox in server.inboxes().items():
        if i not in skip:
            server.receive_masked(clients[i].masked_input(inbox, inputs[i]))
    return server.unmask_request()


def _flip(env: Envelope, byte: int) -> Envelope:
    body = bytearray(env.body)
    body[byte % len(body)] ^= 0x01
    return dataclasses.replace(env, body=bytes(body))


def test_exact_sum_full_graph():
    inputs = _inputs(6, 64, seed=1)
    inputs[0][:3] = [0, 2 ** 64 - 1, 2 ** 63]  # wrap-around values
    assert np.array_equal(secure_sum(inputs, min_clients=3, threshold=4), _plain_sum(inputs, range(6)))


def test_exact_sum_secagg_plus_neighbours():
    inputs = _inputs(12, 16, seed=2)
    out = secure_sum(inputs, min_clients=3, threshold=3, neighbours=4)
    assert np.array_equal(out, _plain_sum(inputs, range(12)))


# three clients leave: SecAgg+ needs neighbourhoods of 7 (k = 6, t = 4) so that any graph keeps t in each
@pytest.mark.parametrize("neighbours, threshold", [(None, 6), (6, 4)])
def test_dropouts_at_each_step_give_the_sum_of_the_right_set(neighbours, threshold):
    inputs = _inputs(10, 8, seed=3)
    before, after_sharing, after_upload = {1}, {4}, {7}
    out = secure_sum(inputs, min_clients=3, threshold=threshold, neighbours=neighbours,
                     dropouts_before_sharing=before, dropouts=after_sharing, dropouts_after_upload=after_upload)
    # in the sum: every client that uploaded, including the one that left after its upload
    assert np.array_equal(out, _plain_sum(inputs, set(range(10)) - before - after_sharing))


def test_fewer_than_min_clients_survivors_refused():
    inputs = _inputs(5, 4, seed=4)
    with pytest.raises(PrivacyError, match="fewer than min_clients=4"):
        secure_sum(inputs, min_clients=4, threshold=3, dropouts={0, 1})
    with pytest.raises(PrivacyError, match="min_clients=4"):
        secure_sum(_inputs(3, 4, seed=4), min_clients=4, threshold=3)


def test_too_few_shares_to_unmask_refused():
    # 7 clients, t = 4: with three leaving after their upload four respond (enough); with four, three (too few)
    inputs = _inputs(7, 4, seed=5)
    assert np.array_equal(secure_sum(inputs, min_clients=3, threshold=4, dropouts_after_upload={0, 1, 2}),
                          _plain_sum(inputs, range(7)))
    with pytest.raises(PrivacyError, match="fewer than the threshold 4"):
        secure_sum(inputs, min_clients=3, threshold=4, dropouts_after_upload={0, 1, 2, 3})


@pytest.mark.parametrize("kwargs, match", [(dict(min_clients=2, threshold=3), "min_clients=2"),
                                           (dict(min_clients=3, threshold=3), "threshold=3"),
                                           (dict(min_clients=3, threshold=7), "threshold=7"),
                                           (dict(min_clients=3, threshold=3, neighbours=3), "neighbours=3")])
def test_bad_configuration_refused(kwargs, match):
    with pytest.raises(PrivacyConfigError, match=match) as err:
        secure_sum(_inputs(6, 2, seed=6), **kwargs)
    assert isinstance(err.value, ConfigError)


def test_tampered_messages_refused():
    parties = Parties(range(4))
    inputs = _inputs(4, 8, seed=7)
    server, clients = parties.round(8, threshold=3)
    ann = server.announcement()
    with pytest.raises(PrivacyError, match="signature"):
        clients[0].advertise(_flip(ann, 40))
    for c in clients.values():
        server.receive_keys(c.advertise(ann))
    key_lists = server.key_lists()
    uploads = {i: clients[i].share_keys(kl) for i, kl in key_lists.items()}
    for i in uploads:
        server.receive_shares(uploads[i])
    inboxes = server.inboxes()
    masked = clients[0].masked_input(inboxes[0], inputs[0])
    for byte in (5, len(masked.body) // 2, len(masked.body) - 3):
        with pytest.raises(PrivacyError, match="signature"):
            server.receive_masked(_flip(masked, byte))
    with pytest.raises(PrivacyError, match="signature"):
        server.receive_masked(dataclasses.replace(masked, signature=bytes(64)))
    # a message of client 0 presented as client 1's
    with pytest.raises(PrivacyError, match="signature"):
        server.receive_masked(dataclasses.replace(masked, sender=1))
    with pytest.raises(PrivacyError, match="Envelope"):
        server.receive_masked(masked.to_dict())
    server.receive_masked(masked)
    with pytest.raises(PrivacyError, match="not expected"):
        server.receive_masked(masked)  # a second upload of one client


def test_modified_encrypted_share_refused():
    parties = Parties(range(4))
    server, clients = parties.round(4, threshold=3)
    ann = server.announcement()
    for c in clients.values():
        server.receive_keys(c.advertise(ann))
    key_lists = server.key_lists()
    upload = clients[0].share_keys(key_lists[0])
    # a share upload changed on its way to the server breaks client 0's signature
    with pytest.raises(PrivacyError, match="signature"):
        server.receive_shares(_flip(upload, len(upload.body) // 2))
    server.receive_shares(upload)
    for i in (1, 2, 3):
        server.receive_shares(clients[i].share_keys(key_lists[i]))
    inbox = server.inboxes()[1]
    # an inbox changed on its way to client 1 breaks the server's signature ...
    with pytest.raises(PrivacyError, match="signature"):
        clients[1].masked_input(_flip(inbox, len(inbox.body) // 3), np.zeros(4, dtype=np.uint64))
    # ... and a ciphertext changed by whoever signs the inbox fails AES-GCM at the recipient: only clients 0 and
    # 1 hold the key of the share from 0 to 1
    body = json.loads(inbox.body)
    ct = bytearray(base64.b64decode(body["shares"]["0"]))
    ct[30] ^= 0x80
    body["shares"]["0"] = base64.b64encode(bytes(ct)).decode()
    forged = seal(parties.server_identity, SERVER, {k: v for k, v in body.items() if k != "sender"})
    with pytest.raises(PrivacyError, match="share from client 0 does not authenticate"):
        clients[1].masked_input(forged, np.zeros(4, dtype=np.uint64))
    # the share from 0 presented as the share from 2 (a swap) fails too: the associated data names the sender
    body = json.loads(inbox.body)
    body["shares"]["0"], body["shares"]["2"] = body["shares"]["2"], body["shares"]["0"]
    swapped = seal(parties.server_identity, SERVER, {k: v for k, v in body.items() if k != "sender"})
    with pytest.raises(PrivacyError, match="does not authenticate"):
        clients[1].masked_input(swapped, np.zeros(4, dtype=np.uint64))
    # a refused message leaves the client where it was: the genuine inbox is still accepted
    server.receive_masked(clients[1].masked_input(inbox, np.zeros(4, dtype=np.uint64)))


def test_replay_from_another_round_refused():
    # the same clients and server (the same identity keys) in two rounds: a validly signed message of round A
    # is refused in round B, whoever receives it
    parties = Parties(range(4))
    inputs = _inputs(4, 4, seed=8)
    server_a, clients_a = parties.round(4, threshold=3)
    server_b, clients_b = parties.round(4, threshold=3)
    assert server_a.round_id != server_b.round_id
    ann_a, ann_b = server_a.announcement(), server_b.announcement()
    adverts_a = {i: c.advertise(ann_a) for i, c in clients_a.items()}
    with pytest.raises(PrivacyError, match="replay"):
        server_b.receive_keys(adverts_a[0])
    for c in clients_b.values():
        server_b.receive_keys(c.advertise(ann_b))
    for a in adverts_a.values():
        server_a.receive_keys(a)
    key_lists_a, key_lists_b = server_a.key_lists(), server_b.key_lists()
    with pytest.raises(PrivacyError, match="replay"):
        clients_b[0].share_keys(key_lists_a[0])  # signed by the same server key, for round A
    for i in range(4):
        server_a.receive_shares(clients_a[i].share_keys(key_lists_a[i]))
        server_b.receive_shares(clients_b[i].share_keys(key_lists_b[i]))
    inboxes_a, inboxes_b = server_a.inboxes(), server_b.inboxes()
    upload_a = clients_a[0].masked_input(inboxes_a[0], inputs[0])
    with pytest.raises(PrivacyError, match="replay"):
        server_b.receive_masked(upload_a)
    server_b.receive_masked(clients_b[0].masked_input(inboxes_b[0], inputs[0]))


def test_request_for_both_secrets_of_a_client_refused():
    parties = Parties(range(5))
    inputs = _inputs(5, 4, seed=9)
    server, clients = parties.round(4, threshold=3)
    request = _to_upload(server, clients, inputs, skip={4})

    def ask(survivors, dropped):
        return seal(parties.server_identity, SERVER, {"type": "unmask", "round": server.round_id,
                                                      "survivors": survivors, "dropped": dropped})

    with pytest.raises(PrivacyError, match=r"both .* client\(s\) \[2\]"):
        clients[0].unmask(ask([0, 1, 2, 3], [2, 4]))
    with pytest.raises(PrivacyError, match="not list it as a survivor"):
        clients[0].unmask(ask([1, 2, 3], [0, 4]))
    reveal = clients[1].unmask(request)
    with pytest.raises(PrivacyError, match="second request"):
        clients[1].unmask(ask([0, 2, 3], [1, 4]))  # would add the mask key of client 1 after its seed share
    body = json.loads(reveal.body)
    assert set(body["b"]) == {"0", "1", "2", "3"} and set(body["s"]) == {"4"}
    server.receive_reveal(reveal)
    for i in (0, 2, 3):
        server.receive_reveal(clients[i].unmask(request))
    assert np.array_equal(server.result(), _plain_sum(inputs, range(4)))


def test_a_masked_upload_alone_looks_uniform():
    # the server sees y = x + masks; for x = 0 and for x at its largest, every one of the 64 bit positions of the
    # d words is set with frequency 1/2: counts ~ Binomial(d, 1/2), tolerance a two-sided normal quantile at
    # alpha = 1e-6, Bonferroni over 64 bits x 2 inputs x 2 clients. An unmasked or 32-bit mask fails by hundreds.
    d, alpha = 4096, 1e-6
    z = NormalDist().inv_cdf(1 - alpha / (2 * 64 * 2 * 2))
    tolerance = z * math.sqrt(d / 4)
    parties = Parties(range(4))
    for value in (0, 2 ** 64 - 1):
        inputs = {i: np.full(d, value, dtype=np.uint64) for i in range(4)}
        server, clients = parties.round(d, threshold=3)
        _to_upload(server, clients, inputs)
        for i in (0, 3):
            y = server._masked[i]
            bits = (y[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
            counts = bits.sum(axis=0).astype(np.int64)
            assert np.max(np.abs(counts - d / 2)) <= tolerance, (value, i, counts)


def test_masks_come_from_the_chacha20_keystream():
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    from lpm_graph.privacy import prg

    seed = bytes(range(32))
    stream = Cipher(algorithms.ChaCha20(seed, bytes(16)), mode=None).encryptor().update(bytes(24))
    assert np.array_equal(prg(seed, 3), np.frombuffer(stream, dtype="<u8"))
    assert not np.array_equal(prg(seed, 3), prg(bytes(31) + b"\x01", 3))


def _ring_order(hoods):
    start = min(hoods)
    order, prev = [start], None
    while len(order) < len(hoods):
        nxt = min(v for v in hoods[order[-1]] if v != order[-1] and v != prev)
        prev = order[-1]
        order.append(nxt)
    return order


def test_a_group_of_survivors_cut_off_from_the_rest_is_not_unmasked():
    # SecAgg+ on a ring (k = 2): if the two clients beside a pair of survivors drop out, the server could remove
    # every mask of that pair and learn the sum of two; the server refuses, and so does each client of the pair
    parties = Parties(range(8))
    inputs = _inputs(8, 4, seed=10)
    server, clients = parties.round(4, threshold=2, neighbours=2)
    ring = _ring_order(server.config.neighbourhoods)
    assert all(ring[(i + 1) % 8] in server.config.neighbourhoods[ring[i]] for i in range(8))
    pair, dropped = {ring[1], ring[2]}, {ring[0], ring[3]}
    with pytest.raises(PrivacyError, match="linked by masks to no other survivor"):
        _to_upload(server, clients, inputs, skip=dropped)
    forged = seal(parties.server_identity, SERVER, {"type": "unmask", "round": server.round_id,
                                                    "survivors": sorted(set(range(8)) - dropped),
                                                    "dropped": sorted(dropped)})
    for u in pair:
        with pytest.raises(PrivacyError, match="fewer than min_clients=3: unmasking would reveal their sum"):
            clients[u].unmask(forged)
    assert clients[ring[5]].unmask(forged).sender == ring[5]  # a client in the large group answers


def test_an_upload_is_the_input_plus_a_self_mask_plus_pairwise_masks():
    # y_u = x_u + PRG(b_u) + sum_v ±PRG(s_uv): with every pairwise mask removed (as a server holding all the other
    # clients' mask keys could), the self-mask alone still hides x (bit frequencies 1/2); removing it too gives x
    from lpm_graph.privacy.secagg import _pairwise_mask, _self_mask

    d, alpha = 2048, 1e-6
    z = NormalDist().inv_cdf(1 - alpha / (2 * 64))
    parties = Parties(range(4))
    inputs = {i: np.zeros(d, dtype=np.uint64) for i in range(4)}
    server, clients = parties.round(d, threshold=3)
    _to_upload(server, clients, inputs)
    u, c = 1, clients[1]
    y = server._masked[u].copy()
    for v in (0, 2, 3):
        p = _pairwise_mask(c._s_sk, c._keys[v][1], server.round_id, d)
        y = y - p if u < v else y + p
    bits = (y[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    assert np.max(np.abs(bits.sum(axis=0) - d / 2)) <= z * math.sqrt(d / 4)
    assert np.array_equal(y - _self_mask(c._b, server.round_id, d), inputs[u])


def test_the_neighbour_graph_is_regular_symmetric_random_and_the_same_for_everyone():
    cfg = make_round(range(40), threshold=4, min_clients=3, length=1, neighbours=6)
    hoods = cfg.neighbourhoods
    assert all(len(h) == 7 and u in h for u, h in hoods.items())
    assert all(u in hoods[v] for u, h in hoods.items() for v in h)
    # every client rebuilds the same graph from the signed announcement's seed
    server = SecAggServer(cfg, Ed25519PrivateKey.generate(), {i: Ed25519PrivateKey.generate().public_key()
                                                                  for i in range(40)})
    from lpm_graph.privacy import RoundConfig

    again = RoundConfig.from_body(json.loads(server.announcement().body))
    assert all(again.neighbourhood(u) == hoods[u] for u in range(40))
    # a fresh seed gives another graph, not the ring of client ids
    other = make_round(range(40), threshold=4, min_clients=3, length=1, neighbours=6)
    assert other.neighbourhoods != hoods
    assert sum(hoods[u] == frozenset(v % 40 for v in range(u - 3, u + 4)) for u in range(40)) < 40


class _CountingKey:
    """An Ed25519 verification key that counts the signatures checked with it."""

    def __init__(self, key, counter, owner):
        self._key, self._counter, self._owner = key, counter, owner

    def verify(self, signature, data):
        self._counter[self._owner] = self._counter.get(self._owner, 0) + 1
        return self._key.verify(signature, data)


def _ids_named(env):
    """Every client id a server message names: the senders of the advertisements it carries, its share senders,
    its lists."""
    body = json.loads(env.body)
    ids = set()
    for item in body.get("keys", []):
        ids.add(item["sender"])
    ids |= {int(u) for u in body.get("shares", {})}
    for name in ("shared", "survivors", "dropped"):
        ids |= set(body.get(name, []))
    return ids


@pytest.mark.parametrize("n", [24, 60])
def test_under_secagg_plus_a_client_hears_of_and_checks_only_its_neighbourhood(n):
    # with neighbours=k, what reaches a client after the announcement names only N(u) (key list, inbox) and the
    # survivors within min_clients - 1 hops (unmask request), and it checks k + 4 signatures (announcement, key
    # list, its k neighbours' advertisements, inbox, unmask request), whatever n. A client that re-verified its own
    # advertisement, or an inbox or request listing every client that shared or survived, fails
    k, m = 4, 3
    parties = Parties(range(n))
    checked = {}  # client -> signatures it checked (its copies of the server's and its peers' keys count)
    server_key = parties.server_identity.public_key()
    cfg = make_round(parties.ids, threshold=3, min_clients=m, length=4, neighbours=k)
    server = SecAggServer(cfg, parties.server_identity, parties.verify)
    clients = {u: SecAggClient(u, parties.identities[u], _CountingKey(server_key, checked, u),
                               {v: _CountingKey(key, checked, u) for v, key in parties.verify.items()})
               for u in parties.ids}
    inputs = _inputs(n, 4, seed=13)
    dropped = {3}
    received = {u: [] for u in parties.ids}
    ann = server.announcement()
    for u, c in clients.items():
        server.receive_keys(c.advertise(ann))
    for u, kl in server.key_lists().items():
        received[u].append(("hood", kl))
        server.receive_shares(clients[u].share_keys(kl))
    for u, inbox in server.inboxes().items():
        received[u].append(("hood", inbox))
        if u not in dropped:
            server.receive_masked(clients[u].masked_input(inbox, inputs[u]))
    requests = server.unmask_requests()
    assert set(requests) == set(parties.ids) - dropped
    for u, request in requests.items():
        received[u].append(("reach", request))
        server.receive_reveal(clients[u].unmask(request))
    assert np.array_equal(server.result(), _plain_sum(inputs, set(parties.ids) - dropped))
    for u in parties.ids:
        hood, near = cfg.neighbourhood(u), cfg.reach(u, m - 1)
        assert len(near) == 1 + 2 * (m - 1) * (k // 2)
        for scope, env in received[u]:
            assert _ids_named(env) <= (hood if scope == "hood" else near), (u, scope)
        assert checked[u] == k + (2 if u in dropped else 4), u  # a dropped client never opens its inbox


def test_the_roster_travels_as_one_varint_a_client():
    # the announcement's one O(n) field: gaps between increasing ids as LEB128 varints, exact at every byte
    # boundary up to 63 bits, one byte a client when the ids are less than 128 apart (JSON would take 4 to 7)
    from lpm_graph.privacy import RoundConfig

    ids = [0, 1, 127, 128, 129, 300, 2 ** 14, 2 ** 40, 2 ** 63 - 1]
    cfg = make_round(ids, threshold=5, min_clients=3, length=1)
    body = cfg.to_body()
    assert RoundConfig.from_body(body).clients == tuple(ids)
    raw = base64.b64decode(body["clients"])
    with pytest.raises(PrivacyError, match="truncated"):
        RoundConfig.from_body({**body, "clients": base64.b64encode(raw[:-1]).decode()})
    with pytest.raises(PrivacyError, match="more than 63 bits"):
        RoundConfig.from_body({**body, "clients": base64.b64encode(b"\xff" * 9 + b"\x01").decode()})
    dense = list(range(5, 100_000, 100))
    body = make_round(dense, threshold=4, min_clients=3, length=1, neighbours=4).to_body()
    assert len(base64.b64decode(body["clients"])) == len(dense)
    assert RoundConfig.from_body(body).clients == tuple(dense)
