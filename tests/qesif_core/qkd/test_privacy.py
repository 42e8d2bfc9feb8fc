import numpy as np
import pytest

from qesif_core.qkd import _privacy, privacy

IMPLS = ("python", "cython")


def dense_toeplitz_hash(bits: np.ndarray, out_bits: int, seed: np.ndarray) -> np.ndarray:
    """Reference: build T[i, j] = seed[i - j + n - 1] explicitly (256 rows at a time) and multiply mod 2.

    float32 holds the integer row sums exactly (they are at most n < 2^24)."""
    n = bits.size
    cols = np.arange(n)[None, :]
    x = bits.astype(np.float32)
    out = np.empty(out_bits, dtype=np.uint8)
    for first in range(0, out_bits, 256):
        rows = np.arange(first, min(first + 256, out_bits))[:, None]
        sums = seed[rows - cols + n - 1].astype(np.float32) @ x
        out[first : first + rows.size] = np.rint(sums).astype(np.int64) & 1
    return out


def random_case(rng: np.random.Generator, n: int, out_bits: int) -> tuple[np.ndarray, np.ndarray]:
    bits = rng.integers(0, 2, n, dtype=np.uint8)
    seed = rng.integers(0, 2, privacy.seed_bits_needed(n, out_bits), dtype=np.uint8)
    return bits, seed


# Edge shapes (single bits, word boundaries, m > n, m << n), one and two recursion levels of the
# Toeplitz-vector product (> 32 and > 64 words), the tag path (m <= 512), and random shapes.
SHAPES = [(1, 1), (1, 700), (2, 1), (63, 64), (64, 65), (65, 63), (700, 1), (2049, 2049), (2048, 4100)]
SHAPES += [(4500, 300), (5000, 513), (4100, 2048), (4200, 4201), (3333, 3331), (4500, 600), (600, 4500)]


@pytest.fixture(scope="module")
def dense_cases() -> list[tuple[np.ndarray, int, np.ndarray, np.ndarray]]:
    """(bits, out_bits, seed, dense-matrix hash) for every shape; the reference is built once."""
    rng = np.random.default_rng(20250117)
    shapes = SHAPES + [(int(rng.integers(1, 4000)), int(rng.integers(1, 4000))) for _ in range(8)]
    cases = []
    for n, out_bits in shapes:
        bits, seed = random_case(rng, n, out_bits)
        cases.append((bits, out_bits, seed, dense_toeplitz_hash(bits, out_bits, seed)))
    return cases


@pytest.mark.parametrize("impl", IMPLS)
def test_toeplitz_hash_equals_the_dense_matrix_product(impl, dense_cases):
    for bits, out_bits, seed, expected in dense_cases:
        hashed = privacy.toeplitz_hash(bits, out_bits, seed, impl=impl)
        assert np.array_equal(hashed, expected), (bits.size, out_bits)


def test_every_compiled_path_equals_the_dense_product(dense_cases):
    # Toeplitz-vector products with every carry-less kernel this CPU has, and the tag path.
    for bits, out_bits, seed, expected in dense_cases:
        for kernel in _privacy.CLMUL_KERNELS:
            hashed = _privacy.toeplitz_tvp(bits, out_bits, seed, kernel)
            assert np.array_equal(hashed, expected), (bits.size, out_bits, kernel)
        assert np.array_equal(_privacy._toeplitz_direct(bits, out_bits, seed), expected), (
            bits.size,
            out_bits,
        )


def test_twins_agree_on_large_keys(rng):
    # Deep recursion (many Karatsuba levels) against the exact-checked FFT twin.
    for n, out_bits in [(200_003, 120_001), (150_000, 64), (70_001, 190_000)]:
        bits, seed = random_case(rng, n, out_bits)
        compiled = privacy.toeplitz_hash(bits, out_bits, seed, impl="cython")
        assert np.array_equal(compiled, privacy.toeplitz_hash(bits, out_bits, seed, impl="python"))
        if out_bits > _privacy.DIRECT_MAX_OUT_BITS:
            for kernel in set(_privacy.CLMUL_KERNELS) - {_privacy.DEFAULT_KERNEL}:
                assert np.array_equal(compiled, _privacy.toeplitz_tvp(bits, out_bits, seed, kernel))


def test_hash_is_linear_and_deterministic(rng):
    n, out_bits = 3000, 1500
    a, seed = random_case(rng, n, out_bits)
    b = rng.integers(0, 2, n, dtype=np.uint8)
    hash_a = privacy.toeplitz_hash(a, out_bits, seed)
    assert np.array_equal(hash_a, privacy.toeplitz_hash(a.copy(), out_bits, seed.copy()))
    assert np.array_equal(
        privacy.toeplitz_hash(a ^ b, out_bits, seed), hash_a ^ privacy.toeplitz_hash(b, out_bits, seed)
    )


def test_output_is_balanced(rng):
    bits, seed = random_case(rng, 20_000, 10_000)
    ones = int(privacy.toeplitz_hash(bits, 10_000, seed).sum())
    assert abs(ones - 5000) < 5 * 50  # binomial(10000, 1/2): sd 50


def test_verification_tag_catches_a_residual_error(rng):
    alice, seed = random_case(rng, 10_000, 64)
    bob = alice.copy()
    assert privacy.verification_tag(alice, seed) == privacy.verification_tag(bob, seed)
    assert len(privacy.verification_tag(alice, seed)) == 8
    for position in (0, 4321, 9999):
        bob = alice.copy()
        bob[position] ^= 1
        assert privacy.verification_tag(alice, seed) != privacy.verification_tag(bob, seed)


def test_tag_collisions_are_rare_for_a_fixed_difference(rng):
    # For a fixed nonzero difference the collision chance over seeds is 2^-tag_bits; with 8-bit tags
    # about 1/256 of 4000 seeds collide.
    n, tag_bits = 500, 8
    difference = np.zeros(n, dtype=np.uint8)
    difference[[3, 77, 400]] = 1
    key = rng.integers(0, 2, n, dtype=np.uint8)
    collisions = 0
    for _ in range(4000):
        seed = rng.integers(0, 2, privacy.seed_bits_needed(n, tag_bits), dtype=np.uint8)
        collisions += privacy.verification_tag(key, seed, tag_bits) == privacy.verification_tag(
            key ^ difference, seed, tag_bits
        )
    assert 3 <= collisions <= 35  # mean 15.6, sd 3.9


def test_seed_length_and_bad_inputs():
    assert privacy.seed_bits_needed(1000, 300) == 1299
    assert privacy.seed_bits_needed(0, 0) == 0
    assert privacy.toeplitz_hash(np.ones(5, dtype=np.uint8), 0, np.zeros(4, dtype=np.uint8)).size == 0
    with pytest.raises(ValueError, match="seed must have 1299 bits"):
        privacy.toeplitz_hash(np.zeros(1000, dtype=np.uint8), 300, np.zeros(1000, dtype=np.uint8))
    with pytest.raises(ValueError, match="0/1"):
        privacy.toeplitz_hash(np.full(4, 3, dtype=np.uint8), 2, np.zeros(5, dtype=np.uint8))
    with pytest.raises(ValueError, match="tag_bits"):
        privacy.verification_tag(np.zeros(4, dtype=np.uint8), np.zeros(3, dtype=np.uint8), 0)


def test_without_hardware_multiply_long_keys_take_the_fft(monkeypatch, rng):
    bits, seed = random_case(rng, _privacy.PORTABLE_MAX_BITS + 1000, 3000)
    expected = _privacy.toeplitz_tvp(bits, 3000, seed, "portable")
    monkeypatch.setattr(_privacy, "DEFAULT_KERNEL", "portable")
    calls = []
    monkeypatch.setattr(privacy, "toeplitz_product", lambda *args: calls.append(1) or expected)
    assert np.array_equal(_privacy.toeplitz_product(bits, 3000, seed), expected)
    assert calls == [1]
