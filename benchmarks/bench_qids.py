"""Q-IDS (Algorithm 2) throughput: block-steps per second of the compiled loop and its pure-Python twin.

Both run on the same kind of traces (10 gateway links, half clean and half eavesdropped QBER statistics,
drawn from binomial error counts), medians of several repetitions measured in the same run. The compiled
rate is given for 10 x 10,000 blocks (inputs and outputs stay in cache) and for 10 x 100,000 blocks
(47 MB of fresh output arrays per call: page faults and memory traffic lower the rate).
"""

from __future__ import annotations

import time

import numpy as np

from qesif_core.qids import _anomaly_py

N_LINKS = 10
COMPILED_BLOCKS = 10_000
LARGE_BLOCKS = 100_000
PURE_BLOCKS = 5_000
REPEATS = 7


def _inputs(rng: np.random.Generator, n_blocks: int) -> tuple:
    qber_mean = np.where(np.arange(N_LINKS) % 2 == 0, 0.01, 0.15)[:, None]
    qber = rng.binomial(4000, np.broadcast_to(qber_mean, (N_LINKS, n_blocks))) / 4000
    p = np.clip(qber, 1e-12, 1 - 1e-12)
    h_q = 1 - 2 * (-p * np.log2(p) - (1 - p) * np.log2(1 - p))
    key_drop = (h_q <= 0).astype(np.float64)
    ones = np.ones(N_LINKS)
    return (
        h_q, qber, key_drop, 0.84 * ones, ones / 0.01, 0.35 * ones, ones / 0.07, 0.63 * ones,
        0.56 * ones, 1.05 * ones, 1 / 3, 1 / 3, 1 / 3, 0.5, 1.0,
    )  # fmt: skip


def _steps_per_second(kernel, args: tuple) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        kernel.algorithm2(*args)
        times.append(time.perf_counter() - started)
    return args[0].size / float(np.median(times))


def run() -> dict:
    rng = np.random.default_rng(7)
    figures: dict = {"links": N_LINKS}
    pure = _steps_per_second(_anomaly_py, _inputs(rng, PURE_BLOCKS))
    figures["python_twin_block_steps_per_s"] = round(pure)
    try:
        from qesif_core.qids import _anomaly
    except ImportError:
        figures["cython_block_steps_per_s"] = None
        figures["note"] = "compiled twin not built (make build)"
        return figures
    compiled = _steps_per_second(_anomaly, _inputs(rng, COMPILED_BLOCKS))
    large = _steps_per_second(_anomaly, _inputs(rng, LARGE_BLOCKS))
    small = _inputs(rng, PURE_BLOCKS)
    same = all(
        np.array_equal(a, b, equal_nan=True)
        for a, b in zip(_anomaly.algorithm2(*small), _anomaly_py.algorithm2(*small), strict=True)
    )
    figures["cython_block_steps_per_s"] = round(compiled)
    figures["cython_over_python"] = round(compiled / pure, 1)
    figures["cython_block_steps_per_s_100k_blocks"] = round(large)
    figures["twins_identical"] = same
    return figures


if __name__ == "__main__":
    print(run())
