"""The built-in repeater-chain model: Pauli composition, waiting time for all segments, pair rate."""

from __future__ import annotations

import pytest

from qesif_core.qkd.channel import ChannelParams
from qesif_core.qkd.entangled import BellPairModel
from qesif_core.qnet.repeater import chain_pair_model, chain_pair_rate, compose_pauli, expected_cycles


def test_swapping_composes_the_segments_errors():
    segment = BellPairModel(x_error=0.01, y_error=0.0, z_error=0.01)
    two = compose_pauli([segment, segment])
    # a bit flips end to end when exactly one segment flipped it: 2 q (1 - q) for ZZ and for XX
    assert two.qber_z == pytest.approx((1 - (1 - 2 * 0.01) ** 2) / 2, rel=1e-12)
    assert two.qber_x == pytest.approx(two.qber_z, rel=1e-12)
    assert compose_pauli([segment]) == BellPairModel(0.01, 0.0, 0.01)
    three = chain_pair_model(ChannelParams(intrinsic_error=0.02), 3)
    assert three.qber_z == pytest.approx((1 - (1 - 2 * 0.02) ** 3) / 2, rel=1e-12)


def test_expected_cycles_is_the_mean_of_the_slowest_segment(rng):
    assert expected_cycles(0.2, 1) == pytest.approx(5.0)
    draws = rng.geometric(0.2, size=(400_000, 3)).max(axis=1)
    assert expected_cycles(0.2, 3) == pytest.approx(draws.mean(), rel=0.01)
    assert expected_cycles(0.0, 2) == float("inf")


def test_chain_rate_falls_with_distance_and_rises_with_memories():
    short, long = ChannelParams(distance_km=20.0), ChannelParams(distance_km=60.0)
    assert chain_pair_rate(short, 2) > chain_pair_rate(long, 2) > 0
    assert chain_pair_rate(long, 2, memories=50) > chain_pair_rate(long, 2, memories=10)
    # one segment of length L, one memory: one pair per 1/p cycles of 2L/c
    p = 10 ** (-0.2 * 60 / 10) * 0.2
    assert chain_pair_rate(long, 1, memories=1) == pytest.approx(p / (2 * 60 / 2.0e5), rel=1e-12)
