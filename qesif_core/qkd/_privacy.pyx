# cython: language_level=3
"""Compiled twin of ``privacy.toeplitz_product``: exact GF(2) Toeplitz hashing on bit-packed words.

The hash is the middle product of seed(z) and x(z) over GF(2) (see ``qesif_core/qkd/privacy.py``).
Long outputs take the full carry-less product by Karatsuba on 64-bit words (3 half-size products per
level, schoolbook below ``KARATSUBA_THRESHOLD`` words) with the x86 PCLMULQDQ instruction when the CPU
has it (checked at run time) and a portable shift-and-xor multiply otherwise; short outputs (tags) take
each output bit as the parity of the reversed key AND a sliding seed window, which costs m * n / 64 word
operations instead of a full product.
"""

import numpy as np

cimport numpy as cnp
from libc.stdint cimport uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset

cnp.import_array()

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>

    /* out[0 .. na+nb) ^= a[0 .. na) * b[0 .. nb) over GF(2), portable. */
    static void qesif_clmul_school_sw(const uint64_t* a, Py_ssize_t na, const uint64_t* b, Py_ssize_t nb,
                                      uint64_t* out) {
        for (Py_ssize_t i = 0; i < na; ++i) {
            uint64_t ai = a[i];
            for (Py_ssize_t j = 0; j < nb; ++j) {
                uint64_t bj = b[j], lo = 0, hi = 0;
                for (int bit = 0; bit < 64; ++bit) {
                    if ((ai >> bit) & 1) {
                        lo ^= bj << bit;
                        if (bit) hi ^= bj >> (64 - bit);
                    }
                }
                out[i + j] ^= lo;
                out[i + j + 1] ^= hi;
            }
        }
    }

    #if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    #include <immintrin.h>
    #define QESIF_HAVE_X86_CLMUL 1
    __attribute__((target("pclmul,sse2")))
    static void qesif_clmul_school_hw(const uint64_t* a, Py_ssize_t na, const uint64_t* b, Py_ssize_t nb,
                                      uint64_t* out) {
        for (Py_ssize_t i = 0; i < na; ++i) {
            __m128i ai = _mm_cvtsi64_si128((long long)a[i]);
            uint64_t carry = 0;
            uint64_t* row = out + i;
            for (Py_ssize_t j = 0; j < nb; ++j) {
                __m128i p = _mm_clmulepi64_si128(ai, _mm_cvtsi64_si128((long long)b[j]), 0x00);
                row[j] ^= (uint64_t)_mm_cvtsi128_si64(p) ^ carry;
                carry = (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(p, p));
            }
            row[nb] ^= carry;
        }
    }
    static int qesif_cpu_has_pclmul(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("pclmul");
    }
    #else
    #define QESIF_HAVE_X86_CLMUL 0
    static void qesif_clmul_school_hw(const uint64_t* a, Py_ssize_t na, const uint64_t* b, Py_ssize_t nb,
                                      uint64_t* out) {
        qesif_clmul_school_sw(a, na, b, nb, out);
    }
    static int qesif_cpu_has_pclmul(void) { return 0; }
    #endif

    static inline int qesif_parity64(uint64_t x) { return __builtin_parityll(x); }
    """
    void clmul_school_sw "qesif_clmul_school_sw"(const uint64_t* a, Py_ssize_t na, const uint64_t* b,
                                                 Py_ssize_t nb, uint64_t* out) noexcept nogil
    void clmul_school_hw "qesif_clmul_school_hw"(const uint64_t* a, Py_ssize_t na, const uint64_t* b,
                                                 Py_ssize_t nb, uint64_t* out) noexcept nogil
    int cpu_has_pclmul "qesif_cpu_has_pclmul"() noexcept nogil
    int parity64 "qesif_parity64"(uint64_t x) noexcept nogil

KARATSUBA_THRESHOLD = 24
DIRECT_MAX_OUT_BITS = 512  # outputs up to this length use the sliding-window parities
HARDWARE_CLMUL = bool(cpu_has_pclmul())

cdef Py_ssize_t _threshold = KARATSUBA_THRESHOLD


ctypedef void (*school_fn)(const uint64_t*, Py_ssize_t, const uint64_t*, Py_ssize_t, uint64_t*) noexcept nogil


cdef void _karatsuba(const uint64_t* a, const uint64_t* b, Py_ssize_t k, uint64_t* out, uint64_t* scratch,
                     school_fn school) noexcept nogil:
    """out[0 .. 2k) = a[0 .. k) * b[0 .. k); scratch holds at least 4k + 64 log2(k) words."""
    cdef Py_ssize_t h, low, i
    cdef uint64_t* a_sum
    cdef uint64_t* b_sum
    cdef uint64_t* middle
    if k <= _threshold:
        memset(out, 0, 2 * k * sizeof(uint64_t))
        school(a, k, b, k, out)
        return
    h = k - k // 2
    low = k // 2  # length of the high halves a1, b1
    a_sum = scratch
    b_sum = scratch + h
    middle = scratch + 2 * h
    _karatsuba(a, b, h, out, scratch + 4 * h, school)  # P0 = a0 b0
    _karatsuba(a + h, b + h, low, out + 2 * h, scratch + 4 * h, school)  # P2 = a1 b1
    for i in range(h):
        a_sum[i] = a[i]
        b_sum[i] = b[i]
    for i in range(low):
        a_sum[i] ^= a[h + i]
        b_sum[i] ^= b[h + i]
    _karatsuba(a_sum, b_sum, h, middle, scratch + 4 * h, school)  # P1 = (a0+a1)(b0+b1)
    for i in range(2 * h):
        middle[i] ^= out[i]
    for i in range(2 * low):
        middle[i] ^= out[2 * h + i]
    for i in range(2 * h):
        out[h + i] ^= middle[i]


cdef void _multiply(const uint64_t* a, Py_ssize_t na, const uint64_t* b, Py_ssize_t nb, uint64_t* out,
                    uint64_t* scratch, school_fn school) noexcept nogil:
    """out[0 .. na+nb) ^= a * b, cutting the longer operand into pieces as long as the shorter."""
    cdef Py_ssize_t offset, i
    cdef uint64_t* piece
    if na < nb:
        a, na, b, nb = b, nb, a, na
    if nb == 0:
        return
    if nb <= _threshold:
        school(a, na, b, nb, out)
        return
    piece = scratch
    offset = 0
    while offset + nb <= na:
        _karatsuba(a + offset, b, nb, piece, scratch + 2 * nb, school)
        for i in range(2 * nb):
            out[offset + i] ^= piece[i]
        offset += nb
    if offset < na:
        _multiply(a + offset, na - offset, b, nb, out + offset, scratch, school)


cdef Py_ssize_t _scratch_words(Py_ssize_t k):
    return 6 * k + 64 * 64 + 256


def _pack(bits):
    """Little-endian bit packing into uint64 words (bit i -> word i // 64, bit i % 64), one spare word."""
    packed = np.packbits(bits, bitorder="little")
    words = np.zeros(packed.size // 8 + 3, dtype="<u8")
    words.view(np.uint8)[: packed.size] = packed
    return np.ascontiguousarray(words.astype(np.uint64, copy=False))


def poly_multiply(a_words, b_words, bint hardware=True):
    """Carry-less product of two uint64 word arrays (tests compare hardware, software and Python ints)."""
    cdef const uint64_t[::1] a = np.ascontiguousarray(a_words, dtype=np.uint64)
    cdef const uint64_t[::1] b = np.ascontiguousarray(b_words, dtype=np.uint64)
    cdef Py_ssize_t na = a.shape[0], nb = b.shape[0]
    result = np.zeros(na + nb, dtype=np.uint64)
    if na == 0 or nb == 0:
        return result
    cdef uint64_t[::1] out = result
    cdef school_fn school = clmul_school_hw if (hardware and HARDWARE_CLMUL) else clmul_school_sw
    cdef uint64_t* scratch = <uint64_t*>calloc(_scratch_words(min(na, nb)), sizeof(uint64_t))
    if scratch == NULL:
        raise MemoryError()
    with nogil:
        _multiply(&a[0], na, &b[0], nb, &out[0], scratch, school)
    free(scratch)
    return result


def toeplitz_product(bits, Py_ssize_t out_bits, seed):
    """y_i = XOR_j seed[i - j + n - 1] x_j for i < out_bits (see ``privacy.toeplitz_product``)."""
    cdef Py_ssize_t n = bits.shape[0]
    if out_bits <= DIRECT_MAX_OUT_BITS:
        return _toeplitz_direct(bits, out_bits, seed)
    x_words = _pack(bits)
    s_words = _pack(seed)
    cdef Py_ssize_t nx = (n + 63) // 64
    cdef Py_ssize_t ns = (n + out_bits - 1 + 63) // 64
    product = poly_multiply(x_words[:nx], s_words[:ns], True)
    cdef const uint64_t[::1] p = product
    cdef Py_ssize_t first = n - 1, q = first // 64, r = first % 64
    cdef Py_ssize_t out_words = (out_bits + 63) // 64, k
    result = np.zeros(out_words, dtype=np.uint64)
    cdef uint64_t[::1] y = result
    for k in range(out_words):
        if r == 0:
            y[k] = p[q + k]
        elif q + k + 1 < p.shape[0]:
            y[k] = (p[q + k] >> r) | (p[q + k + 1] << (64 - r))
        else:
            y[k] = p[q + k] >> r
    return np.unpackbits(result.astype("<u8").view(np.uint8), count=out_bits, bitorder="little")


def _toeplitz_direct(bits, Py_ssize_t out_bits, seed):
    """Each output bit as parity(reversed key AND seed window at offset i): y_i = XOR_k seed[i+k] x[n-1-k]."""
    cdef Py_ssize_t n = bits.shape[0]
    x_words = _pack(np.ascontiguousarray(bits[::-1]))
    s_words = _pack(seed)
    cdef const uint64_t[::1] x = x_words
    cdef const uint64_t[::1] s = s_words
    cdef Py_ssize_t nx = (n + 63) // 64, i, k, q
    cdef int r
    cdef uint64_t acc
    result = np.empty(out_bits, dtype=np.uint8)
    cdef unsigned char[::1] y = result
    with nogil:
        for i in range(out_bits):
            q = i // 64
            r = i % 64
            acc = 0
            if r == 0:
                for k in range(nx):
                    acc ^= x[k] & s[q + k]
            else:
                for k in range(nx):
                    acc ^= x[k] & ((s[q + k] >> r) | (s[q + k + 1] << (64 - r)))
            y[i] = parity64(acc)
    return result
