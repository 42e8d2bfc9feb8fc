"""Link key pools: both ends' copies in the same order, FIFO, capacity, expiry, never a key twice."""

from __future__ import annotations

import numpy as np
import pytest

from qesif_core.qnet.pools import LinkKeyPool


def test_keys_are_cut_in_order_across_blocks_at_both_ends(rng):
    pool = LinkKeyPool("l", key_bits=64, capacity=10)
    a = rng.integers(0, 2, 100, dtype=np.uint8)
    b = a.copy()
    assert pool.add(a[:40], b[:40], now=0.0) == 0  # short of a key: pending
    assert pool.add(a[40:], b[40:], now=1.0) == 1  # 100 bits: one 64-bit key, 36 pending
    taken = pool.take(1)
    assert taken.serials.tolist() == [0]
    assert np.array_equal(taken.end_a[0], np.packbits(a[:64])) and np.array_equal(taken.end_a, taken.end_b)
    assert pool.stored == 0 and pool.consumed == 1


def test_each_end_keeps_its_own_copy(rng):
    pool = LinkKeyPool("l", key_bits=8, capacity=4)
    a = rng.integers(0, 2, 16, dtype=np.uint8)
    b = a.copy()
    b[3] ^= 1  # the ends disagree on one bit of the first key
    pool.add(a, b, now=0.0)
    taken = pool.take(2)
    assert not np.array_equal(taken.end_a[0], taken.end_b[0]) and np.array_equal(
        taken.end_a[1], taken.end_b[1]
    )


def test_full_store_erases_new_keys_and_fifo_serials_never_repeat(rng):
    pool = LinkKeyPool("l", key_bits=8, capacity=3)
    bits = rng.integers(0, 2, 8 * 5, dtype=np.uint8)
    assert pool.add(bits, bits, now=0.0) == 5
    assert (pool.stored, pool.dropped_full, pool.produced) == (3, 2, 5)
    seen = pool.take(2).serials.tolist()
    pool.add(bits[:16], bits[:16], now=1.0)  # wraps around the ring
    seen += pool.take(pool.stored).serials.tolist()
    assert seen == sorted(set(seen)) and len(seen) == 5 and pool.consumed == 5
    with pytest.raises(ValueError, match="1 keys asked, 0 stored"):
        pool.take(1)


def test_old_keys_expire_first(rng):
    pool = LinkKeyPool("l", key_bits=8, capacity=8, lifetime_s=10.0)
    bits = rng.integers(0, 2, 16, dtype=np.uint8)
    pool.add(bits, bits, now=0.0)
    pool.add(bits, bits, now=5.0)
    assert pool.expire(9.9) == 0
    assert pool.expire(10.0) == 2 and pool.stored == 2
    assert pool.take(2).serials.tolist() == [2, 3]
    assert pool.depletion == 1.0
