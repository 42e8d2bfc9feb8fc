# cython: language_level=3
"""Compiled twin of ``privacy.toeplitz_product``: exact GF(2) Toeplitz hashing on bit-packed words.

The hash is the middle product of seed(z) and x(z) over GF(2) (see ``qesif_core/qkd/privacy.py``).
With 64-bit words as coefficients, the product words C_w = XOR_j S_{w-j} * X_j (128-bit carry-less
products) for the needed rows w form a word-level Toeplitz matrix times the key, computed by the
subquadratic two-way split of Fan & Hasan (IEEE Trans. Computers 56(2), 2007), the transpose of
Karatsuba: with T = [[T1, T0], [T2, T1]],

    y0 = T1 (x0 + x1) + (T0 + T1) x1,    y1 = T1 (x0 + x1) + (T2 + T1) x0,

three half-size products per level, schoolbook below ``TVP_THRESHOLD`` words. The schoolbook kernel
is picked at run time from what the CPU has (``CLMUL_KERNELS``): AVX-512 VPCLMULQDQ (four 128-bit
products per instruction), x86 PCLMULQDQ, or a portable table-driven multiply.
Only the m output bits are computed, not the whole product. Short outputs (tags) take each output bit
as the parity of the reversed key AND a sliding seed window (m * n / 64 word operations).
"""

import numpy as np

cimport numpy as cnp
from libc.stdint cimport uint64_t
from libc.math cimport pow
from libc.stdlib cimport free, malloc

cnp.import_array()

cdef extern from *:
    """
    #include <stdint.h>

    /* 64 x 64 -> 128-bit carry-less product, portable: 4-bit windows of a against a table of multiples
       of each 32-bit half of b (entries < 2^35, so nothing is shifted out of a table word). */
    static inline void qesif_clmul64_sw(uint64_t a, uint64_t b, uint64_t* lo, uint64_t* hi) {
        uint64_t l = 0, h = 0, table[16];
        for (int half = 0; half < 2; ++half) {
            uint64_t part = half ? (b >> 32) : (b & 0xffffffffULL);
            table[0] = 0;
            table[1] = part;
            for (int t = 2; t < 16; t += 2) {
                table[t] = table[t / 2] << 1;
                table[t + 1] = table[t] ^ part;
            }
            for (int i = 0; i < 64; i += 4) {
                uint64_t term = table[(a >> i) & 15];
                int shift = i + 32 * half;
                if (shift == 0) {
                    l ^= term;
                } else if (shift < 64) {
                    l ^= term << shift;
                    h ^= term >> (64 - shift);
                } else {
                    h ^= term << (shift - 64);
                }
            }
        }
        *lo = l;
        *hi = h;
    }

    /* (y[2i], y[2i+1]) = XOR_j D[i - j + k - 1] * x[j] as 128-bit carry-less products, i < k. */
    static void qesif_tvp_base_sw(const uint64_t* D, const uint64_t* x, Py_ssize_t k, uint64_t* y) {
        for (Py_ssize_t i = 0; i < k; ++i) {
            uint64_t lo = 0, hi = 0, l, h;
            const uint64_t* d = D + i + k - 1;
            for (Py_ssize_t j = 0; j < k; ++j) {
                qesif_clmul64_sw(d[-j], x[j], &l, &h);
                lo ^= l;
                hi ^= h;
            }
            y[2 * i] = lo;
            y[2 * i + 1] = hi;
        }
    }

    #if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    #include <immintrin.h>
    __attribute__((target("pclmul,sse2")))
    static void qesif_tvp_base_hw(const uint64_t* D, const uint64_t* x, Py_ssize_t k, uint64_t* y) {
        for (Py_ssize_t i = 0; i < k; ++i) {
            __m128i acc0 = _mm_setzero_si128(), acc1 = _mm_setzero_si128();
            const uint64_t* d = D + i + k - 2;  /* d[-j], d[-j+1] = D[i-j+k-2], D[i-j+k-1] */
            Py_ssize_t j = 0;
            for (; j + 1 < k; j += 2) {
                __m128i xs = _mm_loadu_si128((const __m128i*)(x + j));      /* x[j], x[j+1] */
                __m128i ds = _mm_loadu_si128((const __m128i*)(d - j));      /* D[..-j-1], D[..-j] */
                acc0 = _mm_xor_si128(acc0, _mm_clmulepi64_si128(ds, xs, 0x01));  /* D[i-j+k-1] x[j] */
                acc1 = _mm_xor_si128(acc1, _mm_clmulepi64_si128(ds, xs, 0x10));  /* D[i-j+k-2] x[j+1] */
            }
            if (j < k) {
                acc0 = _mm_xor_si128(acc0, _mm_clmulepi64_si128(
                    _mm_cvtsi64_si128((long long)D[i - j + k - 1]), _mm_cvtsi64_si128((long long)x[j]), 0x00));
            }
            _mm_storeu_si128((__m128i*)(y + 2 * i), _mm_xor_si128(acc0, acc1));
        }
    }
    /* The same with VPCLMULQDQ: four 128-bit lanes, eight word products per pair of instructions. */
    __attribute__((target("avx512f,avx2,vpclmulqdq,pclmul")))
    static void qesif_tvp_base_wide(const uint64_t* D, const uint64_t* x, Py_ssize_t k, uint64_t* y) {
        for (Py_ssize_t i = 0; i < k; ++i) {
            __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
            const uint64_t* d = D + i + k - 8;  /* d[-j .. 7-j] = D[i+k-8-j .. i+k-1-j] */
            Py_ssize_t j = 0;
            for (; j + 8 <= k; j += 8) {
                __m512i xs = _mm512_loadu_si512((const void*)(x + j));  /* lane L: x[j+2L], x[j+2L+1] */
                __m512i ds = _mm512_loadu_si512((const void*)(d - j));
                ds = _mm512_shuffle_i64x2(ds, ds, 0x1B);  /* lane L: D[i+k-2-j-2L], D[i+k-1-j-2L] */
                acc0 = _mm512_xor_si512(acc0, _mm512_clmulepi64_epi128(ds, xs, 0x01));
                acc1 = _mm512_xor_si512(acc1, _mm512_clmulepi64_epi128(ds, xs, 0x10));
            }
            __m512i acc = _mm512_xor_si512(acc0, acc1);
            __m256i quarter = _mm256_xor_si256(_mm512_castsi512_si256(acc), _mm512_extracti64x4_epi64(acc, 1));
            __m128i sum = _mm_xor_si128(_mm256_castsi256_si128(quarter), _mm256_extracti128_si256(quarter, 1));
            for (; j < k; ++j) {
                sum = _mm_xor_si128(sum, _mm_clmulepi64_si128(
                    _mm_cvtsi64_si128((long long)D[i - j + k - 1]), _mm_cvtsi64_si128((long long)x[j]), 0x00));
            }
            _mm_storeu_si128((__m128i*)(y + 2 * i), sum);
        }
    }
    static int qesif_cpu_has_pclmul(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("pclmul");
    }
    static int qesif_cpu_has_wide_clmul(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("vpclmulqdq");
    }
    #else
    static void qesif_tvp_base_hw(const uint64_t* D, const uint64_t* x, Py_ssize_t k, uint64_t* y) {
        qesif_tvp_base_sw(D, x, k, y);
    }
    static void qesif_tvp_base_wide(const uint64_t* D, const uint64_t* x, Py_ssize_t k, uint64_t* y) {
        qesif_tvp_base_sw(D, x, k, y);
    }
    static int qesif_cpu_has_pclmul(void) { return 0; }
    static int qesif_cpu_has_wide_clmul(void) { return 0; }
    #endif

    static inline int qesif_parity64(uint64_t x) { return __builtin_parityll(x); }
    """
    void tvp_base_sw "qesif_tvp_base_sw"(const uint64_t* D, const uint64_t* x, Py_ssize_t k,
                                          uint64_t* y) noexcept nogil
    void tvp_base_hw "qesif_tvp_base_hw"(const uint64_t* D, const uint64_t* x, Py_ssize_t k,
                                          uint64_t* y) noexcept nogil
    void tvp_base_wide "qesif_tvp_base_wide"(const uint64_t* D, const uint64_t* x, Py_ssize_t k,
                                              uint64_t* y) noexcept nogil
    int cpu_has_pclmul "qesif_cpu_has_pclmul"() noexcept nogil
    int cpu_has_wide_clmul "qesif_cpu_has_wide_clmul"() noexcept nogil
    int parity64 "qesif_parity64"(uint64_t x) noexcept nogil

cdef enum:
    TVP_THRESHOLD_C = 32  # words; blocks of at most this size use the schoolbook base case

TVP_THRESHOLD = TVP_THRESHOLD_C
DIRECT_MAX_OUT_BITS = 512  # outputs up to this length use the sliding-window parities
PORTABLE_MAX_BITS = 1 << 14  # keys longer than this use the FFT when the CPU has no carry-less multiply
# Base-case kernels this CPU can run, slowest first; the fastest is the default.
CLMUL_KERNELS = ("portable",) + (("pclmul",) if cpu_has_pclmul() else ()) + (
    ("vpclmul512",) if cpu_has_pclmul() and cpu_has_wide_clmul() else ()
)
DEFAULT_KERNEL = CLMUL_KERNELS[len(CLMUL_KERNELS) - 1]  # (negative indexing is off in compiled code)

ctypedef void (*base_fn)(const uint64_t*, const uint64_t*, Py_ssize_t, uint64_t*) noexcept nogil


cdef void _tvp(const uint64_t* D, const uint64_t* x, Py_ssize_t k, uint64_t* y, uint64_t* scratch,
               base_fn base) noexcept nogil:
    """y (k entries of 2 words) = T x with T[i][j] = D[i - j + k - 1]; k is a power of two times a base size.

    Scratch: 6k words per level plus the next level's (at most 12k in total).
    """
    cdef Py_ssize_t h, i
    cdef uint64_t* x_sum
    cdef uint64_t* d_sum
    cdef uint64_t* part
    if k <= TVP_THRESHOLD_C:
        base(D, x, k, y)
        return
    h = k // 2
    x_sum = scratch
    d_sum = scratch + h
    part = scratch + h + k
    for i in range(h):
        x_sum[i] = x[i] ^ x[h + i]
    _tvp(D + h, x_sum, h, y, part, base)  # P0 = T1 (x0 + x1), into y0
    for i in range(2 * h):
        y[2 * h + i] = y[i]  # y1 = P0 as well
    for i in range(k - 1):
        d_sum[i] = D[i] ^ D[h + i]  # T0 + T1
    _tvp(d_sum, x + h, h, part, part + 2 * h, base)
    for i in range(2 * h):
        y[i] ^= part[i]
    for i in range(k - 1):
        d_sum[i] = D[k + i] ^ D[h + i]  # T2 + T1
    _tvp(d_sum, x, h, part, part + 2 * h, base)
    for i in range(2 * h):
        y[2 * h + i] ^= part[i]


cdef Py_ssize_t _block_size(Py_ssize_t k):
    """Smallest b * 2^L >= k with b <= TVP_THRESHOLD_C, so the recursion halves evenly down to b."""
    cdef Py_ssize_t shift = 0
    while (k + (1 << shift) - 1) >> shift > TVP_THRESHOLD_C:
        shift += 1
    return ((k + (1 << shift) - 1) >> shift) << shift


cdef double _tiling_cost(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t k):
    """Work of covering a rows x cols word matrix with k x k tiles (k^log2(3) each)."""
    return ((rows + k - 1) // k) * ((cols + k - 1) // k) * pow(<double>k, 1.585)


def _pack(bits, Py_ssize_t lead_bits=0, Py_ssize_t total_words=0):
    """Little-endian bit packing (bit i -> word i // 64, bit i % 64) after ``lead_bits`` zero bits."""
    size = max(total_words, (lead_bits + bits.shape[0] + 63) // 64 + 1)
    padded = np.zeros(size * 64, dtype=np.uint8)
    padded[lead_bits : lead_bits + bits.shape[0]] = bits
    return np.ascontiguousarray(np.packbits(padded, bitorder="little").view("<u8").astype(np.uint64, copy=False))


def toeplitz_product(bits, Py_ssize_t out_bits, seed):
    """y_i = XOR_j seed[i - j + n - 1] x_j for i < out_bits (see ``privacy.toeplitz_product``).

    Without a hardware carry-less multiply the portable kernel is slower than the exact-checked FFT
    of the pure twin, so long outputs go there instead.
    """
    if out_bits <= DIRECT_MAX_OUT_BITS:
        return _toeplitz_direct(bits, out_bits, seed)
    if DEFAULT_KERNEL == "portable" and bits.shape[0] > PORTABLE_MAX_BITS:
        from qesif_core.qkd.privacy import toeplitz_product as fft_toeplitz_product

        return fft_toeplitz_product(bits, out_bits, seed)
    return toeplitz_tvp(bits, out_bits, seed, DEFAULT_KERNEL)


def toeplitz_tvp(bits, Py_ssize_t out_bits, seed, str kernel):
    """The Toeplitz product by word-level subquadratic Toeplitz-vector products (any output length).

    ``kernel`` is one of ``CLMUL_KERNELS`` (tests check each against the dense-matrix reference).
    """
    if kernel not in CLMUL_KERNELS:
        raise ValueError(f"carry-less kernel {kernel!r} is not available here; available: {CLMUL_KERNELS}")
    cdef Py_ssize_t n = bits.shape[0]
    cdef Py_ssize_t kx = (n + 63) // 64
    cdef Py_ssize_t shift = (-(n - 1)) % 64  # bits that align product bit n-1 to a word start
    cdef Py_ssize_t out_words = (out_bits + 63) // 64
    cdef Py_ssize_t rows = out_words + 1  # C_w for w = W0 - 1 .. W0 + out_words - 1
    cdef Py_ssize_t k_rows = _block_size(min(rows, kx)), k_other = _block_size(max(rows, kx))
    cdef Py_ssize_t k = k_rows
    if _tiling_cost(rows, kx, k_other) < _tiling_cost(rows, kx, k_rows):
        k = k_other
    cdef Py_ssize_t row_tiles = (rows + k - 1) // k, col_tiles = (kx + k - 1) // k
    cdef Py_ssize_t lead = col_tiles * k + 2  # zero words before the seed so every diagonal index is >= 0
    cdef Py_ssize_t first_row = lead + (n - 1 + shift) // 64 - 1
    x_words = _pack(bits, 0, col_tiles * k)
    s_words = _pack(seed, 64 * lead + shift, first_row + row_tiles * k + k + 2)
    product = np.zeros(2 * row_tiles * k, dtype=np.uint64)
    cdef const uint64_t[::1] xw = x_words
    cdef const uint64_t[::1] sw = s_words
    cdef uint64_t[::1] c = product
    cdef base_fn base = tvp_base_sw
    if kernel == "pclmul":
        base = tvp_base_hw
    elif kernel == "vpclmul512":
        base = tvp_base_wide
    cdef uint64_t* scratch = <uint64_t*>malloc((14 * k + 64) * sizeof(uint64_t))
    cdef uint64_t* tile = scratch + 12 * k + 32
    cdef Py_ssize_t rt, ct, i
    if scratch == NULL:
        raise MemoryError()
    with nogil:
        for rt in range(row_tiles):
            for ct in range(col_tiles):
                _tvp(&sw[0] + first_row + rt * k - ct * k - (k - 1), &xw[0] + ct * k, k, tile, scratch, base)
                for i in range(2 * k):
                    c[2 * rt * k + i] ^= tile[i]
    free(scratch)
    result = np.empty(out_words, dtype=np.uint64)
    cdef uint64_t[::1] y = result
    for i in range(out_words):  # product word W0 + i = low half of C_{W0+i} ^ high half of C_{W0+i-1}
        y[i] = c[2 * (i + 1)] ^ c[2 * i + 1]
    return np.unpackbits(result.astype("<u8").view(np.uint8), count=out_bits, bitorder="little")


def _toeplitz_direct(bits, Py_ssize_t out_bits, seed):
    """Each output bit as parity(reversed key AND seed window at offset i): y_i = XOR_k seed[i+k] x[n-1-k]."""
    cdef Py_ssize_t n = bits.shape[0]
    x_words = _pack(np.ascontiguousarray(bits[::-1]))
    s_words = _pack(seed, 0, (n + out_bits + 63) // 64 + 2)
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
