"""Secure aggregation: Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine Learning"
(CCS 2017), with the SecAgg+ neighbourhoods of Bell et al. (CCS 2020).

The server learns the sum, modulo ``2^64``, of the ``uint64`` vectors of the clients that survive to the masked
upload, and nothing else about them under the threat model of ``docs/privacy.md`` (a semi-honest server; every
message signed with Ed25519, the round id inside each signed payload). A round:

==========  ===========================  ============================================  ============================
paper       server                       client                                        message (``type``)
==========  ===========================  ============================================  ============================
setup       :meth:`SecAggServer          (identity keys known to all)                  ``round``: the configuration
            .announcement`                                                             and the graph's seed
Round 0     :meth:`~SecAggServer          :meth:`SecAggClient.advertise`: fresh         ``keys``; ``key_list``
AdvertiseK  .receive_keys`,               X25519 pairs (c: share encryption, s: masks)  (the neighbours' keys)
            :meth:`~SecAggServer
            .key_lists`
Round 1     :meth:`~SecAggServer          :meth:`SecAggClient.share_keys`: self-mask    ``shares`` (AES-GCM
ShareKeys   .receive_shares`,             seed b, Shamir shares of b and of s_SK to     ciphertexts, one per
            :meth:`~SecAggServer.inboxes` each neighbour, AES-GCM under KA(c)           neighbour); ``inbox``
Round 2     :meth:`~SecAggServer          :meth:`SecAggClient.masked_input`:            ``masked``; ``unmask``
MaskedInpu  .receive_masked`,             y = x + PRG(b) + sum_v ±PRG(KA(s_u, s_v))
            :meth:`~SecAggServer
            .unmask_requests`
Round 4     :meth:`~SecAggServer          :meth:`SecAggClient.unmask`: the b share of   ``reveal``
Unmasking   .receive_reveal`,             each survivor, the s_SK share of each
            :meth:`~SecAggServer.result`  dropped client, never both
==========  ===========================  ============================================  ============================

Round 3 of the paper (ConsistencyCheck) defends against a *malicious* server sending different survivor sets to
different clients; under the semi-honest model it is not run. A client still refuses a request for both secrets
of one client, a second unmask request, and a request naming itself as dropped, and ``2t > |N(u)|`` is enforced,
so that no two disjoint sets of ``t`` honest clients exist in a neighbourhood.

SecAgg+: with ``neighbours=k`` each client masks with, and shares its secrets among, only its ``k`` neighbours on
a ``k``-regular Harary graph laid over a random permutation of the clients, which every party derives from the
seed in the signed announcement (``neighbours=None``: every other client, the original protocol). The threshold
``t`` then applies within each neighbourhood ``N(u)`` (``u`` and its neighbours).

Under SecAgg+ only the announcement (the round's roster) grows with ``n``: a client's key list and inbox name its
neighbours, its unmask request the survivors within ``min_clients - 1`` hops (what it needs to find its group of
survivors linked by masks), so it checks ``k + 4`` signatures a round whatever ``n``.

Primitives, all from ``cryptography``: X25519 (key agreement), HKDF-SHA256 (key derivation, the round id as salt,
a label per purpose), ChaCha20 keystreams (the mask PRG), AES-256-GCM (shares in transit, the round and both ids as
associated data), Ed25519 (signatures). Shamir sharing is :mod:`lpm_graph.privacy.shamir`. Randomness: ``secrets``
and the keys' own generation (the OS CSPRNG) only.
"""
from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import pairwise

import numpy as np
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from lpm_graph.errors import PrivacyConfigError, PrivacyError
from lpm_graph.privacy import shamir

__all__ = ["SERVER", "Envelope", "RoundConfig", "make_round", "SecAggClient", "SecAggServer", "secure_sum", "prg",
           "seal"]

SERVER = -1  # the sender id of the aggregator's messages
PROTOCOL = b"lpm_graph.secagg.v1"
ROUND_ID_BYTES = 16
KEY_BYTES = 32


# ---------------------------------------------------------------------------------------------------------------
# messages


def _b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64d(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise PrivacyError(f"secagg: {what} is not a base64 string")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise PrivacyError(f"secagg: {what} is not valid base64") from None


def _canonical(body: Mapping) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _signed_bytes(body: bytes) -> bytes:
    return PROTOCOL + b"\x00" + body


@dataclass(frozen=True)
class Envelope:
    """One signed protocol message: ``body`` is canonical JSON holding ``type``, ``round`` and ``sender``;
    ``signature`` is the sender's Ed25519 signature over the protocol label and ``body``."""

    sender: int
    body: bytes
    signature: bytes

    def to_dict(self) -> dict:
        return {"sender": self.sender, "body": _b64e(self.body), "signature": _b64e(self.signature)}

    @classmethod
    def from_dict(cls, data: object) -> Envelope:
        if not isinstance(data, Mapping) or set(data) != {"sender", "body", "signature"}:
            raise PrivacyError("secagg: a message must be an object with exactly sender, body and signature")
        sender = data["sender"]
        if isinstance(sender, bool) or not isinstance(sender, int):
            raise PrivacyError("secagg: a message's sender must be an integer")
        return cls(sender, _b64d(data["body"], "a message body"), _b64d(data["signature"], "a message signature"))

    def open(self, key: Ed25519PublicKey, *, kind: str, round_id: str | None) -> dict:
        """Verify the signature with ``key``, then the message type, the round id (``None``: any, for the
        announcement that sets it) and that the signed sender is the envelope's sender; return the body."""
        try:
            key.verify(self.signature, _signed_bytes(self.body))
        except InvalidSignature:
            raise PrivacyError(f"secagg: the signature of a {kind!r} message from {_who(self.sender)} does not "
                               "verify (tampered, or signed by another key); refused") from None
        try:
            body = json.loads(self.body.decode("ascii"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise PrivacyError(f"secagg: a signed {kind!r} message from {_who(self.sender)} is not JSON") from None
        if not isinstance(body, dict) or body.get("type") != kind:
            got = body.get("type") if isinstance(body, dict) else None
            raise PrivacyError(f"secagg: expected a {kind!r} message from {_who(self.sender)}, got {got!r}")
        if body.get("sender") != self.sender:
            raise PrivacyError(f"secagg: a {kind!r} message claims sender {body.get('sender')!r} but was sent as "
                               f"{_who(self.sender)}; refused")
        if round_id is not None and body.get("round") != round_id:
            raise PrivacyError(f"secagg: a {kind!r} message from {_who(self.sender)} belongs to round "
                               f"{body.get('round')!r}, not the current round {round_id!r} (a replay); refused")
        return body


def seal(identity: Ed25519PrivateKey, sender: int, body: Mapping) -> Envelope:
    """Sign ``body`` (its ``sender`` set to ``sender``) as an :class:`Envelope`."""
    data = _canonical({**body, "sender": sender})
    return Envelope(sender, data, identity.sign(_signed_bytes(data)))


def _who(sender: int) -> str:
    return "the server" if sender == SERVER else f"client {sender}"


# ---------------------------------------------------------------------------------------------------------------
# key derivation and the mask PRG


def _derive(secret: bytes, purpose: bytes, round_id: str) -> bytes:
    """HKDF-SHA256 of a key-agreement output or a seed: 32 bytes, the round id as salt, one label per purpose."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=bytes.fromhex(round_id),
                info=PROTOCOL + b"|" + purpose).derive(secret)


def prg(seed: bytes, length: int) -> np.ndarray:
    """``length`` uint64 words of the ChaCha20 keystream under the 32-byte key ``seed`` (nonce and counter 0).

    Every seed is used once: it is derived per round, per purpose and per pair (or client) by HKDF."""
    if len(seed) != KEY_BYTES:
        raise PrivacyError("secagg.prg: the seed must be 32 bytes")
    encryptor = Cipher(algorithms.ChaCha20(seed, b"\x00" * 16), mode=None).encryptor()
    stream = encryptor.update(b"\x00" * (8 * length)) + encryptor.finalize()
    return np.frombuffer(stream, dtype="<u8").astype(np.uint64)


def _pairwise_mask(s_sk: X25519PrivateKey, s_pk: bytes, round_id: str, length: int) -> np.ndarray:
    shared = s_sk.exchange(X25519PublicKey.from_public_bytes(s_pk))
    return prg(_derive(shared, b"pairwise-mask", round_id), length)


def _self_mask(seed: bytes, round_id: str, length: int) -> np.ndarray:
    return prg(_derive(seed, b"self-mask", round_id), length)


def _share_aad(round_id: str, sender: int, recipient: int) -> bytes:
    return _canonical({"round": round_id, "from": sender, "to": recipient})


# ---------------------------------------------------------------------------------------------------------------
# the round's configuration


@dataclass(frozen=True)
class RoundConfig:
    """What a round is: its id, the clients, the Shamir threshold ``t``, the minimum group size, the vector length
    and the neighbour graph: ``neighbours=None`` (everyone), or an even degree ``k`` and the 32-byte ``graph_seed``
    that fixes the random permutation under the Harary ring. Every party derives the same graph from these, so the
    announcement stays ``O(n)``; :meth:`neighbourhood` gives ``N(u)`` (``u`` and the clients it masks with)."""

    round_id: str
    clients: tuple[int, ...]
    threshold: int
    min_clients: int
    length: int
    neighbours: int | None = None
    graph_seed: str | None = None

    @property
    def hood_size(self) -> int:
        """``|N(u)|``, the same for every client."""
        return len(self.clients) if self.neighbours is None else self.neighbours + 1

    @cached_property
    def _ring(self) -> tuple[list[int], np.ndarray, np.ndarray]:
        """The ring order of the clients, the clients sorted by id and each sorted client's place on the ring
        (every party computes this once per round, ``O(n log n)`` in arrays, then any ``N(u)`` in ``O(k + log n)``)."""
        ids = np.asarray(self.clients, dtype=np.int64)
        keys = prg(_derive(bytes.fromhex(self.graph_seed), b"neighbour-graph", self.round_id), len(ids))
        ring = ids[np.lexsort((ids, keys))]  # a uniformly random order (ties by id)
        sorted_ids = np.sort(ids)
        place = np.empty(len(ids), dtype=np.int64)
        place[np.searchsorted(sorted_ids, ring)] = np.arange(len(ids))
        return ring.tolist(), sorted_ids, place

    def _around(self, u: int, reach: int) -> frozenset[int]:
        """The clients within ``reach`` places of ``u`` on the ring (``u`` included)."""
        ring, sorted_ids, place = self._ring
        n = len(ring)
        if 2 * reach + 1 >= n:
            return self.members
        i = int(np.searchsorted(sorted_ids, u))
        if i == n or sorted_ids[i] != u:
            raise PrivacyError(f"secagg: client {u} is not a client of round {self.round_id}")
        p = int(place[i])
        return frozenset(ring[(p + d) % n] for d in range(-reach, reach + 1))

    @cached_property
    def members(self) -> frozenset[int]:
        """The clients, as a set."""
        return frozenset(self.clients)

    @cached_property
    def _hoods(self) -> dict[int, frozenset[int]]:
        return {}  # N(u) of the clients asked for so far

    def neighbourhood(self, u: int) -> frozenset[int]:
        hood = self._hoods.get(u)
        if hood is None:
            hood = self._hoods[u] = (self.members if self.neighbours is None
                                     else self._around(u, self.neighbours // 2))
        return hood

    def reach(self, u: int, hops: int) -> frozenset[int]:
        """The clients at most ``hops`` links from ``u`` in the neighbour graph (``u`` included): on the Harary
        ring, those within ``hops * k/2`` places. A connected group of ``m`` clients holding ``u`` lies within
        ``m - 1`` hops of it, so this is all a client needs of the survivor list to find its own group."""
        if self.neighbours is None or hops >= len(self.clients):
            return self.members
        return self._around(u, hops * (self.neighbours // 2))

    @cached_property
    def neighbourhoods(self) -> dict[int, frozenset[int]]:
        """Every client's ``N(u)`` (built once: ``O(n k)``)."""
        return {u: self.neighbourhood(u) for u in self.clients}

    def validate(self) -> None:
        _check_min_clients(self.min_clients)
        try:
            if len(bytes.fromhex(self.round_id)) != ROUND_ID_BYTES:
                raise ValueError
        except (TypeError, ValueError):
            raise PrivacyConfigError(f"secagg: round id {self.round_id!r} must be {ROUND_ID_BYTES} bytes in hex") \
                from None
        ids = self.clients
        if not isinstance(ids, tuple) or not set(map(type, ids)) <= {int} \
                or (ids and not 0 <= ids[0] <= ids[-1] < 2 ** 63) or any(a >= b for a, b in pairwise(ids)):
            raise PrivacyConfigError("secagg: client ids must be distinct integers in [0, 2^63), in increasing order")
        if len(ids) < self.min_clients:
            raise PrivacyError(f"secagg: {len(ids)} client(s) cannot make a round with min_clients="
                               f"{self.min_clients}: a sum of fewer reveals too much about each input")
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 1:
            raise PrivacyConfigError(f"secagg: the vector length {self.length!r} must be a positive integer")
        k = self.neighbours
        if k is not None:
            if isinstance(k, bool) or not isinstance(k, int) or k < 2 or k % 2 or k >= len(ids) - 1:
                raise PrivacyConfigError(f"secagg: neighbours={k!r} must be an even integer of at least 2 and below "
                                         f"n - 1 = {len(ids) - 1} (the degree of the Harary graph), or None for "
                                         "every other client")
            try:
                if len(bytes.fromhex(self.graph_seed)) != KEY_BYTES:
                    raise ValueError
            except (TypeError, ValueError):
                raise PrivacyConfigError("secagg: a round with neighbours needs a 32-byte graph_seed in hex") \
                    from None
        t, size = self.threshold, self.hood_size
        if isinstance(t, bool) or not isinstance(t, int) or not size / 2 < t <= size:
            raise PrivacyConfigError(
                f"secagg: threshold={t!r} must satisfy |N(u)|/2 < threshold <= |N(u)| = {size} (a threshold above "
                "half the neighbourhood keeps a server from collecting both secrets of one client from two "
                "disjoint groups)")

    def to_body(self) -> dict:
        return {"type": "round", "round": self.round_id, "clients": _pack_ids(self.clients),
                "threshold": self.threshold, "min_clients": self.min_clients, "length": self.length,
                "neighbours": self.neighbours, "graph_seed": self.graph_seed}

    @classmethod
    def from_body(cls, body: Mapping) -> RoundConfig:
        try:
            cfg = cls(round_id=body["round"], clients=_unpack_ids(body["clients"]), threshold=body["threshold"],
                      min_clients=body["min_clients"], length=body["length"], neighbours=body["neighbours"],
                      graph_seed=body["graph_seed"])
        except (KeyError, TypeError) as e:
            raise PrivacyError(f"secagg: a malformed round announcement ({e})") from None
        cfg.validate()
        return cfg


def _pack_ids(ids: Sequence[int]) -> str:
    """The roster of a round, increasing ids, as base64 of LEB128 varints: the first id, then each gap less one
    (one or two bytes a client for ids as dense as a population's, against five or six as a JSON list)."""
    out, prev = bytearray(), -1
    for i in ids:
        v = i - prev - 1
        prev = i
        while v >= 0x80:
            out.append(v & 0x7F | 0x80)
            v >>= 7
        out.append(v)
    return _b64e(bytes(out))


def _unpack_ids(text: object) -> tuple[int, ...]:
    """Inverse of :func:`_pack_ids`; a truncated roster, or an id of more than 63 bits, is refused."""
    raw = np.frombuffer(_b64d(text, "the announcement's roster"), dtype=np.uint8)
    if raw.size == 0 or raw[-1] >= 0x80:
        raise PrivacyError("secagg: the announcement's roster is empty or truncated")
    ends = np.flatnonzero(raw < 0x80)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 9:
        raise PrivacyError("secagg: the announcement's roster holds an id of more than 63 bits")
    which = np.repeat(np.arange(ends.size), lengths)
    place = np.arange(raw.size) - starts[which]
    gaps = np.zeros(ends.size, dtype=np.uint64)
    np.add.at(gaps, which, (raw & 0x7F).astype(np.uint64) << (7 * place).astype(np.uint64))
    ids, prev = [], -1
    for g in gaps.tolist():
        prev += g + 1
        ids.append(prev)
    return tuple(ids)


@lru_cache(maxsize=8)
def _announced(body: bytes) -> RoundConfig:
    """The round that a (verified) announcement's signed body describes: a pure function of those bytes, so the
    clients of one process that received the same announcement share one :class:`RoundConfig`, and the round's
    one ``O(n log n)`` step, deriving the neighbour graph, is done once per process rather than once per client.
    A malformed body raises (and is not kept)."""
    return RoundConfig.from_body(json.loads(body))


def _check_min_clients(min_clients: object) -> None:
    if isinstance(min_clients, bool) or not isinstance(min_clients, int) or min_clients < 3:
        raise PrivacyConfigError(f"secagg: min_clients={min_clients!r} must be an integer of at least 3: a sum of two "
                                 "values reveals each to the other contributor")


def make_round(clients: Sequence[int], *, threshold: int, min_clients: int, length: int,
               neighbours: int | None = None, round_id: str | None = None) -> RoundConfig:
    """A validated :class:`RoundConfig` with a fresh random round id (and graph seed).

    ``neighbours=None`` (or at least ``len(clients) - 1``): everyone is everyone's neighbour (SecAgg). An even
    ``neighbours=k``: the Harary graph ``H(k, n)`` (each client linked to the ``k/2`` nearest on each side of a
    ring) over a uniformly random permutation of the clients, fixed by a fresh seed from the OS CSPRNG
    (SecAgg+)."""
    _check_min_clients(min_clients)
    ids = tuple(sorted(clients))
    if neighbours is not None and not isinstance(neighbours, bool) and isinstance(neighbours, int) \
            and neighbours >= len(ids) - 1:
        neighbours = None
    cfg = RoundConfig(round_id=round_id or secrets.token_hex(ROUND_ID_BYTES), clients=ids, threshold=threshold,
                      min_clients=min_clients, length=length, neighbours=neighbours,
                      graph_seed=None if neighbours is None else secrets.token_hex(KEY_BYTES))
    cfg.validate()
    return cfg

# ---------------------------------------------------------------------------------------------------------------
# the client


class SecAggClient:
    """One client's side of a round. Each method takes the server's signed message of the previous step and
    returns the client's signed message(s) of the next; a client object serves one round (fresh keys).

    Args:
        client_id: this client's id (a non-negative integer).
        identity: its long-term Ed25519 signing key.
        server_key: the server's Ed25519 verification key.
        peer_keys: every client's Ed25519 verification key (the public-key infrastructure of the paper).
    """

    def __init__(self, client_id: int, identity: Ed25519PrivateKey, server_key: Ed25519PublicKey,
                 peer_keys: Mapping[int, Ed25519PublicKey]):
        self.id = client_id
        self._identity = identity
        self._server_key = server_key
        self._peer_keys = dict(peer_keys)
        self._stage = "announcement"
        self.config: RoundConfig | None = None

    def _expect(self, stage: str) -> None:
        """Refuse a message out of order; the step advances only once a message has been fully accepted."""
        if self._stage != stage:
            raise PrivacyError(f"secagg: client {self.id} is at step {self._stage!r}, not {stage!r}; a message out of "
                               "order is refused")

    def _seal(self, body: dict) -> Envelope:
        return seal(self._identity, self.id, {**body, "round": self.config.round_id})

    # Round 0 -----------------------------------------------------------------------------------------------
    def advertise(self, announcement: Envelope) -> Envelope:
        """Check the signed round announcement and answer with two fresh X25519 public keys (c and s)."""
        if announcement.sender != SERVER:
            raise PrivacyError(f"secagg: client {self.id}: the round announcement must come from the server")
        body = announcement.open(self._server_key, kind="round", round_id=None)
        self._expect("announcement")
        cfg = _announced(announcement.body)
        if self.id not in cfg.members:
            raise PrivacyError(f"secagg: client {self.id} is not a client of round {cfg.round_id}")
        missing = sorted(c for c in cfg.neighbourhood(self.id) if c not in self._peer_keys)
        if missing:
            raise PrivacyError(f"secagg: client {self.id} holds no verification key for its neighbours {missing[:5]}")
        self.config = cfg
        self._c_sk = X25519PrivateKey.generate()
        self._s_sk = X25519PrivateKey.generate()
        self._c_pk = self._c_sk.public_key().public_bytes_raw()
        self._s_pk = self._s_sk.public_key().public_bytes_raw()
        self._stage = "keys"
        self._advertisement = self._seal({"type": "keys", "c_pk": _b64e(self._c_pk), "s_pk": _b64e(self._s_pk)})
        return self._advertisement

    # Round 1 -----------------------------------------------------------------------------------------------
    def share_keys(self, key_list: Envelope) -> Envelope:
        """Verify every advertised key, draw the self-mask seed b and send, in one signed message, each live
        neighbour's (itself included) Shamir shares of b and of the mask key s_SK, encrypted with AES-GCM under
        HKDF(KA(c_u, c_v)): only u and v hold that key, so the tag authenticates the share as u's."""
        cfg = self.config
        body = key_list.open(self._server_key, kind="key_list", round_id=cfg.round_id if cfg else None)
        self._expect("keys")
        if body.get("to") != self.id:
            raise PrivacyError(f"secagg: client {self.id} received a key list addressed to {body.get('to')!r}")
        if not isinstance(body.get("advertised"), int) or body["advertised"] < cfg.min_clients:
            raise PrivacyError(f"secagg: client {self.id}: {body.get('advertised')!r} client(s) advertised keys, "
                               f"fewer than min_clients={cfg.min_clients}; refused")
        self._keys = _open_key_list(body, self._peer_keys, cfg, cfg.neighbourhood(self.id), self._advertisement)
        if self._keys.get(self.id) != (self._c_pk, self._s_pk):
            raise PrivacyError(f"secagg: client {self.id}: the key list does not carry this client's own keys")
        hood = cfg.neighbourhood(self.id)
        alive = sorted(hood & set(self._keys))
        if len(alive) < cfg.threshold:
            raise PrivacyError(f"secagg: client {self.id}: {len(alive)} neighbour(s) advertised keys, fewer than the "
                               f"threshold {cfg.threshold}; the round cannot continue")
        self._b = secrets.token_bytes(KEY_BYTES)
        xs = [v + 1 for v in alive]
        b_shares = shamir.split(shamir.secret_to_int(self._b), xs, cfg.threshold)
        s_shares = shamir.split(shamir.secret_to_int(self._s_sk.private_bytes_raw()), xs, cfg.threshold)
        out = {}
        # one key agreement per neighbour: the key encrypts u's shares to v and decrypts v's shares to u
        self._share_key = {v: _derive(self._c_sk.exchange(X25519PublicKey.from_public_bytes(self._keys[v][0])),
                                      b"share-encryption", cfg.round_id) for v in alive}
        for v in alive:
            key = self._share_key[v]
            plain = _canonical({"from": self.id, "to": v, "b": format(b_shares[v + 1], "x"),
                                "s": format(s_shares[v + 1], "x")})
            nonce = secrets.token_bytes(12)
            ct = nonce + AESGCM(key).encrypt(nonce, plain, _share_aad(cfg.round_id, self.id, v))
            out[str(v)] = _b64e(ct)
        self._stage = "shares"
        return self._seal({"type": "shares", "shares": out})

    # Round 2 -----------------------------------------------------------------------------------------------
    def masked_input(self, inbox: Envelope, x: np.ndarray) -> Envelope:
        """Decrypt the shares received, then upload ``y = x + PRG(b) + sum_v ±PRG(KA(s_u, s_v))`` (mod 2^64) over
        the neighbours that shared (+ if ``u < v``, - if ``u > v``). ``x``: uint64 ``[length]``."""
        cfg = self.config
        body = inbox.open(self._server_key, kind="inbox", round_id=cfg.round_id if cfg else None)
        self._expect("shares")
        if body.get("to") != self.id:
            raise PrivacyError(f"secagg: client {self.id} received an inbox addressed to {body.get('to')!r}")
        shared = _id_set(body.get("shared"), "the inbox's list of clients that shared")
        hood = cfg.neighbourhood(self.id)
        if not shared & hood <= set(self._keys) or self.id not in shared:
            raise PrivacyError(f"secagg: client {self.id}: the neighbours that shared must have advertised keys, "
                               "and this client must be among those that shared")
        self._shared = shared
        expected = hood & shared
        if len(expected) < cfg.threshold:
            raise PrivacyError(f"secagg: client {self.id}: {len(expected)} neighbour(s) shared keys, fewer than the "
                               f"threshold {cfg.threshold}; the round cannot continue")
        self._held = {}
        for u, ct in _ciphertexts(body.get("shares"), f"client {self.id}'s inbox").items():
            if u not in expected:
                raise PrivacyError(f"secagg: client {self.id}: a share from {u}, which is not a neighbour that shared")
            self._held[u] = self._decrypt_share(u, ct)
        if set(self._held) != expected:
            raise PrivacyError(f"secagg: client {self.id}: no share from neighbours "
                               f"{sorted(expected - set(self._held))[:5]} that the server lists as having shared")
        x = _check_vector(x, cfg.length, f"client {self.id}'s input")
        y = x + _self_mask(self._b, cfg.round_id, cfg.length)
        for v in sorted(expected - {self.id}):
            p = _pairwise_mask(self._s_sk, self._keys[v][1], cfg.round_id, cfg.length)
            y = y + p if self.id < v else y - p
        self._stage = "masked"
        return self._seal({"type": "masked", "y": _b64e(y.astype("<u8").tobytes())})

    def _decrypt_share(self, sender: int, ct: bytes) -> tuple[int, int]:
        cfg = self.config
        try:
            plain = AESGCM(self._share_key[sender]).decrypt(ct[:12], ct[12:], _share_aad(cfg.round_id, sender, self.id))
        except (InvalidTag, ValueError):
            raise PrivacyError(f"secagg: client {self.id}: the encrypted share from client {sender} does not "
                               "authenticate (modified in transit); refused") from None
        try:
            data = json.loads(plain)
            b, s = int(data["b"], 16), int(data["s"], 16)
        except (ValueError, KeyError, TypeError):
            raise PrivacyError(f"secagg: client {self.id}: the share from client {sender} is malformed") from None
        if data.get("from") != sender or data.get("to") != self.id:
            raise PrivacyError(f"secagg: client {self.id}: a share from {sender} names other parties")
        if not (0 <= b < shamir.PRIME and 0 <= s < shamir.PRIME):
            raise PrivacyError(f"secagg: client {self.id}: the share from client {sender} lies outside the field")
        return b, s

    # Round 4 -----------------------------------------------------------------------------------------------
    def unmask(self, request: Envelope) -> Envelope:
        """Answer the server's one unmask request: for each neighbour it holds shares of, the share of b if the
        request lists it as a survivor, the share of s_SK if as dropped. A client listed as both, this client
        listed as dropped, too few surviving neighbours, or a second request: refused."""
        cfg = self.config
        body = request.open(self._server_key, kind="unmask", round_id=cfg.round_id if cfg else None)
        if self._stage == "revealed":
            raise PrivacyError(f"secagg: client {self.id} already answered an unmask request in round "
                               f"{cfg.round_id}; a second request is refused")
        survivors = _id_set(body.get("survivors"), "the unmask request's survivors")
        dropped = _id_set(body.get("dropped"), "the unmask request's dropped clients")
        both = survivors & dropped
        if both:
            raise PrivacyError(f"secagg: client {self.id}: the unmask request asks for both the self-mask seed and "
                               f"the mask key of client(s) {sorted(both)[:5]}; revealing both would expose their "
                               "input, refused")
        if self._stage != "masked":
            raise PrivacyError(f"secagg: client {self.id} is at step {self._stage!r}; an unmask request is refused")
        if self.id not in survivors:
            raise PrivacyError(f"secagg: client {self.id} uploaded its masked input but the request does not list it "
                               "as a survivor; refused")
        hood = cfg.neighbourhood(self.id)
        if not (survivors | dropped) & hood <= self._shared:
            raise PrivacyError(f"secagg: client {self.id}: the unmask request names neighbours that never shared keys")
        if len(survivors) < cfg.min_clients:
            raise PrivacyError(f"secagg: client {self.id}: {len(survivors)} survivor(s), fewer than min_clients="
                               f"{cfg.min_clients}; refused")
        if len(hood & survivors) < cfg.threshold:
            raise PrivacyError(f"secagg: client {self.id}: {len(hood & survivors)} surviving neighbour(s), fewer "
                               f"than the threshold {cfg.threshold}; refused")
        # its group of survivors linked by masks: within min_clients - 1 hops, all the request must list
        near = cfg.reach(self.id, cfg.min_clients - 1)
        group = _component(cfg.neighbourhood, survivors & near, self.id, stop_at=cfg.min_clients)
        if len(group) < cfg.min_clients:
            raise PrivacyError(f"secagg: client {self.id}: among the survivors, only clients {sorted(group)} are "
                               "linked to it by masks, fewer than min_clients="
                               f"{cfg.min_clients}: unmasking would reveal their sum; refused")
        b_out = {str(v): format(self._held[v][0], "x") for v in sorted(survivors & set(self._held))}
        s_out = {str(v): format(self._held[v][1], "x") for v in sorted(dropped & set(self._held))}
        self._stage = "revealed"  # only a request answered counts; a refused one revealed nothing
        return self._seal({"type": "reveal", "b": b_out, "s": s_out})


def _component(hood: Callable[[int], frozenset[int]], members: Collection[int], start: int,
               stop_at: int | None = None) -> set[int]:
    """The connected component of ``start`` in the neighbour graph restricted to ``members`` (breadth first,
    stopping once ``stop_at`` clients are found). The server can remove every mask between two such
    components, so it learns the sum of each component: each must hold at least ``min_clients``."""
    members = set(members)
    seen, frontier = {start}, [start]
    while frontier and (stop_at is None or len(seen) < stop_at):
        nxt = []
        for u in frontier:
            for v in hood(u):
                if v in members and v not in seen:
                    seen.add(v)
                    nxt.append(v)
        frontier = nxt
    return seen


def _ciphertexts(value: object, what: str) -> dict[int, bytes]:
    if not isinstance(value, Mapping):
        raise PrivacyError(f"secagg: {what} must map client ids to encrypted shares")
    try:
        out = {int(k): _b64d(v, f"an encrypted share in {what}") for k, v in value.items()}
    except ValueError:
        raise PrivacyError(f"secagg: {what} must map client ids to encrypted shares") from None
    if len(out) != len(value):
        raise PrivacyError(f"secagg: {what} repeats a client id")
    return out


def _id_set(value: object, what: str) -> set[int]:
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise PrivacyError(f"secagg: {what} must be a list of client ids")
    return set(value)


def _open_key_list(body: Mapping, peer_keys: Mapping[int, Ed25519PublicKey], cfg: RoundConfig,
                   hood: frozenset[int], own: Envelope) -> dict[int, tuple[bytes, bytes]]:
    """Verify each neighbour's signed key advertisement inside the server's key list: ``{id: (c_pk, s_pk)}``.
    The client's own advertisement (``own``, as it sent it) must come back byte for byte: its signature is then
    the client's own, and is not checked again."""
    keys: dict[int, tuple[bytes, bytes]] = {}
    for item in body.get("keys") or []:
        env = Envelope.from_dict(item)
        if env.sender not in hood or env.sender in keys:
            raise PrivacyError(f"secagg: the key list holds a client {env.sender} that is not a neighbour, or twice")
        if env.sender == own.sender:
            if env != own:
                raise PrivacyError(f"secagg: client {own.sender}: the key list carries another advertisement in this "
                                   "client's name than the one it sent; refused")
            adv = json.loads(own.body)
        else:
            adv = env.open(peer_keys[env.sender], kind="keys", round_id=cfg.round_id)
        c_pk, s_pk = _b64d(adv.get("c_pk"), "a c public key"), _b64d(adv.get("s_pk"), "an s public key")
        if len(c_pk) != KEY_BYTES or len(s_pk) != KEY_BYTES or c_pk == s_pk:
            raise PrivacyError(f"secagg: client {env.sender} advertised malformed or equal public keys")
        keys[env.sender] = (c_pk, s_pk)
    return keys


def _check_vector(x: object, length: int, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.uint64 or x.shape != (length,):
        raise PrivacyError(f"secagg: {what} must be a uint64 vector of length {length} (got {x.dtype} {x.shape}); "
                           "encode real values with FixedPoint.encode")
    return x


# ---------------------------------------------------------------------------------------------------------------
# the server


class SecAggServer:
    """The aggregator's side of a round. It receives only signed :class:`Envelope` s — public keys, AES-GCM
    encrypted shares, masked vectors and the revealed shares it asked for — and returns the sum of the survivors'
    inputs (mod 2^64), refusing a round whose survivors are fewer than ``min_clients``.

    Args:
        config: the round (:func:`make_round`).
        identity: the server's Ed25519 signing key.
        client_keys: each client's Ed25519 verification key.
    """

    def __init__(self, config: RoundConfig, identity: Ed25519PrivateKey, client_keys: Mapping[int, Ed25519PublicKey]):
        config.validate()
        missing = [c for c in config.clients if c not in client_keys]
        if missing:
            raise PrivacyConfigError(f"secagg: no verification key for clients {missing[:5]}")
        self.config = config
        self._members = frozenset(config.clients)
        self._identity = identity
        self._client_keys = dict(client_keys)
        self._stage = "keys"
        self._keys: dict[int, Envelope] = {}
        self._public: dict[int, tuple[bytes, bytes]] = {}
        self._shares: dict[int, dict[int, str]] = {}  # sender -> recipient -> base64 ciphertext
        self._masked: dict[int, np.ndarray] = {}
        self._reveals: dict[int, tuple[dict[int, int], dict[int, int]]] = {}
        self._held: tuple[dict[int, dict[int, int]], ...] = ({}, {})  # b, s_SK: owner -> {x: share}
        self.advertised: frozenset[int] = frozenset()  # U1
        self.shared: frozenset[int] = frozenset()      # U2
        self.survivors: frozenset[int] = frozenset()   # U3: whose inputs the sum holds
        self.responders: frozenset[int] = frozenset()  # U5

    @property
    def round_id(self) -> str:
        return self.config.round_id

    @property
    def stage(self) -> str:
        return self._stage

    def waiting(self) -> frozenset[int]:
        """The clients whose message the current step still expects (empty once every one has sent)."""
        expected, got = {"keys": (frozenset(self.config.clients), self._keys),
                         "shares": (self.advertised, self._shares),
                         "masked": (self.shared, self._masked),
                         "reveal": (self.survivors, self._reveals)}.get(self._stage, (frozenset(), {}))
        return frozenset(expected - set(got))

    def _seal(self, body: dict) -> Envelope:
        return seal(self._identity, SERVER, {**body, "round": self.round_id})

    def _open(self, env: Envelope, kind: str, expected: Collection[int], received: Collection[int]) -> dict:
        """Open a client's message of this step: its sender must be ``expected`` and not yet ``received``."""
        if not isinstance(env, Envelope):
            raise PrivacyError(f"secagg: the server accepts only signed Envelopes, got {type(env).__name__}")
        if env.sender not in self._client_keys or env.sender not in expected or env.sender in received:
            raise PrivacyError(f"secagg: a {kind!r} message from {_who(env.sender)}, which is not expected at this "
                               "step; refused")
        return env.open(self._client_keys[env.sender], kind=kind, round_id=self.round_id)

    def _at(self, stage: str, what: str) -> None:
        if self._stage != stage:
            raise PrivacyError(f"secagg: the server is at step {self._stage!r}; {what} is refused")

    def _enough(self, ids: Collection[int], what: str) -> None:
        if len(ids) < self.config.min_clients:
            raise PrivacyError(f"secagg: only {len(ids)} client(s) {what}, fewer than min_clients="
                               f"{self.config.min_clients}; the round is refused (a sum of so few reveals too much)")

    def announcement(self) -> Envelope:
        """The signed round configuration, sent to every client."""
        return self._seal(self.config.to_body())

    # Round 0
    def receive_keys(self, env: Envelope) -> None:
        self._at("keys", "a key advertisement")
        body = self._open(env, "keys", self._members, self._keys)
        c_pk, s_pk = _b64d(body.get("c_pk"), "a c public key"), _b64d(body.get("s_pk"), "an s public key")
        if len(c_pk) != KEY_BYTES or len(s_pk) != KEY_BYTES:
            raise PrivacyError(f"secagg: client {env.sender} advertised malformed public keys")
        self._keys[env.sender] = env
        self._public[env.sender] = (c_pk, s_pk)

    def key_lists(self) -> dict[int, Envelope]:
        """Close Round 0 (U1: the clients that advertised) and give each its live neighbours' signed
        advertisements (itself included)."""
        self._at("keys", "closing the key advertisements")
        self._enough(self._keys, "advertised keys")
        self.advertised = frozenset(self._keys)
        self._stage = "shares"
        out = {}
        for v in sorted(self.advertised):
            hood = sorted(self.config.neighbourhoods[v] & self.advertised)
            out[v] = self._seal({"type": "key_list", "to": v, "advertised": len(self.advertised),
                                 "keys": [self._keys[c].to_dict() for c in hood]})
        return out

    # Round 1
    def receive_shares(self, env: Envelope) -> None:
        """One client's encrypted shares, one per live neighbour (itself included), in one signed message."""
        self._at("shares", "a share upload")
        body = self._open(env, "shares", self.advertised, self._shares)
        u = env.sender
        got = _ciphertexts(body.get("shares"), f"client {u}'s share upload")
        expected = self.config.neighbourhoods[u] & self.advertised
        if set(got) != expected:
            raise PrivacyError(f"secagg: client {u} sent shares to {sorted(got)[:8]}, not to exactly its live "
                               f"neighbours {sorted(expected)[:8]}")
        self._shares[u] = {v: _b64e(ct) for v, ct in got.items()}

    def inboxes(self) -> dict[int, Envelope]:
        """Close Round 1 (U2: the clients that shared) and give each its neighbours' encrypted shares and the list
        of its neighbours that shared (``N(v) ∩ U2``: all a client uses of U2)."""
        self._at("shares", "closing the share uploads")
        self._enough(self._shares, "shared keys")
        self.shared = frozenset(self._shares)
        self._stage = "masked"
        addressed: dict[int, dict[str, str]] = {v: {} for v in self.shared}
        for u in sorted(self.shared):
            for v, ct in self._shares[u].items():
                if v in addressed:
                    addressed[v][str(u)] = ct
        out = {}
        for v in sorted(self.shared):
            hood = sorted(self.config.neighbourhoods[v] & self.shared)
            out[v] = self._seal({"type": "inbox", "to": v, "shared": hood, "shares": addressed[v]})
        return out

    # Round 2
    def receive_masked(self, env: Envelope) -> None:
        self._at("masked", "a masked upload")
        body = self._open(env, "masked", self.shared, self._masked)
        y = np.frombuffer(_b64d(body.get("y"), "a masked vector"), dtype="<u8")
        if y.shape != (self.config.length,):
            raise PrivacyError(f"secagg: client {env.sender}'s masked vector has {y.size} words, not "
                               f"{self.config.length}")
        self._masked[env.sender] = y.astype(np.uint64)

    def unmask_request(self) -> Envelope:
        """Close Round 2 (U3: the clients that uploaded) and ask, in one request for every survivor, for the b
        shares of U3 and the s_SK shares of U2 \\ U3 (the whole lists: ``O(n)`` for each client; see
        :meth:`unmask_requests`)."""
        self._close_masked()
        return self._seal({"type": "unmask", "survivors": sorted(self.survivors),
                           "dropped": sorted(self.shared - self.survivors)})

    def unmask_requests(self) -> dict[int, Envelope]:
        """Close Round 2 like :meth:`unmask_request`, and give each survivor ``u`` the request cut to what it
        checks and answers: the survivors within ``min_clients - 1`` hops of it (its group of survivors linked
        by masks, :meth:`RoundConfig.reach`) and its dropped neighbours. With ``neighbours=k`` each request lists
        ``O(k · min_clients)`` clients, whatever ``n``."""
        self._close_masked()
        cfg, dropped = self.config, self.shared - self.survivors
        return {u: self._seal({"type": "unmask",
                               "survivors": sorted(cfg.reach(u, cfg.min_clients - 1) & self.survivors),
                               "dropped": sorted(cfg.neighbourhoods[u] & dropped)})
                for u in sorted(self.survivors)}

    def _close_masked(self) -> None:
        self._at("masked", "closing the masked uploads")
        self._enough(self._masked, "uploaded masked inputs")
        left = set(self._masked)
        while left:  # every group of survivors linked by masks is a sum the server learns
            group = _component(self.config.neighbourhoods.__getitem__, self._masked, min(left))
            if len(group) < self.config.min_clients:
                raise PrivacyError(f"secagg: survivors {sorted(group)} are linked by masks to no other survivor; "
                                   f"unmasking would release their sum, of fewer than min_clients="
                                   f"{self.config.min_clients}: the round is refused (more neighbours make this "
                                   "unlikely)")
            left -= group
        self.survivors = frozenset(self._masked)
        self._stage = "reveal"

    # Round 4
    def receive_reveal(self, env: Envelope) -> None:
        self._at("reveal", "a share reveal")
        body = self._open(env, "reveal", self.survivors, self._reveals)
        u = env.sender
        b = _share_dict(body.get("b"), u)
        s = _share_dict(body.get("s"), u)
        hood = self.config.neighbourhoods[u]
        if set(b) != hood & self.survivors or set(s) != hood & (self.shared - self.survivors):
            raise PrivacyError(f"secagg: client {u} revealed shares of other clients than the request named")
        self._reveals[u] = (b, s)
        for which, revealed in enumerate((b, s)):
            for v, share in revealed.items():
                self._held[which].setdefault(v, {})[u + 1] = share

    def result(self) -> np.ndarray:
        """Reconstruct each survivor's self-mask seed and each dropped client's mask key, remove the masks and
        return the sum of the survivors' inputs, uint64 ``[length]`` (mod 2^64)."""
        self._at("reveal", "the result")
        cfg = self.config
        self.responders = frozenset(self._reveals)
        self._stage = "done"
        total = np.zeros(cfg.length, dtype=np.uint64)
        for u in sorted(self.survivors):
            total = total + self._masked[u]
        for u in sorted(self.survivors):
            seed = self._reconstruct(u, 0, "self-mask seed")
            total = total - _self_mask(shamir.int_to_secret(seed, KEY_BYTES), cfg.round_id, cfg.length)
        for v in sorted(self.shared - self.survivors):
            raw = shamir.int_to_secret(self._reconstruct(v, 1, "mask key"), KEY_BYTES)
            s_sk = X25519PrivateKey.from_private_bytes(raw)
            if s_sk.public_key().public_bytes_raw() != self._public[v][1]:
                raise PrivacyError(f"secagg: the reconstructed mask key of dropped client {v} does not match its "
                                   "advertised public key (bad shares)")
            for u in sorted(cfg.neighbourhoods[v] & self.survivors):
                p = _pairwise_mask(s_sk, self._public[u][1], cfg.round_id, cfg.length)
                total = total - p if u < v else total + p  # undo u's term: +p if u < v, -p if u > v
        return total

    def _reconstruct(self, v: int, which: int, what: str) -> int:
        shares = self._held[which].get(v, {})
        if len(shares) < self.config.threshold:
            raise PrivacyError(f"secagg: only {len(shares)} share(s) of the {what} of client {v} came back, fewer than "
                               f"the threshold {self.config.threshold}: too many clients dropped out to unmask")
        return shamir.reconstruct(shares, self.config.threshold)


def _share_dict(value: object, sender: int) -> dict[int, int]:
    if not isinstance(value, Mapping):
        raise PrivacyError(f"secagg: client {sender}'s reveal is malformed")
    try:
        return {int(k): int(v, 16) for k, v in value.items()}
    except (TypeError, ValueError):
        raise PrivacyError(f"secagg: client {sender}'s reveal is malformed") from None


# ---------------------------------------------------------------------------------------------------------------
# one round in process


def secure_sum(inputs: Mapping[int, np.ndarray], *, min_clients: int, threshold: int,
               dropouts: Collection[int] = (), neighbours: int | None = None,
               dropouts_before_sharing: Collection[int] = (),
               dropouts_after_upload: Collection[int] = ()) -> np.ndarray:
    """Run one round in process, clients and server exchanging signed messages, and return the sum (mod 2^64)
    of the surviving clients' uint64 vectors.

    Args:
        inputs: ``{client id: uint64 [d]}`` (encode reals with :class:`~lpm_graph.privacy.FixedPoint`).
        min_clients: the smallest group whose sum may be released (at least 3).
        threshold: the Shamir threshold ``t``, with ``|N(u)|/2 < t <= |N(u)|``.
        dropouts: clients that leave after sharing their keys, before the masked upload (not in the sum; their
            pairwise masks are recovered from their neighbours' shares).
        neighbours: SecAgg+ degree ``k`` (even), or ``None`` for every other client.
        dropouts_before_sharing: clients that advertise keys, then leave (not in the sum).
        dropouts_after_upload: clients whose masked input is in the sum but who leave before unmasking.

    Raises:
        PrivacyError: fewer than ``min_clients`` survivors, fewer than ``t`` shares of a needed secret, or any
            refused message. PrivacyConfigError: ``min_clients < 3`` or a threshold out of range.
    """
    _check_min_clients(min_clients)
    if not inputs:
        raise PrivacyError("secure_sum: no inputs")
    ids = sorted(inputs)
    first = np.asarray(inputs[ids[0]])
    length = first.shape[0] if first.ndim == 1 else -1
    vectors = {i: _check_vector(inputs[i], length, f"secure_sum: inputs[{i}]") for i in ids}
    for name, group in (("dropouts", dropouts), ("dropouts_before_sharing", dropouts_before_sharing),
                        ("dropouts_after_upload", dropouts_after_upload)):
        unknown = set(group) - set(ids)
        if unknown:
            raise PrivacyError(f"secure_sum: {name} names clients {sorted(unknown)[:5]} that have no input")
    cfg = make_round(ids, threshold=threshold, min_clients=min_clients, length=length, neighbours=neighbours)
    identities = {i: Ed25519PrivateKey.generate() for i in ids}
    verify = {i: k.public_key() for i, k in identities.items()}
    server_identity = Ed25519PrivateKey.generate()
    server = SecAggServer(cfg, server_identity, verify)
    clients = {i: SecAggClient(i, identities[i], server_identity.public_key(), verify) for i in ids}

    announcement = server.announcement()
    for i in ids:
        server.receive_keys(clients[i].advertise(announcement))
    key_lists = server.key_lists()
    for i, key_list in key_lists.items():
        if i not in dropouts_before_sharing:
            server.receive_shares(clients[i].share_keys(key_list))
    inboxes = server.inboxes()
    for i, inbox in inboxes.items():
        if i not in dropouts:
            server.receive_masked(clients[i].masked_input(inbox, vectors[i]))
    for i, request in server.unmask_requests().items():
        if i not in dropouts_after_upload:
            server.receive_reveal(clients[i].unmask(request))
    return server.result()
