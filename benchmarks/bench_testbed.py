"""MQTT testbed (real Mosquitto, TLS 1.2 PSK keyed from the QKD 014 KME, paho-mqtt clients at QoS 1):
medians over three seeds of the figures one run measures, in back-to-back bursts and paced at 5 ms per
round of publishes. Skipped (with the reason) where mosquitto or the Python clients are missing."""

from __future__ import annotations

import numpy as np

from bridge.services.testbed import TestbedConfig, missing_requirements, run_testbed

FIGURES = (
    "network/latency_median_ms",
    "network/latency_p95_ms",
    "network/messages_per_s",
    "network/messages_lost",
    "testbed/handshake_median_ms",
    "testbed/rekey_median_ms",
)
MODES = {
    "burst": {"devices": 5, "messages_per_device": 400, "rekeys": 3},
    "paced_5ms": {"devices": 5, "messages_per_device": 200, "rekeys": 3, "publish_interval_s": 0.005},
}


def run() -> dict:
    missing = missing_requirements()
    if missing:
        return {"skipped": "needs " + ", ".join(missing)}
    out: dict = {}
    for mode, values in MODES.items():
        runs = []
        for seed in (1, 2, 3):
            table = run_testbed(TestbedConfig.from_mapping({**values, "seed": seed}))
            scalars = table[table["type"] == "scalar"]
            runs.append(
                {
                    f"{m}/{n}": v
                    for m, n, v in zip(scalars["module"], scalars["name"], scalars["value"], strict=True)
                }
            )
        for figure in FIGURES:
            out[f"{mode}_{figure.split('/')[1]}"] = round(float(np.median([r[figure] for r in runs])), 3)
    return out
