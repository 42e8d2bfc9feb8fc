import dataclasses
import math

import numpy as np
import pytest

from qesif_core.qkd import bb84, keyrate
from qesif_core.qkd.channel import ChannelParams


def test_h2_known_values():
    assert keyrate.h2(0.0) == 0.0
    assert keyrate.h2(1.0) == 0.0
    assert keyrate.h2(0.5) == pytest.approx(1.0)
    assert keyrate.h2(0.11) == pytest.approx(0.4999, abs=1e-3)
    assert np.allclose(keyrate.h2(np.array([0.1, 0.9])), 0.4689955935892812)


def test_clopper_pearson_closed_forms():
    # No successes in n trials: upper bound 1 - eps^(1/n); all successes: lower bound eps^(1/n).
    assert keyrate.clopper_pearson_upper(0, 100, 0.05) == pytest.approx(1 - 0.05 ** (1 / 100))
    assert keyrate.clopper_pearson_lower(100, 100, 0.05) == pytest.approx(0.05 ** (1 / 100))
    assert keyrate.clopper_pearson_upper(5, 0, 0.05) == 1.0
    assert keyrate.clopper_pearson_lower(0, 10, 0.05) == 0.0


def test_clopper_pearson_covers_the_true_rate(rng):
    truth, n, eps = 0.03, 500, 0.05
    successes = rng.binomial(n, truth, size=2000)
    uppers = np.array([keyrate.clopper_pearson_upper(int(k), n, eps) for k in successes])
    lowers = np.array([keyrate.clopper_pearson_lower(int(k), n, eps) for k in successes])
    assert np.mean(uppers < truth) <= eps
    assert np.mean(lowers > truth) <= eps


@pytest.mark.parametrize("distance", [10.0, 50.0])
def test_decoy_bounds_hold_and_are_tight_for_large_blocks(distance):
    params = ChannelParams(distance_km=distance)
    y1, e1 = bb84.single_photon_truth(params)
    for seed in range(10):
        counts = bb84.simulate(params, 10**9, np.random.default_rng(seed)).counts
        estimate = keyrate.decoy_estimate(counts, 1e-10)
        assert estimate.y1_lower <= y1
        assert estimate.y1_lower >= 0.9 * y1
        assert estimate.e1_upper >= e1
        assert estimate.e1_upper <= 2.5 * e1
        # Single photons are at most all of the signal's detections, at least mu e^-mu Y1^L / Q_mu of them.
        assert estimate.single_key_bits_lower <= counts.sifted_z[0]


def test_decoy_bound_collapses_under_photon_number_splitting():
    attacked = ChannelParams(distance_km=50, eve="pns", eve_fraction=1.0)
    counts = bb84.simulate(attacked, 10**9, np.random.default_rng(3)).counts
    estimate = keyrate.decoy_estimate(counts, 1e-10)
    y1_honest, _ = bb84.single_photon_truth(dataclasses.replace(attacked, eve="none"))
    assert estimate.y1_lower < 0.05 * y1_honest
    qber = counts.errors_x[0] / counts.sifted_x[0]
    assert qber < 0.015  # the attack is invisible in the error rate
    leak = math.ceil(1.05 * counts.sifted_z[0] * keyrate.h2(qber))  # even an excellent error correction
    assert keyrate.secret_key_length(estimate, leak, keyrate.SecurityParams()) == 0


def test_key_length_approaches_the_shor_preskill_rate_for_large_blocks():
    q, f, n = 0.03, 1.1, 10**12
    estimate = keyrate.single_pair_estimate(n, n, round(q * n), 1e-10)
    leak = round(f * n * keyrate.h2(q))
    length = keyrate.secret_key_length(estimate, leak, keyrate.SecurityParams())
    assert length / n == pytest.approx(keyrate.asymptotic_secret_fraction(q, f), rel=1e-3)


def test_finite_key_overhead_and_never_negative():
    security = keyrate.SecurityParams()
    assert keyrate.finite_key_overhead(security) == pytest.approx(
        6 * math.log2(21 / security.eps_sec) + math.log2(2 / security.eps_cor)
    )
    small = keyrate.single_pair_estimate(100, 100, 1, 1e-10)
    assert keyrate.secret_key_length(small, 50, security) == 0


def test_sampling_deviation_shrinks_with_sample_size():
    small = keyrate.sampling_deviation(1e4, 1e4, 0.02, 1e-10)
    large = keyrate.sampling_deviation(1e6, 1e6, 0.02, 1e-10)
    assert large < small / 5
    assert keyrate.sampling_deviation(1e4, 1e4, 0.0, 1e-10) > 0


def test_the_verification_tag_is_charged_in_full_and_estimation_failures_are_in_epsilon():
    security = keyrate.SecurityParams()
    assert security.eps_cor == 2.0**-64  # the 64-bit Toeplitz tag's collision bound
    assert keyrate.finite_key_overhead(security) == pytest.approx(6 * math.log2(21 / 1e-10) + 64 + 1)
    counts = bb84.simulate(ChannelParams(), 10**8, np.random.default_rng(1)).counts
    decoy = keyrate.decoy_estimate(counts, security.eps_pe)
    pair = keyrate.single_pair_estimate(10**6, 10**6, 10**4, security.eps_pe)
    assert keyrate.key_epsilon(decoy, security) == pytest.approx(1e-10 + 2.0**-64 + 8 * 1e-10)
    assert keyrate.key_epsilon(pair, security) == pytest.approx(1e-10 + 2.0**-64 + 2 * 1e-10)
    with pytest.raises(ValueError, match="tag_bits"):
        keyrate.SecurityParams(tag_bits=0)
