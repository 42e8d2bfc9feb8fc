"""Privacy amplification and error verification with a seeded Toeplitz hash over GF(2).

A random binary Toeplitz matrix T (m x n) is a 2-universal family (Carter & Wegman 1979; Krawczyk
1994): for keys x != x', Pr[T x = T x'] = 2^-m over the seed. Both sides draw the same seed (public,
sent over the authenticated channel) from the caller's generator and compute

    y_i = XOR_j seed[i - j + n - 1] * x_j,   i < m, j < n,

i.e. T[i, j] = seed[i - j + n - 1]: first row seed[n-1], seed[n-2], ..., seed[0] and first column
seed[n-1 .. n+m-2]. That is the "middle product" of the polynomials seed(z) and x(z) over GF(2)
(coefficients n-1 .. n+m-2 of their product), which the compiled twin ``qesif_core.qkd._privacy``
computes exactly with bit-packed carry-less Karatsuba multiplication. This module's twin computes the
same integer convolution with a float FFT and checks that every value rounds unambiguously, so it is
exact or it raises.
"""

from __future__ import annotations

import numpy as np

from qesif_core import _native
from qesif_core.qkd.bits import as_bits

_COMPILED = "qesif_core.qkd._privacy"
_PURE = "qesif_core.qkd.privacy"
ROUNDING_MARGIN = 0.25  # an FFT value farther than this from an integer means float precision ran out


def seed_bits_needed(n: int, out_bits: int) -> int:
    """Seed length of an ``out_bits`` x ``n`` Toeplitz matrix (one bit per diagonal)."""
    if n < 0 or out_bits < 0:
        raise ValueError(f"key length and output length must be >= 0, got n={n}, out_bits={out_bits}")
    return max(n + out_bits - 1, 0)


def toeplitz_hash(
    bits: np.ndarray, out_bits: int, seed: np.ndarray, *, impl: str | None = None
) -> np.ndarray:
    """``out_bits`` hashed bits (uint8 0/1) of ``bits`` under the Toeplitz matrix given by ``seed``.

    ``seed`` holds ``seed_bits_needed(len(bits), out_bits)`` random bits shared by both sides.
    ``impl`` overrides ``QESIF_IMPL``; both implementations return identical bits.
    """
    key = as_bits(bits, "bits")
    seed_bits = as_bits(seed, "seed")
    needed = seed_bits_needed(key.size, out_bits)
    if seed_bits.size != needed:
        raise ValueError(
            f"seed must have {needed} bits for n={key.size}, out_bits={out_bits}; got {seed_bits.size}"
        )
    if out_bits == 0:
        return np.zeros(0, dtype=np.uint8)
    if key.size == 0:
        return np.zeros(out_bits, dtype=np.uint8)
    twin = _native.load(_COMPILED, _PURE, impl)
    return twin.toeplitz_product(key, out_bits, seed_bits)


def verification_tag(
    bits: np.ndarray, seed: np.ndarray, tag_bits: int = 64, *, impl: str | None = None
) -> bytes:
    """A ``tag_bits`` Toeplitz tag of ``bits`` for error verification (collision chance 2^-tag_bits).

    ``seed`` holds ``seed_bits_needed(len(bits), tag_bits)`` shared random bits. Alice sends her tag;
    Bob compares it with his: different keys are caught except with probability 2^-tag_bits.
    """
    if tag_bits <= 0:
        raise ValueError(f"tag_bits must be positive, got {tag_bits}")
    return np.packbits(toeplitz_hash(bits, tag_bits, seed, impl=impl)).tobytes()


# ---------------------------------------------------------------------------------------------------
# Pure twin of the compiled qesif_core/qkd/_privacy.pyx.
# ---------------------------------------------------------------------------------------------------


def toeplitz_product(bits: np.ndarray, out_bits: int, seed: np.ndarray) -> np.ndarray:
    """Middle product y_i = sum_j seed[i - j + n - 1] x_j mod 2 via an exact-checked FFT convolution.

    A circular convolution of length >= n + m - 1 leaves coefficients n-1 .. n+m-2 of the linear
    one unaliased, so the transform is barely longer than the seed.
    """
    n = bits.size
    length = _smooth_length(n + out_bits - 1)
    spectrum = np.fft.rfft(bits.astype(np.float64), length) * np.fft.rfft(seed.astype(np.float64), length)
    middle = np.fft.irfft(spectrum, length)[n - 1 : n - 1 + out_bits]
    rounded = np.rint(middle)
    if middle.size and float(np.max(np.abs(middle - rounded))) >= ROUNDING_MARGIN:
        raise ArithmeticError(
            f"FFT Toeplitz product lost exactness at n={n}; use the compiled implementation"
        )
    return (rounded.astype(np.int64) & 1).astype(np.uint8)


def _smooth_length(minimum: int) -> int:
    """Smallest 2^a 3^b 5^c >= ``minimum`` (fast FFT sizes)."""
    best = 1 << max(minimum - 1, 0).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            value = power35
            while value < minimum:
                value *= 2
            best = min(best, value)
            power35 *= 3
        power5 *= 5
    return best
