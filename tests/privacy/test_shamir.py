"""Shamir t-of-n sharing: any t shares reconstruct, t-1 do not, and shares are uniform whatever the secret."""
from __future__ import annotations

import itertools
import math
import secrets
from statistics import NormalDist

import pytest

from lpm_graph.errors import PrivacyError
from lpm_graph.privacy import shamir


@pytest.mark.parametrize("threshold", [1, 2, 3, 5, 7])
def test_any_t_shares_reconstruct(threshold):
    secret = secrets.randbits(256)
    xs = [3, 8, 9, 12, 40, 41, 77]
    shares = shamir.split(secret, xs, threshold)
    for subset in itertools.combinations(xs, threshold):
        assert shamir.reconstruct({x: shares[x] for x in subset}, threshold) == secret
    assert shamir.reconstruct(shares, threshold) == secret  # all of them, the extras checked for consistency


@pytest.mark.parametrize("threshold", [2, 3, 5])
def test_t_minus_one_shares_fail(threshold):
    secret = secrets.randbits(256)
    shares = shamir.split(secret, range(1, 8), threshold)
    fewer = dict(list(shares.items())[: threshold - 1])
    with pytest.raises(PrivacyError, match=f"{threshold - 1} share"):
        shamir.reconstruct(fewer, threshold)
    # interpolating the t-1 shares as if the degree were lower gives another value (equal with probability 1/p)
    assert shamir.reconstruct(fewer, threshold - 1) != secret


def test_t_minus_one_shares_are_uniform_whatever_the_secret():
    # t = 3: any two shares (q(x1), q(x2)) with a_1, a_2 uniform on the field are uniform on the field^2 for every
    # secret s. Bin the pair into 4 x 4 cells of [0, p)^2 for s = 0 and s = 2^256 - 1: each cell count is
    # Binomial(n, 1/16); tolerance a two-sided normal quantile at alpha = 1e-6, Bonferroni over 2 x 16 cells.
    # Coefficients drawn below 2^256 instead of p would put every pair in the first cell.
    n, cells, alpha = 1600, 16, 1e-6
    z = NormalDist().inv_cdf(1 - alpha / (2 * 2 * cells))
    tolerance = z * math.sqrt(n * (1 / cells) * (1 - 1 / cells))
    for secret in (0, 2 ** 256 - 1):
        counts = [0] * cells
        for _ in range(n):
            shares = shamir.split(secret, [5, 6, 7], 3)
            counts[4 * (shares[5] * 4 // shamir.PRIME) + shares[7] * 4 // shamir.PRIME] += 1
        assert max(abs(c - n / cells) for c in counts) <= tolerance, counts


def test_inconsistent_or_malformed_shares_refused():
    shares = shamir.split(12345, [1, 2, 3, 4], 2)
    shares[4] = (shares[4] + 1) % shamir.PRIME
    with pytest.raises(PrivacyError, match="x=4 is not on the polynomial"):
        shamir.reconstruct(shares, 2)
    with pytest.raises(PrivacyError, match="distinct"):
        shamir.split(1, [1, 1, 2], 2)
    with pytest.raises(PrivacyError, match="points"):
        shamir.split(1, [0, 1, 2], 2)
    with pytest.raises(PrivacyError, match="threshold"):
        shamir.split(1, [1, 2], 3)
    with pytest.raises(PrivacyError, match="secret"):
        shamir.split(shamir.PRIME, [1, 2], 2)
