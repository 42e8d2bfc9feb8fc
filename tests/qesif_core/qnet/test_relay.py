"""One-time-pad relay: the key arrives unchanged when each hop's copies agree, and only then."""

from __future__ import annotations

import numpy as np

from qesif_core.qnet.relay import one_time_pad_relay


def test_relay_over_hops_returns_the_source_key(rng):
    secret = rng.integers(0, 256, (50, 32), dtype=np.uint8)
    hops = []
    for _ in range(4):
        key = rng.integers(0, 256, (50, 32), dtype=np.uint8)
        hops.append((key, key.copy()))
    assert np.array_equal(one_time_pad_relay(secret, hops), secret)
    # what the first hop sends is the secret padded by a uniformly random key: it differs from the secret
    assert not np.array_equal(secret ^ hops[0][0], secret)


def test_a_disagreeing_hop_corrupts_exactly_its_keys(rng):
    secret = rng.integers(0, 256, (3, 32), dtype=np.uint8)
    key = rng.integers(0, 256, (3, 32), dtype=np.uint8)
    other = key.copy()
    other[1, 5] ^= 0x10
    received = one_time_pad_relay(secret, [(key, key.copy()), (key, other)])
    assert [np.array_equal(received[i], secret[i]) for i in range(3)] == [True, False, True]
