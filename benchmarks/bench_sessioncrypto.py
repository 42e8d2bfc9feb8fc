"""Run-time overhead of the real crypto in a run (``bridge.cosim.sessioncrypto``).

A run performs each started session's real key establishment and seals / opens every delivered message
with AES-GCM. Baseline: the same run with both replaced by no-ops, measured in the same process, the two
variants alternating (median of 3 each):

- ``smoke_*``: the first run of ``scenarios/smoke.yaml``;
- ``paper_*``: the first run of ``scenarios/paper.yaml`` (Table 2: 100 devices, 10 gateways, 100 rounds,
  ``keys.session_rounds`` 60).

``*_overhead`` = median with crypto / median without - 1 (target: <= 0.30 on a paper run).
Run as ``python benchmarks/bench_sessioncrypto.py`` or ``python benchmarks/run.py sessioncrypto``.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
REPEATS = 3


@contextlib.contextmanager
def _without_crypto() -> Iterator[None]:
    """Replace the real handshakes and records by no-ops (the baseline: the cost model alone)."""
    from bridge.cosim.sessioncrypto import SessionCrypto

    saved = SessionCrypto.start_session, SessionCrypto.deliver_round
    SessionCrypto.start_session = lambda self, *args, **kwargs: ""  # type: ignore[method-assign]
    SessionCrypto.deliver_round = lambda self, *args, **kwargs: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        SessionCrypto.start_session, SessionCrypto.deliver_round = saved


def _time(spec: dict[str, Any]) -> tuple[float, dict[str, float]]:
    from bridge.cosim.orchestrator import run_once

    started = time.perf_counter()
    table = run_once(spec)
    elapsed = time.perf_counter() - started
    scalars = table[table["type"] == "scalar"]
    return elapsed, dict(zip(scalars["module"] + "/" + scalars["name"], scalars["value"], strict=True))


def measure(spec: dict[str, Any], prefix: str) -> dict[str, float]:
    with_crypto, without = [], []
    scalars: dict[str, float] = {}
    for _ in range(REPEATS):
        elapsed, scalars = _time(spec)
        with_crypto.append(elapsed)
        with _without_crypto():
            without.append(_time(spec)[0])
    on, off = statistics.median(with_crypto), statistics.median(without)
    return {
        f"{prefix}_with_crypto_s": round(on, 3),
        f"{prefix}_without_crypto_s": round(off, 3),
        f"{prefix}_overhead": round(on / off - 1.0, 3),
        f"{prefix}_handshakes": scalars["crypto/handshakes"],
        f"{prefix}_records": scalars["crypto/records_sealed"],
    }


def run() -> dict[str, float]:
    from bridge.scenario import load_runs

    figures: dict[str, float] = {}
    for name in ("smoke", "paper"):
        _, runs = load_runs(REPO / "scenarios" / f"{name}.yaml")
        figures.update(measure(runs[0].spec, name))
    return figures


if __name__ == "__main__":
    print(json.dumps(run()))
