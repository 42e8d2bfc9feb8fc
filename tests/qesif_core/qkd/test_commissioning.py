import dataclasses

import numpy as np
import pytest

from qesif_core.errors import UserInputError
from qesif_core.qkd import commissioning, session
from qesif_core.qkd.channel import CHANNEL_PRESETS

NOISY = CHANNEL_PRESETS["noisy"]
SOURCE_BLOCK = 10**9  # one 1-s round of a 1 GHz source


def test_optimised_intensities_give_the_noisy_link_a_key_that_mu_half_cannot():
    fixed = commissioning.commission(NOISY, SOURCE_BLOCK, "fixed")
    chosen = commissioning.commission(NOISY, SOURCE_BLOCK)
    assert (fixed.mu_signal, fixed.mu_decoy, fixed.optimised) == (0.5, 0.1, False)
    assert fixed.expected_secret_bits == 0.0
    assert chosen.optimised
    assert 0.05 < chosen.mu_signal < 0.3 and 0.0 < chosen.mu_decoy < chosen.mu_signal
    assert chosen.expected_secret_bits > 10**5


@pytest.mark.parametrize("name", ["clean", "noisy"])
def test_the_choice_is_a_local_maximum_of_the_expected_key(name):
    link = CHANNEL_PRESETS[name]
    chosen = commissioning.commission(link, SOURCE_BLOCK)
    best = chosen.expected_secret_bits
    for mu_factor, nu_factor in ((1.1, 1.0), (0.9, 1.0), (1.0, 1.2), (1.0, 0.8), (1.1, 1.1), (0.9, 0.9)):
        neighbour = dataclasses.replace(
            link, mu_signal=chosen.mu_signal * mu_factor, mu_decoy=chosen.mu_decoy * nu_factor
        )
        assert commissioning.expected_secret_bits(neighbour, SOURCE_BLOCK) <= best * 1.0005


def test_sampled_blocks_at_the_chosen_intensities_deliver_about_the_expected_key():
    chosen = commissioning.commission(NOISY, SOURCE_BLOCK)
    link = commissioning.apply(NOISY, chosen)
    keys = [session.run_block(link, SOURCE_BLOCK, np.random.default_rng(s)).secret_bits for s in range(5)]
    # The plan charges error correction at 1.16; the blocks at the sub-frame's measured bound (~1.11).
    assert all(key > 0 for key in keys)
    assert np.mean(keys) == pytest.approx(chosen.expected_secret_bits, rel=0.25)
    assert np.mean(keys) >= chosen.expected_secret_bits


def test_the_attacker_never_enters_the_choice():
    attacked = CHANNEL_PRESETS["eavesdropped"]
    honest = dataclasses.replace(attacked, eve="none", eve_fraction=0.0)
    assert commissioning.commission(attacked, SOURCE_BLOCK) == commissioning.commission(honest, SOURCE_BLOCK)
    applied = commissioning.apply(attacked, commissioning.commission(attacked, SOURCE_BLOCK))
    assert (applied.eve, applied.eve_fraction) == ("intercept-resend", attacked.eve_fraction)


def test_no_key_at_any_intensity_keeps_the_configured_values():
    chosen = commissioning.commission(NOISY, 4 * 10**6)
    assert not chosen.optimised
    assert (chosen.mu_signal, chosen.mu_decoy, chosen.expected_secret_bits) == (0.5, 0.1, 0.0)


def test_block_size_follows_the_source_unless_set():
    assert commissioning.block_pulses(1.0, 1e9) == 10**9
    assert commissioning.block_pulses(0.25, 2e8) == 5 * 10**7
    assert commissioning.block_pulses(1.0, 1e9, 4 * 10**6) == 4 * 10**6
    with pytest.raises(UserInputError, match="less than one pulse"):
        commissioning.block_pulses(1e-12, 1e9)
    with pytest.raises(UserInputError, match="source_rate_hz"):
        commissioning.block_pulses(1.0, float("nan"))
    with pytest.raises(UserInputError, match="intensities"):
        commissioning.commission(NOISY, 10**6, "best")
