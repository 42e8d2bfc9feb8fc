"""Cascade information reconciliation (Brassard & Salvail 1993) with Alice and Bob simulated in-process.

Bob holds a noisy copy of Alice's sifted key. In each pass both sides shuffle the key with a public
permutation and cut it into top blocks; Bob asks Alice for the parity of every top block and
binary-searches each block whose parity differs (BINARY), disclosing one parity per halving. A bit
corrected in one pass changes the parity of the blocks that contain it in every other pass, which may
now reveal a remaining error there: those blocks are re-checked (the cascading effect).

Followed reference: Bruno Rijsman's C++ Cascade (github.com/brunorijsman/cascade-cpp, files
``cascade/algorithm.cpp`` for the block-size schedules and pass counts, ``cascade/iteration.cpp`` and
``cascade/block.cpp`` for BINARY, sub-block reuse and the parity inference of a right sibling from its
parent and left sibling, ``cascade/reconciliation.cpp`` for the work queues, the cascading effect and
the efficiency definition), which in turn follows its Python sibling cascade-python and the
"Demystifying the Information Reconciliation Protocol Cascade" paper (Martinez-Mateo et al. 2015).

- ``original``: Brassard-Salvail 1993, 4 passes, k1 = ceil(0.73/Q), k_i = 2 k_{i-1}.
- ``yanetal``: Yan et al. 2008, 10 passes, k1 = ceil(0.80/Q), k2 = 5 k1, k_i = n/2 for i >= 3.
- ``biconf``: 2 Cascade passes (k1 = ceil(0.92/Q), k2 = 3 k1) then BICONF passes (a random half of
  the key and its complement, no cascading) until 10 consecutive passes correct nothing.

Disclosed bits count every parity Alice reveals (inferred parities reveal nothing new and are not
counted; a parity Alice already revealed is not counted twice). Efficiency is
``disclosed / (n * h2(e))`` with ``e`` the actual error fraction before reconciliation (nan when
h2(e) = 0: no errors, or every bit wrong).

This module is also the pure-Python twin of the compiled hot loop ``qesif_core.qkd._cascade``
(``CascadeCore``, ``shuffle_order``); ``QESIF_IMPL`` picks one (see ``qesif_core._native``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from qesif_core import _native
from qesif_core.qkd.bits import as_bits

VARIANTS = ("original", "yanetal", "biconf")
MIN_ESTIMATED_QBER = 1e-5  # cascade-cpp's floor, so a zero estimate still gives finite blocks
BICONF_ERROR_FREE_STREAK = 10

_COMPILED = "qesif_core.qkd._cascade"
_PURE = "qesif_core.qkd.cascade"


@dataclass(frozen=True)
class ReconcileResult:
    """Outcome of one Cascade run: Bob's corrected key and what the run cost.

    ``parity_queries`` counts Bob's ask-parity messages (round trips on the classical channel), each
    carrying a batch of blocks; ``disclosed_bits`` counts the parities revealed in them.
    """

    corrected: np.ndarray = field(repr=False)
    disclosed_bits: int
    efficiency: float
    passes: int
    parity_queries: int
    bits_flipped: int


def h2(p: float) -> float:
    """Binary entropy in bits (0 at p = 0 and p = 1)."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -p * math.log2(p) - (1.0 - p) * math.log2(1.0 - p)


def block_size(variant: str, pass_number: int, estimated_qber: float, n: int) -> int:
    """Top-block size of Cascade pass ``pass_number`` (1-based), per cascade-cpp ``algorithm.cpp``."""
    q = max(estimated_qber, MIN_ESTIMATED_QBER)
    if variant == "original":
        return math.ceil(0.73 / q) * 2 ** (pass_number - 1)
    if variant == "yanetal":
        if pass_number == 1:
            return math.ceil(0.80 / q)
        if pass_number == 2:
            return 5 * math.ceil(0.80 / q)
        return max(n // 2, 1)
    if variant == "biconf":
        return math.ceil(0.92 / q) * 3 ** (pass_number - 1)
    raise ValueError(f"unknown Cascade variant {variant!r}; known: {', '.join(VARIANTS)}")


def reconcile(
    alice: np.ndarray,
    bob: np.ndarray,
    qber: float,
    rng: np.random.Generator,
    variant: str = "yanetal",
    *,
    impl: str | None = None,
) -> ReconcileResult:
    """Correct Bob's key towards Alice's with Cascade; ``qber`` is the estimate that sizes the blocks.

    The pass permutations are drawn from ``rng``; ``impl`` overrides ``QESIF_IMPL`` (``python`` or
    ``cython``) and both give identical results for the same ``rng`` state. Residual errors are
    possible (Cascade has a small frame error rate): the caller must verify with a hash.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown Cascade variant {variant!r}; known: {', '.join(VARIANTS)}")
    alice_bits = as_bits(alice, "alice")
    bob_bits = as_bits(bob, "bob")
    if alice_bits.shape != bob_bits.shape:
        raise ValueError(f"alice and bob differ in length ({alice_bits.size} != {bob_bits.size})")
    if not (0.0 <= qber <= 0.5):
        raise ValueError(f"estimated qber must be in [0, 0.5], got {qber!r}")
    n = alice_bits.size
    actual_errors = int(np.count_nonzero(alice_bits != bob_bits))
    if n == 0:
        return ReconcileResult(bob_bits.copy(), 0, math.nan, 0, 0, 0)

    twin = _native.load(_COMPILED, _PURE, impl)
    core = twin.CascadeCore(alice_bits, bob_bits)

    def new_pass(pass_number: int, size: int, halves: bool, cascade: bool) -> int:
        seed = None if pass_number == 1 else _shuffle_seed(rng)
        return core.run_pass(seed, size, halves, cascade)

    passes = _run_schedule(variant, qber, n, new_pass)
    disclosed = core.disclosed_bits
    entropy = h2(actual_errors / n)
    efficiency = disclosed / (n * entropy) if entropy > 0 else math.nan  # no errors (or all bits wrong)
    return ReconcileResult(
        corrected=core.corrected(),
        disclosed_bits=disclosed,
        efficiency=efficiency,
        passes=passes,
        parity_queries=core.parity_queries,
        bits_flipped=core.bits_flipped,
    )


def _run_schedule(variant: str, qber: float, n: int, new_pass: Callable[[int, int, bool, bool], int]) -> int:
    """Run the passes through ``new_pass(number, block_size, halves, cascade)``; return their count."""
    if variant == "original":
        cascade_passes = 4
    elif variant == "yanetal":
        cascade_passes = 10
    else:
        cascade_passes = 2
    for number in range(1, cascade_passes + 1):
        new_pass(number, block_size(variant, number, qber, n), False, True)
    number = cascade_passes
    if variant == "biconf" and n >= 2:
        to_go = BICONF_ERROR_FREE_STREAK
        while to_go > 0:
            number += 1
            corrected = new_pass(number, n // 2, True, False)
            to_go = BICONF_ERROR_FREE_STREAK if corrected else to_go - 1
    return number


def _shuffle_seed(rng: np.random.Generator) -> int:
    """The public seed of one pass's shuffle, drawn from the caller's generator."""
    return int(rng.integers(0, 2**64, dtype=np.uint64))


# ---------------------------------------------------------------------------------------------------
# Pure-Python twin of the compiled hot loop (qesif_core/qkd/_cascade.pyx). Keep the two in step.
# ---------------------------------------------------------------------------------------------------

SPLITMIX_GAMMA = 0x9E3779B97F4A7C15
SPLITMIX_MULTIPLIERS = (0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


def shuffle_order(n: int, seed: int) -> np.ndarray:
    """Fisher-Yates permutation of ``n`` positions (shuffled index -> original index) from ``seed``.

    Swap ``k`` (for ``i = n-1`` down to 1) exchanges position ``i`` with ``j = (w_k * (i+1)) >> 32``,
    where ``w_k`` is the high half of the SplitMix64 output for counter ``k`` (Steele, Lea & Flood,
    OOPSLA 2014) and the multiply-shift is Lemire's (bias below n / 2^32, irrelevant for a public
    shuffle). Both parties derive the same permutation from the public seed.
    """
    counters = np.arange(1, max(n, 1), dtype=np.uint64)
    z = np.uint64(seed) + counters * np.uint64(SPLITMIX_GAMMA)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(SPLITMIX_MULTIPLIERS[0])
    z = (z ^ (z >> np.uint64(27))) * np.uint64(SPLITMIX_MULTIPLIERS[1])
    words = (z ^ (z >> np.uint64(31))) >> np.uint64(32)
    upper = np.arange(n - 1, 0, -1, dtype=np.uint64)
    targets = ((words * (upper + np.uint64(1))) >> np.uint64(32)).tolist()
    order = list(range(n))
    for i, j in zip(range(n - 1, 0, -1), targets, strict=True):
        order[i], order[j] = order[j], order[i]
    return np.asarray(order, dtype=np.int32)


class CascadeCore:
    """Both parties' state across Cascade passes: the blocks, their parities and the work queues.

    Blocks live in parallel lists (start, end exclusive, pass, parent, children, Bob's current parity,
    Alice's correct parity; -1 = unknown) so the compiled twin can use flat arrays with the same logic.
    """

    def __init__(self, alice: np.ndarray, bob: np.ndarray) -> None:
        self._n = int(alice.size)
        self._alice = alice
        self._bob = bob.copy()
        self._orders: list[np.ndarray] = []  # shuffled position -> original index, per pass
        self._positions: list[np.ndarray] = []  # original index -> shuffled position, per pass
        self._alice_prefix: list[np.ndarray] = []  # prefix parities of Alice's shuffled key
        self._bob_shuffled: list[np.ndarray] = []  # Bob's current key in each pass's order
        self._block_sizes: list[int] = []
        self._first_top: list[int] = []
        self._top_count: list[int] = []
        self._start: list[int] = []
        self._end: list[int] = []
        self._pass: list[int] = []
        self._parent: list[int] = []
        self._left: list[int] = []
        self._right: list[int] = []
        self._current: list[int] = []
        self._correct: list[int] = []
        self._ask: list[tuple[int, bool]] = []
        self._try: deque[tuple[int, bool]] = deque()
        self.disclosed_bits = 0
        self.parity_queries = 0
        self.bits_flipped = 0
        self._errors = int(np.count_nonzero(alice != bob))  # every flip removes one (see _flip)

    def corrected(self) -> np.ndarray:
        return self._bob.copy()

    def add_pass(self, order: np.ndarray | None, block_size: int, halves: bool) -> None:
        """Start a pass: shuffle with ``order`` (None = identity) and ask for every top block's parity.

        ``halves`` makes the two BICONF blocks (first half of the shuffled key and its complement).
        """
        n = self._n
        if order is None:
            order = np.arange(n, dtype=np.int32)
        position = np.empty(n, dtype=np.int32)
        position[order] = np.arange(n, dtype=np.int32)
        prefix = np.zeros(n + 1, dtype=np.uint8)
        np.bitwise_xor.accumulate(self._alice[order], out=prefix[1:])
        self._orders.append(order)
        self._positions.append(position)
        self._alice_prefix.append(prefix)
        self._bob_shuffled.append(self._bob[order])
        size = max(1, min(block_size, n))
        tops = 2 if halves else -(-n // size)
        pass_index = len(self._block_sizes)
        self._block_sizes.append(size)
        self._first_top.append(len(self._start))
        self._top_count.append(tops)
        for t in range(tops):
            end = n if t == tops - 1 else (t + 1) * size
            self._ask.append((self._new_block(t * size, end, pass_index, -1), False))

    def run_pass(self, seed: int | None, block_size: int, halves: bool, cascade: bool) -> int:
        """A whole pass: its shuffle from the public ``seed`` (None = identity, the first pass), its top
        blocks, and the service of the queues; returns the bits it corrected (``add_pass`` + ``service``).

        Once Bob's key equals Alice's (the simulation holds both), a pass can only ask for its top blocks'
        parities and find them all equal, and no later flip can reach it: it is accounted (one parity per
        top block, one query) without building it, with the same counts and key as a built pass.
        """
        if self._errors == 0:
            size = max(1, min(block_size, self._n))
            self.disclosed_bits += 2 if halves else -(-self._n // size)
            self.parity_queries += 1
            return 0
        self.add_pass(None if seed is None else shuffle_order(self._n, seed), block_size, halves)
        return self.service(cascade)

    def service(self, cascade: bool) -> int:
        """Serve the work queues until empty (answering asks in batches); return bits corrected."""
        corrected = 0
        while self._ask or self._try:
            while self._try:
                block, right = self._try.popleft()
                corrected += self._try_correct(block, right, cascade)
            if self._ask:
                self.parity_queries += 1
                for block, right in self._ask:
                    if self._correct[block] < 0:
                        self._correct[block] = self._alice_parity(block)
                        self.disclosed_bits += 1
                    self._try.append((block, right))
                self._ask.clear()
        return corrected

    def _new_block(self, start: int, end: int, pass_index: int, parent: int) -> int:
        self._start.append(start)
        self._end.append(end)
        self._pass.append(pass_index)
        self._parent.append(parent)
        self._left.append(-1)
        self._right.append(-1)
        self._current.append(-1)
        self._correct.append(-1)
        return len(self._start) - 1

    def _alice_parity(self, block: int) -> int:
        prefix = self._alice_prefix[self._pass[block]]
        return int(prefix[self._end[block]] ^ prefix[self._start[block]])

    def _current_parity(self, block: int) -> int:
        if self._current[block] < 0:
            bits = self._bob_shuffled[self._pass[block]][self._start[block] : self._end[block]]
            self._current[block] = int(np.count_nonzero(bits)) & 1
        return self._current[block]

    def _try_infer(self, block: int) -> bool:
        parent = self._parent[block]
        if parent < 0 or self._correct[parent] < 0:
            return False
        sibling = self._right[parent] if self._left[parent] == block else self._left[parent]
        if sibling < 0 or self._correct[sibling] < 0:
            return False
        self._correct[block] = self._correct[parent] ^ self._correct[sibling]
        return True

    def _child(self, block: int, right: bool) -> int:
        children = self._right if right else self._left
        child = children[block]
        if child < 0:
            start, end = self._start[block], self._end[block]
            middle = start + (end - start) // 2
            if right:
                child = self._new_block(middle, end, self._pass[block], block)
            else:
                child = self._new_block(start, middle, self._pass[block], block)
            children[block] = child
        return child

    def _try_correct(self, block: int, right_sibling: bool, cascade: bool) -> int:
        """BINARY from ``block``; ``right_sibling``: if its errors are even, go on with its right sibling."""
        while True:
            if self._correct[block] < 0 and not self._try_infer(block):
                self._ask.append((block, right_sibling))
                return 0
            if self._correct[block] == self._current_parity(block):
                if not right_sibling:
                    return 0
                block = self._child(self._parent[block], True)
                right_sibling = False
                continue
            if self._end[block] - self._start[block] == 1:
                original = int(self._orders[self._pass[block]][self._start[block]])
                self._flip(original, self._pass[block], cascade)
                return 1
            block = self._child(block, False)
            right_sibling = True

    def _top_block(self, pass_index: int, position: int) -> int:
        return self._first_top[pass_index] + min(
            position // self._block_sizes[pass_index], self._top_count[pass_index] - 1
        )

    def _flip(self, original: int, trigger_pass: int, cascade: bool) -> None:
        """Correct Bob's bit, update the parity of every block holding it, and cascade into other passes."""
        self._bob[original] ^= 1
        self.bits_flipped += 1
        self._errors -= 1  # a bit is flipped only where its one-bit block's parities differ: an error
        for p in range(len(self._block_sizes)):
            position = int(self._positions[p][original])
            self._bob_shuffled[p][position] ^= 1
            block = self._top_block(p, position)
            while block >= 0:
                if self._current[block] >= 0:
                    self._current[block] ^= 1
                left = self._left[block]
                block = left if left >= 0 and position < self._end[left] else self._right[block]
            if cascade and p != trigger_pass:
                self._try.append((self._top_block(p, position), False))
