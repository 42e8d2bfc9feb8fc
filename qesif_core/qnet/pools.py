"""The key store of one QKD link, held by the KMEs at its two ends: both copies of every key.

A link's QKD blocks leave each end with its own copy of the secret key (the block's ``alice_key`` at end
``a``, ``bob_key`` at end ``b``; equal when verification passed). The pool cuts each end's bits into keys of
``key_bits`` in the same order, so key ``serial`` s is the same position at both ends, and keeps them in
a first-in first-out store of at most ``capacity`` keys (keys arriving at a full store are erased unused,
as ``qesif_core.keys.KeyPool`` does). Keys older than ``lifetime_s`` are erased.

No key is handed out twice: :meth:`LinkKeyPool.take` removes keys from the head of the store, serials
only grow, and every serial taken is counted in ``consumed``. Serials are the keys' IDs between the two
KMEs of the link (they are sent in the clear with each relayed ciphertext).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TakenKeys:
    """Keys removed from a pool: their serials and both ends' copies (``n x key_bytes`` uint8)."""

    serials: np.ndarray
    end_a: np.ndarray = field(repr=False)
    end_b: np.ndarray = field(repr=False)


class LinkKeyPool:
    """FIFO store of one link's keys, both ends' copies (a ring buffer of ``capacity`` keys)."""

    def __init__(self, link: str, *, key_bits: int = 256, capacity: int = 1000, lifetime_s: float = 3600.0):
        if key_bits <= 0 or key_bits % 8:
            raise ValueError(f"link {link}: key_bits must be a positive multiple of 8 (got {key_bits})")
        if capacity < 1:
            raise ValueError(f"link {link}: capacity must be >= 1 (got {capacity})")
        self.link = link
        self.key_bits = key_bits
        self.key_bytes = key_bits // 8
        self.capacity = capacity
        self.lifetime_s = lifetime_s
        self._a = np.zeros((capacity, self.key_bytes), dtype=np.uint8)
        self._b = np.zeros((capacity, self.key_bytes), dtype=np.uint8)
        self._serial = np.zeros(capacity, dtype=np.int64)
        self._created = np.zeros(capacity)
        self._head = 0
        self.stored = 0
        self._pending_a = np.zeros(0, dtype=np.uint8)
        self._pending_b = np.zeros(0, dtype=np.uint8)
        self.next_serial = 0
        self.produced = 0
        self.dropped_full = 0
        self.expired = 0
        self.consumed = 0

    def __repr__(self) -> str:
        return f"LinkKeyPool(link={self.link!r}, stored={self.stored}, consumed={self.consumed})"

    @property
    def depletion(self) -> float:
        """1 - stored / capacity: 0 for a full store, 1 for an empty one."""
        return 1.0 - self.stored / self.capacity

    def add(self, bits_a: np.ndarray, bits_b: np.ndarray, now: float) -> int:
        """Add one block's secret bits (each end's copy); returns the number of whole keys formed.

        Bits short of a whole key wait for the next block. Keys that find the store full are erased.
        """
        bits_a = np.asarray(bits_a, dtype=np.uint8)
        bits_b = np.asarray(bits_b, dtype=np.uint8)
        if bits_a.shape != bits_b.shape or bits_a.ndim != 1:
            raise ValueError(f"link {self.link}: both ends need 1-D keys of equal length")
        a = np.concatenate([self._pending_a, bits_a])
        b = np.concatenate([self._pending_b, bits_b])
        n_keys = a.size // self.key_bits
        whole = n_keys * self.key_bits
        self._pending_a, self._pending_b = a[whole:].copy(), b[whole:].copy()
        if n_keys == 0:
            return 0
        self.expire(now)
        packed_a = np.packbits(a[:whole].reshape(n_keys, self.key_bits), axis=1)
        packed_b = np.packbits(b[:whole].reshape(n_keys, self.key_bits), axis=1)
        serials = self.next_serial + np.arange(n_keys, dtype=np.int64)
        self.next_serial += n_keys
        self.produced += n_keys
        room = min(n_keys, self.capacity - self.stored)
        self.dropped_full += n_keys - room
        if room:
            slots = (self._head + self.stored + np.arange(room)) % self.capacity
            self._a[slots] = packed_a[:room]
            self._b[slots] = packed_b[:room]
            self._serial[slots] = serials[:room]
            self._created[slots] = now
            self.stored += room
        return n_keys

    def expire(self, now: float) -> int:
        """Erase keys at least ``lifetime_s`` old (they are the oldest: the store is FIFO)."""
        if not self.stored or self._created[self._head] + self.lifetime_s > now:
            return 0
        created = self._created[(self._head + np.arange(self.stored)) % self.capacity]
        count = int(np.searchsorted(created + self.lifetime_s, now, side="right"))
        self._head = (self._head + count) % self.capacity
        self.stored -= count
        self.expired += count
        return count

    def take(self, n: int) -> TakenKeys:
        """Remove the ``n`` oldest keys (both copies); never the same key twice."""
        if not 0 <= n <= self.stored:
            raise ValueError(f"link {self.link}: {n} keys asked, {self.stored} stored")
        slots = (self._head + np.arange(n)) % self.capacity
        taken = TakenKeys(self._serial[slots].copy(), self._a[slots].copy(), self._b[slots].copy())
        self._head = (self._head + n) % self.capacity
        self.stored -= n
        self.consumed += n
        return taken
