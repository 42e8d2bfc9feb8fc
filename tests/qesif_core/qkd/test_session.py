import dataclasses
import math

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


@pytest.mark.parametrize("frame_bits", [None, session.DEFAULT_FRAME_BITS])
@pytest.mark.parametrize("protocol", ["bb84", "bbm92"])
@pytest.mark.parametrize("intrinsic", [0.01, 0.03, 0.05, 0.08, 0.10])
def test_final_keys_identical_after_correction_and_amplification(protocol, intrinsic, frame_bits):
    params = ChannelParams(intrinsic_error=intrinsic)
    pulses = 4 * 10**6 if protocol == "bb84" else 10**7
    frame_errors = 0
    for seed in range(12):
        result = session.run_block(
            params, pulses, np.random.default_rng(seed), protocol, frame_bits=frame_bits
        )
        assert result.reconciled_bits > 20_000
        assert result.frame_bits == (frame_bits or result.reconciled_bits)
        if result.frame_error:
            frame_errors += 1
            assert not result.keys_match
            assert result.key_bits == 0 and result.alice_key.size == 0
            continue
        assert result.keys_match
        assert np.array_equal(result.alice_key, result.bob_key)
        # The keys are the frame's share of the block's key length: never more than was reconciled.
        assert result.alice_key.size == result.key_bits
        assert result.key_bits == result.secret_bits * result.frame_bits // result.reconciled_bits
        if intrinsic <= 0.03:
            assert result.secret_bits > 1000 and result.key_bits > 0
    assert frame_errors <= 1


def test_a_failed_frame_loses_its_share_of_the_block_only(monkeypatch):
    reconcile = session.cascade.reconcile

    def residual_error(*args, **kwargs):  # Cascade leaves one error: the tag must catch it
        result = reconcile(*args, **kwargs)
        corrected = result.corrected.copy()
        corrected[0] ^= 1
        return dataclasses.replace(result, corrected=corrected)

    monkeypatch.setattr(session.cascade, "reconcile", residual_error)
    params = CHANNEL_PRESETS["clean"]
    whole = session.run_block(params, 10**8, np.random.default_rng(4), frame_bits=None)
    framed = session.run_block(params, 10**8, np.random.default_rng(4))
    for result in (whole, framed):
        assert result.frame_error and not result.keys_match and result.key_bits == 0
    assert whole.secret_bits == 0  # the frame was the block
    monkeypatch.setattr(session.cascade, "reconcile", reconcile)
    verified = session.run_block(params, 10**8, np.random.default_rng(4))
    assert verified.keys_match
    assert framed.secret_bits == verified.secret_bits - verified.key_bits  # one frame of 75 lost


def test_further_frames_materialise_more_key_without_changing_the_block():
    params = CHANNEL_PRESETS["clean"]
    rng_one, rng_more = np.random.default_rng(6), np.random.default_rng(6)
    one = session.run_block(params, 10**8, rng_one)
    more = session.run_block(params, 10**8, rng_more, min_key_bits=30_000)
    per_frame = one.key_bits
    assert more.key_bits >= 30_000 > 3 * per_frame
    assert more.frame_bits == -(-30_000 // per_frame) * session.DEFAULT_FRAME_BITS
    assert more.key_bits == more.secret_bits * more.frame_bits // more.reconciled_bits
    assert more.keys_match and np.array_equal(more.alice_key, more.bob_key)
    same = ("alice_key", "bob_key", "key_bits", "frame_bits")
    assert {k: v for k, v in one.figures().items() if k not in same} == {
        k: v for k, v in more.figures().items() if k not in same
    }
    # The link's generator is where it would have been: the next block is the same either way.
    assert (
        session.run_block(params, 10**8, rng_one).figures()
        == session.run_block(params, 10**8, rng_more).figures()
    )
    everything = session.run_block(params, 10**7, np.random.default_rng(6), min_key_bits=10**9)
    assert everything.frame_bits == everything.reconciled_bits
    assert 0.95 * everything.secret_bits <= everything.key_bits <= everything.secret_bits


def test_key_length_recomputed_by_hand():
    """Lim et al. (2014) Eq. (1) from the block's published figures, with every disclosed bit paid for:
    Cascade's parities, and the 64-bit verification tag (log2(2/eps_cor) = 65 bits, eps_cor = 2^-64)."""
    result = session.run_block(CHANNEL_PRESETS["clean"], 10**7, np.random.default_rng(8), frame_bits=None)
    by_hand = math.floor(
        result.vacuum_key_bits_lower
        + result.single_photon_key_bits_lower * (1 - keyrate.h2(result.phase_error_upper))
        - result.disclosed_bits
        - 6 * math.log2(21 / 1e-10)
        - (64 + 1)
    )
    assert result.secret_bits == by_hand > 0
    assert result.key_bits == result.secret_bits
    # eps_sec + eps_cor + 8 parameter-estimation bounds at eps_pe = 1e-10 each.
    assert result.epsilon == pytest.approx(1e-10 + 2.0**-64 + 8e-10, rel=1e-12)
    shorter_tag = session.run_block(
        CHANNEL_PRESETS["clean"],
        10**7,
        np.random.default_rng(8),
        frame_bits=None,
        security=keyrate.SecurityParams(tag_bits=32),
    )
    assert result.secret_bits == shorter_tag.secret_bits - 32
    assert shorter_tag.epsilon == pytest.approx(1e-10 + 2.0**-32 + 8e-10, rel=1e-12)


@pytest.mark.parametrize(("intrinsic", "seeds"), [(0.01, 4), (0.03, 4), (0.07, 4), (0.10, 3)])
def test_sub_frame_leak_bounds_full_block_cascade(intrinsic, seeds):
    """The same blocks (same counts) reconciled whole and on a 2^14-bit frame: the frame's charge is an
    upper bound of what Cascade discloses on the whole raw key, and not far above it."""
    params = ChannelParams(intrinsic_error=intrinsic)
    for seed in range(seeds):
        whole = session.run_block(params, 10**7, np.random.default_rng(seed), frame_bits=None)
        framed = session.run_block(params, 10**7, np.random.default_rng(seed))
        assert (framed.reconciled_bits, framed.qber_z) == (whole.reconciled_bits, whole.qber_z)
        assert framed.frame_bits < whole.reconciled_bits
        assert whole.disclosed_bits <= framed.disclosed_bits <= 1.15 * whole.disclosed_bits
        assert framed.ec_efficiency_bound > whole.ec_efficiency
        if not (whole.frame_error or framed.frame_error):
            assert framed.secret_bits <= whole.secret_bits


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
    # Cascade (yanetal) discloses about f h2(Q) per bit, f = 1.07-1.10 on a 2^14-bit frame at 7 %; the block
    # is charged at the bound f_U = f + 2 x 0.5/sqrt(errors in the frame).
    assert result.frame_bits == session.DEFAULT_FRAME_BITS
    assert 1.0 < result.ec_efficiency < 1.15
    # ~1,150 errors in the frame: a margin of 1/sqrt(1150) = 0.03.
    assert result.ec_efficiency + 0.025 < result.ec_efficiency_bound < result.ec_efficiency + 0.035
    assert result.disclosed_bits == math.ceil(
        result.ec_efficiency_bound * result.reconciled_bits * keyrate.h2(result.qber_z)
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


@pytest.mark.parametrize("pulses", [10**7, 10**12])
def test_same_seed_same_block_bit_for_bit(pulses):
    runs = [session.run_block(CHANNEL_PRESETS["clean"], pulses, np.random.default_rng(42)) for _ in range(2)]
    assert runs[0].figures() == runs[1].figures()
    assert np.array_equal(runs[0].alice_key, runs[1].alice_key)
    assert runs[0].key_bits > 0


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
    with pytest.raises(UserInputError, match="frame_bits"):
        session.run_block(CHANNEL_PRESETS["clean"], 100, rng, frame_bits=0)
    with pytest.raises(UserInputError, match="min_key_bits"):
        session.run_block(CHANNEL_PRESETS["clean"], 100, rng, min_key_bits=-1)


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
    # Error correction is charged at f_U, the sub-frame's bound (ec_efficiency when the frame is the block).
    asymptotic = 1 - result.ec_efficiency_bound * keyrate.h2(result.qber_z) - keyrate.h2(result.qber_x)
    assert result.secret_fraction == pytest.approx(asymptotic, rel=0.02)
    assert result.keys_match


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["original", "yanetal", "biconf"])
def test_sub_frame_charge_covers_full_block_cascade_in_every_block(variant):
    """40 blocks of ~600,000 raw key bits per variant (1-10 % errors): the 2^14-bit frame's charge is at
    least what Cascade discloses on the whole raw key, and on average within 10 % of it."""
    ratios = []
    for intrinsic in (0.01, 0.03, 0.07, 0.10):
        params = ChannelParams(intrinsic_error=intrinsic)
        for seed in range(10):
            kwargs = {"cascade_variant": variant}
            whole = session.run_block(
                params, 5 * 10**7, np.random.default_rng(seed), frame_bits=None, **kwargs
            )
            framed = session.run_block(params, 5 * 10**7, np.random.default_rng(seed), **kwargs)
            ratios.append(framed.disclosed_bits / whole.disclosed_bits)
    assert min(ratios) >= 1.0
    assert np.mean(ratios) < 1.10
