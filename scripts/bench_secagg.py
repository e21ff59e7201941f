"""Cost of one secure-aggregation round (lpm_graph.privacy) in process: time per client and bytes per client.

    python scripts/bench_secagg.py                         # n = 50, 200, 1000 clients, k = 10 neighbours, d = 64
    python scripts/bench_secagg.py --clients 100 --neighbours 0 --length 1000   # k = 0: every other client

Every message is counted as the JSON a network client would send or receive (``Envelope.to_dict``); the
announcement is counted once per client. The reference timed in the same run is one Ed25519 signature check
(the protocol's most frequent operation), so the ratio ``round time per client / signature check`` reads the same on
a loaded and on a quiet machine. Prints one line per size.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lpm_graph.privacy import SecAggClient, SecAggServer, make_round


def _size(env) -> int:
    return len(json.dumps(env.to_dict()))


def one_round(n: int, k: int | None, d: int, threshold: int) -> tuple[float, float, float, int]:
    ids = list(range(n))
    identities = {i: Ed25519PrivateKey.generate() for i in ids}
    verify = {i: key.public_key() for i, key in identities.items()}
    server_key = Ed25519PrivateKey.generate()
    rng = np.random.default_rng(0)
    inputs = {i: rng.integers(0, 2 ** 64, size=d, dtype=np.uint64) for i in ids}
    sent = dict.fromkeys(ids, 0)
    received = dict.fromkeys(ids, 0)
    start = time.perf_counter()
    cfg = make_round(ids, threshold=threshold, min_clients=3, length=d, neighbours=k)
    server = SecAggServer(cfg, server_key, verify)
    clients = {i: SecAggClient(i, identities[i], server_key.public_key(), verify) for i in ids}
    ann = server.announcement()
    for i in ids:
        msg = clients[i].advertise(ann)
        received[i] += _size(ann)
        sent[i] += _size(msg)
        server.receive_keys(msg)
    for i, kl in server.key_lists().items():
        msg = clients[i].share_keys(kl)
        received[i] += _size(kl)
        sent[i] += _size(msg)
        server.receive_shares(msg)
    for i, inbox in server.inboxes().items():
        msg = clients[i].masked_input(inbox, inputs[i])
        received[i] += _size(inbox)
        sent[i] += _size(msg)
        server.receive_masked(msg)
    for i, request in server.unmask_requests().items():
        msg = clients[i].unmask(request)
        received[i] += _size(request)
        sent[i] += _size(msg)
        server.receive_reveal(msg)
    total = server.result()
    elapsed = time.perf_counter() - start
    expected = np.zeros(d, dtype=np.uint64)
    for x in inputs.values():
        expected = expected + x
    assert np.array_equal(total, expected)
    return elapsed, float(np.mean(list(sent.values()))), float(np.mean(list(received.values()))), cfg.hood_size


def signature_check_seconds(repeat: int = 2000) -> float:
    key = Ed25519PrivateKey.generate()
    public, data = key.public_key(), b"x" * 300
    sig = key.sign(data)
    start = time.perf_counter()
    for _ in range(repeat):
        public.verify(sig, data)
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--neighbours", type=int, default=10, help="SecAgg+ degree k (even); 0: every other client")
    parser.add_argument("--length", type=int, default=64, help="the vector length d (uint64 words)")
    args = parser.parse_args()
    k = args.neighbours or None
    for n in args.clients:
        hood = n if k is None or k >= n - 1 else k + 1
        threshold = hood // 2 + 1
        ref = signature_check_seconds()
        elapsed, sent, received, hood = one_round(n, k, args.length, threshold)
        per_client = elapsed / n
        print(f"n={n} k={k or n - 1} t={threshold} d={args.length}: round {elapsed:.2f} s, "
              f"{per_client * 1e3:.1f} ms per client = {per_client / ref:.0f} Ed25519 checks "
              f"({ref * 1e6:.0f} us each); per client sent {sent / 1e3:.1f} kB, received {received / 1e3:.1f} kB",
              flush=True)
    with open("/proc/loadavg") as f:
        print("load average:", f.read().split()[:3])


if __name__ == "__main__":
    main()
