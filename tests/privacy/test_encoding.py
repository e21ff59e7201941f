"""FixedPoint: the encoding into Z_2^64, its quantisation bound and the overflow refusal."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lpm_graph.errors import ConfigError, PrivacyConfigError, PrivacyError
from lpm_graph.privacy.encoding import FixedPoint


def _ring_sum(codes):
    total = np.zeros_like(codes[0])
    for c in codes:
        total = total + c  # uint64 arithmetic: mod 2^64
    return total


def test_sum_exact_in_the_integer_domain_and_within_the_bound():
    fp = FixedPoint(frac_bits=16, clip=3.0)
    rng = np.random.default_rng(1)
    xs = [rng.uniform(-3.0, 3.0, size=200) for _ in range(25)]
    xs[0][:4] = [-3.0, 3.0, -3.0, 3.0]  # values at the clipping bound
    xs[1][:3] = [-1e-9, -2.5, -0.75]
    codes = [fp.encode(x) for x in xs]
    decoded = fp.decode_sum(_ring_sum(codes), len(xs))
    # integer domain: the decoded sum is exactly the sum of the rounded integers (Python ints, no wrap)
    ints = [sum(round(float(x[j]) * 2 ** 16) for x in xs) for j in range(200)]
    assert [int(v) for v in decoded * 2 ** 16] == ints
    true = np.array([math.fsum(float(x[j]) for x in xs) for j in range(200)])
    assert np.all(np.abs(decoded - true) <= fp.sum_error_bound(len(xs)) + 1e-12)
    assert np.any(decoded < 0)


def test_each_value_rounds_to_nearest():
    # the bound n·2^-f/2 needs round-to-nearest; truncation toward zero or floor moves values by up to 2^-f
    fp = FixedPoint(frac_bits=4, clip=10.0)
    x = (np.arange(-50, 50) + 0.7) * fp.resolution
    back = fp.decode_sum(fp.encode(x), 1)
    assert np.max(np.abs(back - x)) <= fp.resolution / 2 + 1e-15
    assert fp.resolution == 2.0 ** -4 and fp.sum_error_bound(8) == 8 * 2.0 ** -4 / 2


def test_out_of_range_refused_unless_clipping_is_asked_and_counted():
    fp = FixedPoint(frac_bits=8, clip=1.0)
    with pytest.raises(PrivacyError, match="outside"):
        fp.encode(np.array([0.5, 1.5]))
    codes = fp.encode(np.array([0.5, 1.5, -7.0, 1.0]), allow_clipping=True)
    assert fp.n_clipped == 2
    assert np.array_equal(codes.view(np.int64), [128, 256, -256, 256])
    with pytest.raises(PrivacyError, match="NaN"):
        fp.encode(np.array([np.nan]), allow_clipping=True)


def test_overflow_refused_before_the_round():
    fp = FixedPoint(frac_bits=60, clip=1.0)  # one value at the bound is 2^60: eight of them reach 2^63
    assert fp.capacity == 7
    fp.check_capacity(7)
    seven = _ring_sum([fp.encode(np.array([1.0, -1.0]))] * 7)
    assert np.array_equal(fp.decode_sum(seven, 7), [7.0, -7.0])
    eight = _ring_sum([fp.encode(np.array([1.0]))] * 8)
    assert eight.view(np.int64)[0] < 0  # what a silent wrap would give
    with pytest.raises(PrivacyError, match="overflow"):
        fp.check_capacity(8)
    with pytest.raises(PrivacyError, match="overflow"):
        fp.decode_sum(eight, 8)


def test_decode_refuses_a_residue_no_sum_of_n_values_can_give():
    fp = FixedPoint(frac_bits=8, clip=1.0)
    three = _ring_sum([fp.encode(np.array([1.0]))] * 3)
    assert fp.decode_sum(three, 3)[0] == 3.0
    with pytest.raises(PrivacyError, match="cannot be a sum of 2"):
        fp.decode_sum(three, 2)


@pytest.mark.parametrize("frac_bits, clip", [(-1, 1.0), (63, 1.0), (8, 0.0), (8, float("inf")), (0, 0.25),
                                             (40, 2.0 ** 30)])
def test_bad_settings_refused(frac_bits, clip):
    with pytest.raises(PrivacyConfigError) as err:
        FixedPoint(frac_bits, clip)
    assert isinstance(err.value, ConfigError)


def test_a_margin_admits_a_bounded_addition_and_counts_against_capacity():
    fp = FixedPoint(frac_bits=8, clip=1.0)
    three = _ring_sum([fp.encode(np.array([1.0, -1.0]))] * 3)
    noisy = three + np.array([5, 2 ** 64 - 5], dtype=np.uint64)  # +5 and -5 integer units
    with pytest.raises(PrivacyError, match="cannot be a sum of 3"):
        fp.decode_sum(noisy, 3)
    assert np.array_equal(fp.decode_sum(noisy, 3, margin=5), [3.0 + 5 / 256, -3.0 - 5 / 256])
    with pytest.raises(PrivacyError, match="cannot be a sum of 3"):
        fp.decode_sum(noisy, 3, margin=4)
    big = FixedPoint(frac_bits=60, clip=1.0)
    big.check_capacity(7, margin=2 ** 60 - 1)
    with pytest.raises(PrivacyError, match="margin"):
        big.check_capacity(7, margin=2 ** 60)
