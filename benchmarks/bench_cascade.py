"""Cascade reconciliation speed and efficiency, and Toeplitz hashing speed (issue 2 targets).

Cascade: reconciled bits per second (timing ``reconcile`` only) and efficiency f at Q = 1, 2, 5 %,
n = 1e4 and 1e5, exactly round(n Q) flipped bits, both variants, compiled and pure (pure at n = 1e4
only). Targets: compiled >= 5 Mbit/s at Q = 2 %; references: cascade-cpp ~18 Mbit/s (original) and
~10 Mbit/s (yanetal) at n = 1e5, pure-Python Cascade 40-150 kbit/s.
Toeplitz: input bits per second at n = 1e6 with m = n / 2 output bits, compiled against the pure twin
and a plain numpy-FFT baseline (full linear convolution, power-of-two length), all in this run.
Target >= 50 Mbit/s. Medians over repetitions, of wall-clock time (``_mbps``) and of this thread's
CPU time (``_cpu_mbps``, less sensitive to other processes on a shared machine; cascade-cpp reports
process time too).
"""

from __future__ import annotations

import time

import numpy as np

from qesif_core.qkd import _privacy, cascade, privacy

QBERS = (0.01, 0.02, 0.05)


def _frame(rng: np.random.Generator, n: int, qber: float) -> tuple[np.ndarray, np.ndarray]:
    alice = rng.integers(0, 2, n, dtype=np.uint8)
    bob = alice.copy()
    bob[rng.choice(n, round(n * qber), replace=False)] ^= 1
    return alice, bob


def _cascade_figures(variant: str, impl: str, n: int, repetitions: int) -> dict:
    figures = {}
    rng = np.random.default_rng([2025, n])
    for qber in QBERS:
        seconds, cpu_seconds, efficiencies, failures = [], [], [], 0
        for _ in range(repetitions):
            alice, bob = _frame(rng, n, qber)
            started, cpu_started = time.perf_counter(), time.thread_time()
            result = cascade.reconcile(alice, bob, qber, rng, variant, impl=impl)
            seconds.append(time.perf_counter() - started)
            cpu_seconds.append(time.thread_time() - cpu_started)
            efficiencies.append(result.efficiency)
            failures += not np.array_equal(result.corrected, alice)
        key = f"cascade_{variant}_{impl}_n{n}_q{round(qber * 100)}"
        figures[f"{key}_mbps"] = round(n / float(np.median(seconds)) / 1e6, 4)
        figures[f"{key}_cpu_mbps"] = round(n / max(float(np.median(cpu_seconds)), 1e-9) / 1e6, 4)
        figures[f"{key}_f"] = round(float(np.median(efficiencies)), 4)
        figures[f"{key}_frames"] = repetitions
        figures[f"{key}_failed_frames"] = failures
    return figures


def _plain_fft_toeplitz(bits: np.ndarray, out_bits: int, seed: np.ndarray) -> np.ndarray:
    """Baseline: the textbook numpy-FFT Toeplitz hash (linear convolution, power-of-two length)."""
    n = bits.size
    length = 1 << (n + seed.size - 1).bit_length()
    full = np.fft.irfft(
        np.fft.rfft(bits.astype(np.float64), length) * np.fft.rfft(seed.astype(np.float64), length), length
    )
    return (np.rint(full[n - 1 : n - 1 + out_bits]).astype(np.int64) & 1).astype(np.uint8)


def _median_seconds(function, repetitions: int) -> tuple[float, float]:
    """Median wall-clock and thread CPU seconds of ``function()``."""
    seconds, cpu_seconds = [], []
    for _ in range(repetitions):
        started, cpu_started = time.perf_counter(), time.thread_time()
        function()
        seconds.append(time.perf_counter() - started)
        cpu_seconds.append(time.thread_time() - cpu_started)
    return float(np.median(seconds)), max(float(np.median(cpu_seconds)), 1e-9)


def _toeplitz_figures(n: int = 1_000_000) -> dict:
    rng = np.random.default_rng(99)
    out_bits = n // 2
    bits = rng.integers(0, 2, n, dtype=np.uint8)
    seed = rng.integers(0, 2, privacy.seed_bits_needed(n, out_bits), dtype=np.uint8)
    compiled = privacy.toeplitz_hash(bits, out_bits, seed, impl="cython")
    if not np.array_equal(compiled, _plain_fft_toeplitz(bits, out_bits, seed)):
        raise AssertionError("compiled Toeplitz hash disagrees with the FFT baseline")
    timings = {
        "compiled": _median_seconds(lambda: privacy.toeplitz_hash(bits, out_bits, seed, impl="cython"), 7),
        "pure": _median_seconds(lambda: privacy.toeplitz_hash(bits, out_bits, seed, impl="python"), 3),
        "numpy_fft_baseline": _median_seconds(lambda: _plain_fft_toeplitz(bits, out_bits, seed), 3),
    }
    figures = {}
    for name, (wall, cpu) in timings.items():
        figures[f"toeplitz_{name}_n{n}_mbps"] = round(n / wall / 1e6, 2)
        figures[f"toeplitz_{name}_n{n}_cpu_mbps"] = round(n / cpu / 1e6, 2)
    figures["toeplitz_out_bits"] = out_bits
    figures["toeplitz_compiled_vs_numpy_fft"] = round(
        timings["numpy_fft_baseline"][0] / timings["compiled"][0], 2
    )
    tag_seed = rng.integers(0, 2, privacy.seed_bits_needed(n, 64), dtype=np.uint8)
    tag_seconds, _ = _median_seconds(lambda: privacy.verification_tag(bits, tag_seed, 64, impl="cython"), 7)
    figures[f"verification_tag64_compiled_n{n}_mbps"] = round(n / tag_seconds / 1e6, 1)
    figures["toeplitz_kernel"] = _privacy.DEFAULT_KERNEL
    return figures


def run() -> dict:
    figures: dict = {}
    for variant in ("original", "yanetal"):
        figures.update(_cascade_figures(variant, "cython", 10_000, 21))
        figures.update(_cascade_figures(variant, "cython", 100_000, 11))
        figures.update(_cascade_figures(variant, "python", 10_000, 3))
    figures.update(_toeplitz_figures())
    return figures


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
