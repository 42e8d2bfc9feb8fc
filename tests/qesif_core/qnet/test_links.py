"""A link's blocks through the QKD engine: the attacker acts exactly inside its window, Algorithm 1 keeps
attacked keys out, a repeater link runs BBM92 on the chain model, and a noise-free reference is clean."""

from __future__ import annotations

import numpy as np
import pytest

from qesif_core.entropy_keys import KeyPolicy
from qesif_core.errors import UserInputError
from qesif_core.qkd.channel import ChannelParams, preset
from qesif_core.qnet.links import AttackWindow, LinkModel, accept_block, run_link_block

PULSES = 1_000_000


def link(**changes) -> LinkModel:
    values = dict(
        name="l",
        channel=ChannelParams(distance_km=8.0),
        protocol="bb84",
        pulses_per_block=PULSES,
        block_duration_s=10.0,
        attack=AttackWindow("intercept-resend", 0.56, 100.0, 200.0),
    )
    values.update(changes)
    return LinkModel(**values)


def test_attacker_only_inside_its_window(rng):
    model = link()
    assert [model.attacked(t) for t in (90.0, 100.0, 199.0, 200.0)] == [False, True, True, False]
    before, during = run_link_block(model, 90.0, rng), run_link_block(model, 150.0, rng)
    assert before.qber < 0.03 < 0.1 < during.qber
    assert accept_block("l", before, KeyPolicy()) == (True, True)
    accepted, admitted = accept_block("l", during, KeyPolicy())
    assert not admitted  # at ~15% QBER no secret key survives, Algorithm 1 discards the window
    assert during.secret_bits == 0 and not accepted


def test_benign_and_reference_remove_the_attacker():
    model = link(
        channel=ChannelParams(distance_km=8.0, intrinsic_error=0.05, eve="intercept-resend", eve_fraction=0.1)
    )
    assert model.attacked(0.0)
    benign = model.benign()
    assert not benign.attacked(150.0) and benign.channel.intrinsic_error == 0.05
    reference = model.reference()
    assert reference.channel.intrinsic_error == preset("clean").intrinsic_error
    assert reference.channel.distance_km == 8.0 and reference.attack is None


def test_repeater_link_runs_bbm92_on_the_chain_model(rng):
    model = link(channel=ChannelParams(distance_km=40.0), segments=2, attack=None)
    assert model.is_repeater and "built-in repeater-chain model" in model.description
    pairs = model.pairs_per_block()
    assert 0 < pairs < 10**6
    block = run_link_block(model, 0.0, rng)
    assert block.protocol == "bbm92" and block.pulses == pairs and block.loss_fraction == 0.0
    expected = (1 - (1 - 2 * 0.01) ** 2) / 2  # two 1% segments: 1.98%
    sampled = 2 * block.reconciled_bits  # Z-basis key bits and about as many X-basis bits
    assert abs(block.qber - expected) < 4 * np.sqrt(expected / sampled)


def test_attack_window_is_checked():
    with pytest.raises(UserInputError, match="start_s"):
        AttackWindow("intercept-resend", 0.5, 10.0, 10.0)
    with pytest.raises(UserInputError, match="fraction"):
        AttackWindow("intercept-resend", 0.0, 0.0, 10.0)
    with pytest.raises(UserInputError, match="mode"):
        AttackWindow("none", 0.5, 0.0, 10.0)
