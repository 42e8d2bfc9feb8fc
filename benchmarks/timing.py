"""Timing helper shared by the benchmarks (``benchmarks/run.py`` puts this folder on ``sys.path``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(operation: Callable[[], object], repeats: int, batch: int = 1) -> float:
    """Median over ``repeats`` of the wall time per call, each repeat timing ``batch`` calls."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(batch):
            operation()
        times.append((time.perf_counter() - started) / batch)
    return statistics.median(times)
