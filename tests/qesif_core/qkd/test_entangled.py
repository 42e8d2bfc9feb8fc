import dataclasses
import math

import numpy as np
import pytest

from qesif_core.errors import UserInputError
from qesif_core.qkd import entangled
from qesif_core.qkd.channel import CHANNEL_PRESETS, ChannelParams

IDEAL_LINK = ChannelParams(distance_km=0.0, detector_efficiency=1.0, dark_count_prob=0.0, intrinsic_error=0.0)


def _within_three_se(measured, expected, n):
    se = math.sqrt(max(expected * (1 - expected), 1e-12) / n)
    assert abs(measured - expected) <= 3 * se, (measured, expected, se)


def test_pauli_errors_map_to_basis_qbers(rng):
    model = entangled.BellPairModel(x_error=0.02, y_error=0.01, z_error=0.04)
    assert model.qber_z == pytest.approx(0.03)
    assert model.qber_x == pytest.approx(0.05)
    assert model.fidelity == pytest.approx(0.93)
    counts = entangled.simulate(IDEAL_LINK, 10**6, rng, bell_model=model).detections.counts
    _within_three_se(counts.errors_z[0] / counts.sifted_z[0], 0.03, counts.sifted_z[0])
    _within_three_se(counts.errors_x[0] / counts.sifted_x[0], 0.05, counts.sifted_x[0])


def test_werner_pair_from_fidelity():
    model = entangled.BellPairModel.from_fidelity(0.94)
    assert (model.x_error, model.y_error, model.z_error) == pytest.approx((0.02, 0.02, 0.02))
    assert model.qber_z == pytest.approx(0.04)


def test_chsh_matches_the_pauli_model_and_detects_intercept_resend(rng):
    model = entangled.BellPairModel(0.01, 0.0, 0.01)
    clean = entangled.simulate(IDEAL_LINK, 10**6, rng, bell_model=model, chsh_fraction=0.2).chsh
    expected = math.sqrt(2) * (2 - 2 * model.qber_z - 2 * model.qber_x)
    assert abs(clean.s_value - expected) <= 3 * clean.standard_error
    assert clean.violates_local_bound
    attacked_link = dataclasses.replace(IDEAL_LINK, eve="intercept-resend", eve_fraction=1.0)
    attacked = entangled.simulate(attacked_link, 10**6, rng, bell_model=model, chsh_fraction=0.2).chsh
    assert abs(attacked.s_value - expected / 2) <= 3 * attacked.standard_error
    assert not attacked.violates_local_bound


def test_intercept_resend_on_pairs_adds_a_quarter_of_the_fraction(rng):
    link = dataclasses.replace(IDEAL_LINK, eve="intercept-resend", eve_fraction=0.56)
    counts = entangled.simulate(link, 10**6, rng).detections.counts
    sifted = counts.sifted_z[0] + counts.sifted_x[0]
    _within_three_se((counts.errors_z[0] + counts.errors_x[0]) / sifted, 0.56 / 4, sifted)


def test_loss_and_dark_counts_set_the_coincidence_rate(rng):
    params = ChannelParams(distance_km=20.0, dark_count_prob=1e-4)
    counts = entangled.simulate(params, 10**7, rng).detections.counts
    arm = 10 ** (-0.2 * 10 / 10) * params.detector_efficiency
    click = 1 - (1 - 1e-4) * (1 - arm)
    _within_three_se(counts.detected[0] / counts.sent[0], click * click, counts.sent[0])


def test_bad_inputs_are_named(rng):
    with pytest.raises(UserInputError, match="x_error"):
        entangled.BellPairModel(1.2, 0.0, 0.0)
    with pytest.raises(UserInputError, match="fidelity"):
        entangled.BellPairModel.from_fidelity(0.1)
    with pytest.raises(UserInputError, match="pns"):
        entangled.simulate(ChannelParams(eve="pns", eve_fraction=1.0), 100, rng)
    with pytest.raises(UserInputError, match="pairs"):
        entangled.simulate(CHANNEL_PRESETS["clean"], 0, rng)


def test_same_seed_same_pairs():
    runs = [entangled.simulate(CHANNEL_PRESETS["noisy"], 10**6, np.random.default_rng(5)) for _ in range(2)]
    assert runs[0].chsh == runs[1].chsh
    assert np.array_equal(runs[0].detections.raw_key.bob, runs[1].detections.raw_key.bob)
