"""The OMNeT++/INET backend against the built-in one on the same run (smoke.yaml, clean channel, QESIF):
wall time of each (median of 3) and their ratio, and the network figures of both side by side.
Skipped (with the reason) where the QESIF model is not built (`make omnet`, docs/simulators.md)."""

from __future__ import annotations

import time

from bridge.backends import omnetpp
from bridge.cosim.orchestrator import run_once
from bridge.scenario import load_runs

REPEATS = 3
FIGURES = (
    "messages_sent",
    "messages_delivered",
    "latency_median_ms",
    "latency_p95_ms",
    "frames",
    "retransmissions",
    "energy_per_session_mJ",
    "goodput_kbps",
)


def _figures(table) -> dict[str, float]:
    scalars = table[(table["type"] == "scalar") & (table["module"] == "network")]
    values = dict(zip(scalars["name"], scalars["value"], strict=True))
    return {name: round(float(values[name]), 4) for name in FIGURES if name in values}


def run() -> dict:
    if omnetpp.find_model() is None:
        return {"skipped": "the QESIF OMNeT++ model is not built (make omnet)"}
    _, runs = load_runs("scenarios/smoke.yaml")
    spec = next(r.spec for r in runs if r.spec["channel"]["name"] == "clean" and r.spec["scheme"] == "QESIF")
    result: dict[str, object] = {}
    for backend in ("builtin", "omnetpp"):
        times, table = [], None
        for _ in range(REPEATS):
            started = time.perf_counter()
            table = run_once({**spec, "backend": backend})
            times.append(time.perf_counter() - started)
        result[f"{backend}_wall_s_median"] = round(sorted(times)[REPEATS // 2], 3)
        result[f"{backend}_network"] = _figures(table)
    result["omnetpp_to_builtin_wall_ratio"] = round(
        result["omnetpp_wall_s_median"] / result["builtin_wall_s_median"], 2
    )
    return result
