import dataclasses
import math

import numpy as np
import pytest

from qesif_core.errors import UserInputError
from qesif_core.qkd import bb84
from qesif_core.qkd.channel import CHANNEL_PRESETS, ChannelParams

PULSES = 10**8


def _sifted_qber(counts, k=0):
    errors = counts.errors_z[k] + counts.errors_x[k]
    sifted = counts.sifted_z[k] + counts.sifted_x[k]
    return errors / sifted, sifted


def _within_three_se(measured, expected, n):
    se = math.sqrt(expected * (1 - expected) / n)
    assert abs(measured - expected) <= 3 * se, (measured, expected, se)


@pytest.mark.parametrize("intrinsic", [0.01, 0.07])
def test_qber_emerges_from_intrinsic_error(intrinsic, rng):
    params = ChannelParams(intrinsic_error=intrinsic)
    qber, sifted = _sifted_qber(bb84.simulate(params, PULSES, rng).counts)
    # Dark counts add Y0/2 per detection: negligible at 10 km, and part of the expectation.
    probabilities, yields, errors = bb84.cell_model(params, params.mu_signal)
    expected = float(probabilities @ (yields * errors) / (probabilities @ yields))
    assert expected == pytest.approx(intrinsic, abs=1e-4)
    _within_three_se(qber, expected, sifted)


@pytest.mark.parametrize("fraction", [0.2, 0.56, 1.0])
def test_intercept_resend_fraction_adds_a_quarter_of_it(fraction, rng):
    params = ChannelParams(
        intrinsic_error=0.0, dark_count_prob=0.0, eve="intercept-resend", eve_fraction=fraction
    )
    qber, sifted = _sifted_qber(bb84.simulate(params, PULSES, rng).counts)
    _within_three_se(qber, fraction / 4, sifted)


def test_eavesdropped_preset_qber_follows_the_attack_model(rng):
    params = CHANNEL_PRESETS["eavesdropped"]
    qber, sifted = _sifted_qber(bb84.simulate(params, PULSES, rng).counts)
    p, e_d = params.eve_fraction, params.intrinsic_error
    _within_three_se(qber, e_d + p * (0.25 - e_d / 2), sifted)
    assert 0.14 < qber < 0.16


def test_gains_match_the_poisson_yield_model(rng):
    params = ChannelParams(distance_km=25)
    counts = bb84.simulate(params, PULSES, rng).counts
    for k, mu in enumerate(counts.intensities):
        if mu == 0:
            expected = params.dark_count_prob
        else:
            probabilities, yields, _ = bb84.cell_model(params, mu)
            expected = float(probabilities @ yields)
        _within_three_se(counts.detected[k] / counts.sent[k], expected, counts.sent[k])


def test_raw_key_carries_exactly_the_sampled_z_errors(rng):
    detections = bb84.simulate(CHANNEL_PRESETS["noisy"], 10**7, rng)
    raw = detections.raw_key
    assert len(raw) == detections.counts.sifted_z[0]
    assert np.count_nonzero(raw.alice != raw.bob) == detections.counts.errors_z[0]
    assert "alice" not in repr(raw).replace("RawKey(", "")


def test_a_frame_is_drawn_from_the_same_block_counts():
    params = CHANNEL_PRESETS["noisy"]
    whole = bb84.simulate(params, 10**7, np.random.default_rng(3))
    framed = bb84.simulate(params, 10**7, np.random.default_rng(3), frame_bits=1000)
    for field in ("sent", "detected", "sifted_z", "sifted_x", "errors_z", "errors_x", "mismatched"):
        assert np.array_equal(getattr(whole.counts, field), getattr(framed.counts, field))
    assert len(framed.raw_key) == 1000
    # A frame's errors are hypergeometric given the block's: mean n p, variance n p (1 - p) (N - n)/(N - 1).
    n_key, errors = int(whole.counts.sifted_z[0]), int(whole.counts.errors_z[0])
    rng = np.random.default_rng(4)
    frame_errors = [
        np.count_nonzero(key.alice != key.bob)
        for key in (bb84.draw_key_frame(n_key, errors, 1000, rng) for _ in range(2000))
    ]
    p = errors / n_key
    assert np.mean(frame_errors) == pytest.approx(1000 * p, abs=4 * np.sqrt(1000 * p / 2000))
    assert np.var(frame_errors) == pytest.approx(1000 * p * (1 - p) * (n_key - 1000) / (n_key - 1), rel=0.1)


def test_frames_of_blocks_beyond_the_hypergeometric_limit_are_binomial():
    rng = np.random.default_rng(5)
    frames = [bb84.draw_key_frame(3 * 10**9, 3 * 10**8, 5000, rng) for _ in range(200)]
    errors = [np.count_nonzero(key.alice != key.bob) for key in frames]
    assert np.mean(errors) == pytest.approx(500, abs=4 * np.sqrt(450 / 200))
    assert {len(key) for key in frames} == {5000}


def test_expected_counts_are_the_mean_of_the_sampled_counts():
    params = ChannelParams(distance_km=25, intrinsic_error=0.03)
    expected = bb84.expected_counts(params, 10**8)
    sampled = bb84.simulate(params, 10**8, np.random.default_rng(6)).counts
    for field in ("sent", "detected", "sifted_z", "sifted_x", "errors_z", "errors_x", "mismatched"):
        for k in range(3):
            mean, drawn = getattr(expected, field)[k], getattr(sampled, field)[k]
            assert abs(drawn - mean) <= 5 * np.sqrt(max(mean, 1)), (field, k)


def test_basis_choice_sifts_about_half_of_detections(rng):
    counts = bb84.simulate(CHANNEL_PRESETS["clean"], 10**7, rng).counts
    sifted = counts.sifted_z.sum() + counts.sifted_x.sum()
    _within_three_se(sifted / counts.detected.sum(), 0.5, counts.detected.sum())


def test_pns_keeps_qber_and_signal_gain_but_starves_the_decoy(rng):
    honest = ChannelParams(distance_km=50)
    attacked = dataclasses.replace(honest, eve="pns", eve_fraction=1.0)
    c_honest = bb84.simulate(honest, 10**9, rng).counts
    c_pns = bb84.simulate(attacked, 10**9, rng).counts
    gain = lambda c, k: c.detected[k] / c.sent[k]  # noqa: E731
    assert gain(c_pns, 0) == pytest.approx(gain(c_honest, 0), rel=0.02)
    assert gain(c_pns, 1) < 0.5 * gain(c_honest, 1)
    qber, sifted = _sifted_qber(c_pns)
    _within_three_se(qber, honest.intrinsic_error, sifted)


def test_pns_transmittance_is_lossless_when_the_link_is_short():
    assert bb84.pns_transmittance(ChannelParams(distance_km=1, eve="pns", eve_fraction=1.0)) == 1.0
    t_eve = bb84.pns_transmittance(ChannelParams(distance_km=50, eve="pns", eve_fraction=1.0))
    assert 0.1 < t_eve < 1.0


def test_single_photon_truth_is_the_transmittance_for_an_honest_link():
    params = ChannelParams(distance_km=30, dark_count_prob=0.0)
    y1, e1 = bb84.single_photon_truth(params)
    assert y1 == pytest.approx(params.transmittance)
    assert e1 == pytest.approx(params.intrinsic_error)


def test_same_seed_same_block():
    runs = [bb84.simulate(CHANNEL_PRESETS["eavesdropped"], 10**6, np.random.default_rng(7)) for _ in range(2)]
    for field in ("sent", "detected", "sifted_z", "sifted_x", "errors_z", "errors_x", "mismatched"):
        assert np.array_equal(getattr(runs[0].counts, field), getattr(runs[1].counts, field))
    assert np.array_equal(runs[0].raw_key.bob, runs[1].raw_key.bob)


@pytest.mark.parametrize("pulses", [0, -5, 2.5, True])
def test_pulses_must_be_positive_integers(pulses, rng):
    with pytest.raises(UserInputError, match="pulses"):
        bb84.simulate(CHANNEL_PRESETS["clean"], pulses, rng)


def test_blocks_too_large_for_memory_are_refused(rng):
    with pytest.raises(UserInputError, match="at most"):
        bb84.simulate(CHANNEL_PRESETS["clean"], 10**16, rng)
    with pytest.raises(UserInputError, match="raw key bits"):
        bb84.simulate(ChannelParams(distance_km=0.0, detector_efficiency=1.0), 10**10, rng)


def test_photon_number_pmf_sums_to_one_and_is_poisson():
    pmf = bb84.photon_number_pmf(0.5)
    assert pmf.sum() == pytest.approx(1.0)
    assert pmf[1] == pytest.approx(0.5 * math.exp(-0.5))
