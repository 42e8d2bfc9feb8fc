# cython: language_level=3
"""Compiled twin of the Cascade hot loop in ``qesif_core/qkd/cascade.py`` (``CascadeCore``, ``shuffle_order``).

Same algorithm, same block numbering and queue order as the pure twin, so both give identical results
for the same permutations; blocks are C structs in one growable array instead of Python lists, and each
pass keeps Bob's key in its shuffled order so block parities are contiguous XOR reductions. A whole pass
(``run_pass``: its shuffle, its per-pass arrays and the service of its queues) is one call into C, with
the per-pass arrays in buffers the core owns (no numpy array per pass).
"""

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc

cnp.import_array()


cdef uint64_t SPLITMIX_GAMMA = 0x9E3779B97F4A7C15ULL
cdef uint64_t SPLITMIX_MULTIPLIER_1 = 0xBF58476D1CE4E5B9ULL
cdef uint64_t SPLITMIX_MULTIPLIER_2 = 0x94D049BB133111EBULL


cdef struct Block:
    int32_t start
    int32_t end
    int32_t pass_index
    int32_t parent
    int32_t left
    int32_t right
    int8_t current
    int8_t correct


def shuffle_order(Py_ssize_t n, uint64_t seed):
    """Fisher-Yates permutation of ``n`` positions from SplitMix64 words; see ``cascade.shuffle_order``."""
    order = np.empty(n, dtype=np.int32)
    cdef int32_t[::1] o = order
    if n:
        _shuffle_into(&o[0], <int32_t>n, seed)
    return order


cdef void _shuffle_into(int32_t* o, int32_t n, uint64_t seed) noexcept nogil:
    """Write the permutation of ``shuffle_order(n, seed)`` into ``o``."""
    cdef int32_t i, j, held
    cdef uint64_t z, counter = seed
    for i in range(n):
        o[i] = i
    for i in range(n - 1, 0, -1):
        counter += SPLITMIX_GAMMA
        z = counter
        z = (z ^ (z >> 30)) * SPLITMIX_MULTIPLIER_1
        z = (z ^ (z >> 27)) * SPLITMIX_MULTIPLIER_2
        z = (z ^ (z >> 31)) >> 32
        j = <int32_t>((z * <uint64_t>(i + 1)) >> 32)
        held = o[i]
        o[i] = o[j]
        o[j] = held


cdef class CascadeCore:
    """Both parties' state across passes; see ``cascade.CascadeCore`` for the algorithm."""

    cdef int32_t n
    cdef object _alice_array
    cdef object _bob_array
    cdef uint8_t* alice
    cdef uint8_t* bob
    cdef int32_t passes
    cdef int32_t pass_capacity
    cdef int32_t** orders
    cdef int32_t** positions
    cdef uint8_t** alice_prefix
    cdef uint8_t** bob_shuffled
    cdef int32_t* block_sizes
    cdef int32_t* first_top
    cdef int32_t* top_count
    cdef Block* blocks
    cdef int64_t block_count
    cdef int64_t block_capacity
    cdef int64_t* ask  # entries block * 2 + right_sibling
    cdef int64_t ask_count
    cdef int64_t ask_capacity
    cdef int64_t* todo  # FIFO of block * 2 + right_sibling
    cdef int64_t todo_head
    cdef int64_t todo_tail
    cdef int64_t todo_capacity
    cdef public long disclosed_bits
    cdef public long parity_queries
    cdef public long bits_flipped
    cdef long errors  # positions where Bob still differs from Alice (every flip removes one)

    def __cinit__(self, alice, bob):
        self._alice_array = np.ascontiguousarray(alice, dtype=np.uint8)
        self._bob_array = np.array(bob, dtype=np.uint8, copy=True)
        cdef uint8_t[::1] a = self._alice_array
        cdef uint8_t[::1] b = self._bob_array
        self.n = <int32_t>a.shape[0]
        self.alice = &a[0] if self.n else NULL
        self.bob = &b[0] if self.n else NULL
        self.passes = 0
        self.pass_capacity = 0
        self.orders = NULL
        self.positions = NULL
        self.alice_prefix = NULL
        self.bob_shuffled = NULL
        self.block_sizes = NULL
        self.first_top = NULL
        self.top_count = NULL
        self.block_count = 0
        self.block_capacity = 1024
        self.blocks = <Block*>malloc(self.block_capacity * sizeof(Block))
        self.ask_count = 0
        self.ask_capacity = 1024
        self.ask = <int64_t*>malloc(self.ask_capacity * sizeof(int64_t))
        self.todo_head = 0
        self.todo_tail = 0
        self.todo_capacity = 1024
        self.todo = <int64_t*>malloc(self.todo_capacity * sizeof(int64_t))
        if self.blocks == NULL or self.ask == NULL or self.todo == NULL:
            raise MemoryError()
        self.disclosed_bits = 0
        self.parity_queries = 0
        self.bits_flipped = 0
        self.errors = 0
        cdef int32_t i
        for i in range(self.n):
            self.errors += a[i] != b[i]

    def __dealloc__(self):
        cdef int32_t p
        for p in range(self.passes):
            free(self.orders[p])
            free(self.positions[p])
            free(self.alice_prefix[p])
            free(self.bob_shuffled[p])
        free(self.orders)
        free(self.positions)
        free(self.alice_prefix)
        free(self.bob_shuffled)
        free(self.block_sizes)
        free(self.first_top)
        free(self.top_count)
        free(self.blocks)
        free(self.ask)
        free(self.todo)

    def corrected(self):
        return self._bob_array.copy()

    def add_pass(self, order, int block_size, bint halves):
        """Start a pass: shuffle with ``order`` (None = identity) and ask for every top block's parity."""
        cdef int32_t* o = self._new_pass_buffers()
        cdef int32_t i
        cdef int32_t[::1] given
        if order is None:
            for i in range(self.n):
                o[i] = i
        else:
            given = np.ascontiguousarray(order, dtype=np.int32)
            for i in range(self.n):
                o[i] = given[i]
        self._start_pass(block_size, halves)

    def run_pass(self, seed, int block_size, bint halves, bint cascade):
        """A whole pass: its shuffle from the public ``seed`` (None = identity, the first pass), its top
        blocks, and the service of the queues; returns the bits it corrected (``add_pass`` + ``service``).
        With no error left, see ``cascade.CascadeCore.run_pass``."""
        cdef int32_t size
        if self.errors == 0:
            size = max(1, min(block_size, self.n))
            self.disclosed_bits += 2 if halves else (self.n + size - 1) // size
            self.parity_queries += 1
            return 0
        cdef int32_t* o = self._new_pass_buffers()
        cdef int32_t i
        if seed is None:
            for i in range(self.n):
                o[i] = i
        else:
            _shuffle_into(o, self.n, <uint64_t>seed)
        self._start_pass(block_size, halves)
        return self._service(cascade)

    cdef int32_t* _new_pass_buffers(self) except NULL:
        """Allocate the next pass's arrays (its order is filled by the caller, the rest by _start_pass)."""
        self._grow_passes()
        cdef int32_t index = self.passes
        cdef size_t n = max(self.n, 1)
        self.orders[index] = <int32_t*>malloc(n * sizeof(int32_t))
        self.positions[index] = <int32_t*>malloc(n * sizeof(int32_t))
        self.alice_prefix[index] = <uint8_t*>malloc((n + 1) * sizeof(uint8_t))
        self.bob_shuffled[index] = <uint8_t*>malloc(n * sizeof(uint8_t))
        self.passes += 1  # from here on __dealloc__ frees the four buffers
        if (self.orders[index] == NULL or self.positions[index] == NULL
                or self.alice_prefix[index] == NULL or self.bob_shuffled[index] == NULL):
            raise MemoryError()
        return self.orders[index]

    cdef int _start_pass(self, int block_size, bint halves) except -1:
        """Fill the newest pass's inverse order, Alice's prefix parities and Bob's shuffled key, and ask
        for every top block's parity (``halves``: the two BICONF blocks)."""
        cdef int32_t index = self.passes - 1
        cdef int32_t n = self.n
        cdef int32_t* o = self.orders[index]
        cdef int32_t* p = self.positions[index]
        cdef uint8_t* pre = self.alice_prefix[index]
        cdef uint8_t* sh = self.bob_shuffled[index]
        cdef int32_t i, t, tops, size, original
        cdef uint8_t acc = 0
        pre[0] = 0
        for i in range(n):
            original = o[i]
            p[original] = i
            acc ^= self.alice[original]
            pre[i + 1] = acc
            sh[i] = self.bob[original]
        size = max(1, min(block_size, n))
        tops = 2 if halves else (n + size - 1) // size
        self.block_sizes[index] = size
        self.first_top[index] = <int32_t>self.block_count
        self.top_count[index] = tops
        for t in range(tops):
            self._push_ask(self._new_block(t * size, n if t == tops - 1 else (t + 1) * size, index, -1), 0)
        return 0

    def service(self, bint cascade):
        """Serve the work queues until empty (answering asks in batches); return bits corrected."""
        return self._service(cascade)

    cdef long _service(self, bint cascade) except -1:
        cdef long corrected = 0
        cdef int64_t k, entry, block
        while self.ask_count or self.todo_head != self.todo_tail:
            while self.todo_head != self.todo_tail:
                entry = self.todo[self.todo_head]
                self.todo_head += 1
                corrected += self._try_correct(entry >> 1, entry & 1, cascade)
            self.todo_head = 0
            self.todo_tail = 0
            if self.ask_count:
                self.parity_queries += 1
                for k in range(self.ask_count):
                    entry = self.ask[k]
                    block = entry >> 1
                    if self.blocks[block].correct < 0:
                        self.blocks[block].correct = self._alice_parity(block)
                        self.disclosed_bits += 1
                    self._push_todo(entry)
                self.ask_count = 0
        return corrected

    cdef int _grow_passes(self) except -1:
        if self.passes < self.pass_capacity:
            return 0
        cdef int32_t capacity = max(16, 2 * self.pass_capacity)
        self.orders = <int32_t**>_grow(self.orders, capacity * sizeof(int32_t*))
        self.positions = <int32_t**>_grow(self.positions, capacity * sizeof(int32_t*))
        self.alice_prefix = <uint8_t**>_grow(self.alice_prefix, capacity * sizeof(uint8_t*))
        self.bob_shuffled = <uint8_t**>_grow(self.bob_shuffled, capacity * sizeof(uint8_t*))
        self.block_sizes = <int32_t*>_grow(self.block_sizes, capacity * sizeof(int32_t))
        self.first_top = <int32_t*>_grow(self.first_top, capacity * sizeof(int32_t))
        self.top_count = <int32_t*>_grow(self.top_count, capacity * sizeof(int32_t))
        self.pass_capacity = capacity
        return 0

    cdef int64_t _new_block(self, int32_t start, int32_t end, int32_t pass_index, int32_t parent) except -1:
        if self.block_count == self.block_capacity:
            self.block_capacity *= 2
            self.blocks = <Block*>_grow(self.blocks, self.block_capacity * sizeof(Block))
        cdef Block* b = &self.blocks[self.block_count]
        b.start = start
        b.end = end
        b.pass_index = pass_index
        b.parent = parent
        b.left = -1
        b.right = -1
        b.current = -1
        b.correct = -1
        self.block_count += 1
        return self.block_count - 1

    cdef int _push_ask(self, int64_t block, int64_t right) except -1:
        if self.ask_count == self.ask_capacity:
            self.ask_capacity *= 2
            self.ask = <int64_t*>_grow(self.ask, self.ask_capacity * sizeof(int64_t))
        self.ask[self.ask_count] = block * 2 + right
        self.ask_count += 1
        return 0

    cdef int _push_todo(self, int64_t entry) except -1:
        if self.todo_tail == self.todo_capacity:
            self.todo_capacity *= 2
            self.todo = <int64_t*>_grow(self.todo, self.todo_capacity * sizeof(int64_t))
        self.todo[self.todo_tail] = entry
        self.todo_tail += 1
        return 0

    cdef inline int8_t _alice_parity(self, int64_t block) noexcept:
        cdef Block* b = &self.blocks[block]
        cdef uint8_t* prefix = self.alice_prefix[b.pass_index]
        return prefix[b.end] ^ prefix[b.start]

    cdef inline int8_t _current_parity(self, int64_t block) noexcept:
        cdef Block* b = &self.blocks[block]
        cdef uint8_t* bits
        cdef uint8_t acc = 0
        cdef int32_t i
        if b.current < 0:
            bits = self.bob_shuffled[b.pass_index]
            for i in range(b.start, b.end):
                acc ^= bits[i]
            b.current = acc
        return b.current

    cdef inline bint _try_infer(self, int64_t block) noexcept:
        cdef int32_t parent = self.blocks[block].parent
        if parent < 0 or self.blocks[parent].correct < 0:
            return False
        cdef int32_t sibling = self.blocks[parent].right if self.blocks[parent].left == block \
            else self.blocks[parent].left
        if sibling < 0 or self.blocks[sibling].correct < 0:
            return False
        self.blocks[block].correct = self.blocks[parent].correct ^ self.blocks[sibling].correct
        return True

    cdef int64_t _child(self, int64_t block, bint right) except -1:
        cdef int32_t child = self.blocks[block].right if right else self.blocks[block].left
        cdef int32_t start, end, middle
        if child < 0:
            start = self.blocks[block].start
            end = self.blocks[block].end
            middle = start + (end - start) // 2
            if right:
                child = <int32_t>self._new_block(middle, end, self.blocks[block].pass_index, <int32_t>block)
                self.blocks[block].right = child
            else:
                child = <int32_t>self._new_block(start, middle, self.blocks[block].pass_index, <int32_t>block)
                self.blocks[block].left = child
        return child

    cdef int _try_correct(self, int64_t block, int64_t right_sibling, bint cascade) except -1:
        cdef int32_t pass_index
        while True:
            if self.blocks[block].correct < 0 and not self._try_infer(block):
                self._push_ask(block, right_sibling)
                return 0
            if self.blocks[block].correct == self._current_parity(block):
                if not right_sibling:
                    return 0
                block = self._child(self.blocks[block].parent, True)
                right_sibling = 0
                continue
            if self.blocks[block].end - self.blocks[block].start == 1:
                pass_index = self.blocks[block].pass_index
                self._flip(self.orders[pass_index][self.blocks[block].start], pass_index, cascade)
                return 1
            block = self._child(block, False)
            right_sibling = 1

    cdef inline int64_t _top_block(self, int32_t pass_index, int32_t position) noexcept:
        return self.first_top[pass_index] + min(position // self.block_sizes[pass_index],
                                                self.top_count[pass_index] - 1)

    cdef int _flip(self, int32_t original, int32_t trigger_pass, bint cascade) except -1:
        cdef int32_t p, position, left
        cdef int64_t block
        self.bob[original] ^= 1
        self.bits_flipped += 1
        self.errors -= 1  # a bit is flipped only where its one-bit block's parities differ: an error
        for p in range(self.passes):
            position = self.positions[p][original]
            self.bob_shuffled[p][position] ^= 1
            block = self._top_block(p, position)
            while block >= 0:
                if self.blocks[block].current >= 0:
                    self.blocks[block].current ^= 1
                left = self.blocks[block].left
                if left >= 0 and position < self.blocks[left].end:
                    block = left
                else:
                    block = self.blocks[block].right
            if cascade and p != trigger_pass:
                self._push_todo(self._top_block(p, position) * 2)
        return 0


cdef void* _grow(void* pointer, size_t size) except NULL:
    cdef void* grown = realloc(pointer, size)
    if grown == NULL:
        raise MemoryError()
    return grown
