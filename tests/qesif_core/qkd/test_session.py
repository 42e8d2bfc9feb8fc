import dataclasses

import numpy as np
import pytest

from qesif_core import entropy_keys
from qesif_core.errors import UserInputError
from qesif_core.qkd import bb84, entangled, keyrate, session
from qesif_core.qkd.channel import CHANNEL_PRESETS, ChannelParams

IDEAL_LINK = ChannelParams(distance_km=0.0, detector_efficiency=1.0, dark_count_prob=0.0, intrinsic_error=0.0)


def _verdict(result):
    slot = entropy_keys.SlotObservation(h_q=result.h_q, theta=result.qber, loss=result.loss_fraction)
    return entropy_keys.generate_key("device", [slot], gamma=1.0).accepted


@pytest.mark.parametrize("protocol", ["bb84", "bbm92"])
@pytest.mark.parametrize("intrinsic", [0.01, 0.03, 0.05, 0.08, 0.10])
def test_final_keys_identical_after_correction_and_amplification(protocol, intrinsic):
    params = ChannelParams(intrinsic_error=intrinsic)
    pulses = 4 * 10**6 if protocol == "bb84" else 10**7
    frame_errors = 0
    for seed in range(12):
        result = session.run_block(params, pulses, np.random.default_rng(seed), protocol)
        assert result.reconciled_bits > 20_000
        if result.frame_error:
            frame_errors += 1
            assert not result.keys_match
            assert result.secret_bits == 0
            continue
        assert result.keys_match
        assert np.array_equal(result.alice_key, result.bob_key)
        assert result.alice_key.size == result.secret_bits
        if intrinsic <= 0.03:
            assert result.secret_bits > 1000
    assert frame_errors <= 1


def test_qber_fields_measure_the_channel(rng):
    result = session.run_block(CHANNEL_PRESETS["noisy"], 10**8, rng)
    for name in ("qber", "qber_z", "qber_x"):
        assert getattr(result, name) == pytest.approx(0.07, abs=0.003)
    assert result.basis_mismatch_entropy == pytest.approx(1.0, abs=1e-3)
    params = CHANNEL_PRESETS["noisy"]
    detection_probability = params.prob_vacuum * params.dark_count_prob
    for share, mu in ((params.prob_signal, params.mu_signal), (params.prob_decoy, params.mu_decoy)):
        probabilities, yields, _ = bb84.cell_model(params, mu)
        detection_probability += share * float(probabilities @ yields)
    assert result.loss_fraction == pytest.approx(1 - detection_probability, abs=1e-4)
    # Cascade discloses about f h2(Q) per bit with f near the yanetal reference (1.06-1.08 at n = 1e5-1e6).
    assert 1.0 < result.ec_efficiency < 1.15
    assert result.disclosed_bits == pytest.approx(
        result.ec_efficiency * result.reconciled_bits * keyrate.h2(result.qber_z), rel=1e-9
    )


def test_eavesdropped_keys_discarded_and_clean_keys_accepted():
    sessions = 300
    clean = [
        _verdict(session.run_block(CHANNEL_PRESETS["clean"], 10**6, np.random.default_rng(s)))
        for s in range(sessions)
    ]
    attacked = [
        _verdict(session.run_block(CHANNEL_PRESETS["eavesdropped"], 10**6, np.random.default_rng(10**6 + s)))
        for s in range(sessions)
    ]
    assert np.mean(clean) >= 0.99
    assert 1 - np.mean(attacked) >= 0.95


def test_decoys_reveal_photon_number_splitting_that_the_qber_hides():
    honest_link = ChannelParams(distance_km=50)
    pns_link = dataclasses.replace(honest_link, eve="pns", eve_fraction=1.0)
    honest = session.run_block(honest_link, 10**9, np.random.default_rng(1))
    attacked = session.run_block(pns_link, 10**9, np.random.default_rng(2))
    assert honest.secret_bits > 10_000
    assert attacked.qber == pytest.approx(honest.qber, abs=0.002)
    assert attacked.h_q == pytest.approx(honest.h_q, abs=0.02)  # the paper's H_q alone cannot see PNS
    assert attacked.single_photon_yield_lower < 0.05 * honest.single_photon_yield_lower
    assert attacked.secret_bits == 0


def test_bell_pair_model_drives_bbm92(rng):
    model = entangled.BellPairModel(x_error=0.0, y_error=0.0, z_error=0.06)
    result = session.run_block(IDEAL_LINK, 10**6, rng, "bbm92", bell_model=model)
    assert result.qber_z < 0.001
    assert result.qber_x == pytest.approx(0.06, abs=0.005)
    assert result.chsh_s == pytest.approx(np.sqrt(2) * (2 - 0.12), abs=4 * result.chsh_standard_error)


def test_same_seed_same_block_bit_for_bit():
    runs = [session.run_block(CHANNEL_PRESETS["clean"], 10**7, np.random.default_rng(42)) for _ in range(2)]
    assert runs[0].figures() == runs[1].figures()
    assert np.array_equal(runs[0].alice_key, runs[1].alice_key)


def test_keys_stay_out_of_repr_and_figures(rng):
    result = session.run_block(CHANNEL_PRESETS["clean"], 10**6, rng)
    assert "key=" not in repr(result).replace("keys_match=", "")
    assert "alice_key" not in result.figures()
    assert "bob_key" not in result.figures()


def test_bad_arguments_are_user_errors(rng):
    with pytest.raises(UserInputError, match="protocol"):
        session.run_block(CHANNEL_PRESETS["clean"], 100, rng, "e91x")
    with pytest.raises(UserInputError, match="Cascade variant"):
        session.run_block(CHANNEL_PRESETS["clean"], 100, rng, cascade_variant="ldpc")
    with pytest.raises(UserInputError, match="bbm92"):
        session.run_block(CHANNEL_PRESETS["clean"], 100, rng, bell_model=entangled.BellPairModel(0, 0, 0))


def test_tiny_block_without_detections_gives_no_key(rng):
    result = session.run_block(ChannelParams(distance_km=200), 10, rng)
    assert result.reconciled_bits == 0
    assert result.secret_bits == 0


@pytest.mark.slow
@pytest.mark.parametrize("qber", [0.01, 0.02, 0.04])
def test_secret_fraction_matches_shor_preskill_asymptotically(qber):
    model = entangled.BellPairModel(x_error=qber, y_error=0.0, z_error=qber)
    result = session.run_block(IDEAL_LINK, 4 * 10**7, np.random.default_rng(11), "bbm92", bell_model=model)
    assert result.reconciled_bits > 8 * 10**6
    asymptotic = 1 - result.ec_efficiency * keyrate.h2(result.qber_z) - keyrate.h2(result.qber_x)
    assert result.secret_fraction == pytest.approx(asymptotic, rel=0.02)
    assert result.keys_match
