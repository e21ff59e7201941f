"""Shamir t-of-n secret sharing over the prime field GF(2^521 - 1).

A secret ``s`` (an integer below the prime, e.g. a 32-byte key read as an integer) is the constant term of a
polynomial ``q(X) = s + a_1 X + ... + a_{t-1} X^{t-1}`` with coefficients drawn uniformly from the field by the
operating system's CSPRNG (:mod:`secrets`); the share of party ``i`` is ``(x_i, q(x_i))`` with distinct non-zero
``x_i``. Any ``t`` shares determine ``q`` and so ``s = q(0)`` (Lagrange interpolation at 0); any ``t - 1`` shares
are uniformly distributed whatever ``s`` is, so they reveal nothing about it.

The field is the Mersenne prime ``2^521 - 1``: every 256-bit secret fits below it, so one share carries one key.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence

from lpm_graph.errors import PrivacyError

__all__ = ["PRIME", "SHARE_BYTES", "split", "reconstruct", "secret_to_int", "int_to_secret"]

PRIME = 2 ** 521 - 1
SHARE_BYTES = 66  # ceil(521 / 8): one field element, big-endian


def split(secret: int, xs: Sequence[int], threshold: int) -> dict[int, int]:
    """Shares ``{x: q(x)}`` of ``secret`` for the evaluation points ``xs``; any ``threshold`` of them reconstruct."""
    if not 0 <= secret < PRIME:
        raise PrivacyError("shamir.split: the secret must be an integer in [0, 2^521 - 1)")
    xs = list(xs)
    _check_points(xs, "shamir.split")
    if not 1 <= threshold <= len(xs):
        raise PrivacyError(f"shamir.split: threshold={threshold} must be in [1, {len(xs)}] (the number of shares)")
    coefficients = [secret] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    return {x: _evaluate(coefficients, x) for x in xs}


def reconstruct(shares: dict[int, int] | Iterable[tuple[int, int]], threshold: int) -> int:
    """The secret from at least ``threshold`` shares ``{x: y}``.

    Fewer than ``threshold`` shares are refused. Shares beyond the first ``threshold`` are checked to lie on the
    same polynomial of degree ``threshold - 1``; a share off it (corrupted, or from another secret) is refused.
    """
    items = sorted(dict(shares).items())
    _check_points([x for x, _ in items], "shamir.reconstruct")
    if threshold < 1 or len(items) < threshold:
        raise PrivacyError(f"shamir.reconstruct: {len(items)} share(s) given, {threshold} needed")
    if any(not 0 <= y < PRIME for _, y in items):
        raise PrivacyError("shamir.reconstruct: a share value lies outside the field")
    base, extra = items[:threshold], items[threshold:]
    for x, y in extra:
        if _interpolate(base, x) != y:
            raise PrivacyError(f"shamir.reconstruct: the share at x={x} is not on the polynomial of the first "
                               f"{threshold} shares (corrupted or mixed shares)")
    return _interpolate(base, 0)


def secret_to_int(secret: bytes) -> int:
    if len(secret) > 64:
        raise PrivacyError("shamir: a secret of more than 64 bytes does not fit in the field")
    return int.from_bytes(secret, "big")


def int_to_secret(value: int, length: int) -> bytes:
    if not 0 <= value < 2 ** (8 * length):
        raise PrivacyError(f"shamir: the reconstructed value does not fit in {length} bytes (wrong shares)")
    return value.to_bytes(length, "big")


def _check_points(xs: list[int], where: str) -> None:
    if any(isinstance(x, bool) or not isinstance(x, int) or not 0 < x < PRIME for x in xs):
        raise PrivacyError(f"{where}: evaluation points must be integers in (0, p)")
    if len(set(xs)) != len(xs):
        raise PrivacyError(f"{where}: evaluation points must be distinct")


def _evaluate(coefficients: list[int], x: int) -> int:
    acc = 0
    for c in reversed(coefficients):  # Horner
        acc = (acc * x + c) % PRIME
    return acc


def _interpolate(points: list[tuple[int, int]], at: int) -> int:
    """The value at ``at`` of the unique polynomial of degree < len(points) through ``points`` (Lagrange)."""
    total = 0
    for i, (xi, yi) in enumerate(points):
        num, den = 1, 1
        for j, (xj, _) in enumerate(points):
            if i != j:
                num = num * (at - xj) % PRIME
                den = den * (xi - xj) % PRIME
        total = (total + yi * num * pow(den, -1, PRIME)) % PRIME
    return total
