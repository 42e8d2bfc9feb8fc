"""Testbed (real Mosquitto, TLS 1.2 PSK keyed from the QKD 014 KME, paho-mqtt clients at QoS 1; CoAP over
OSCORE): medians over three seeds of the figures one run measures, in back-to-back bursts, paced at 5 ms
per round of publishes, with an eavesdropped interval on two devices' links (classical fallback and
back), and with CoAP devices. Skipped (with the reason) where mosquitto or the Python clients are
missing."""

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
FALLBACK_FIGURES = (
    "hybrid/mode_switches",
    "hybrid/messages_classical",
    "hybrid/latency_median_classical_ms",
    "testbed/classical_handshake_median_ms",
    "testbed/republished",
)
COAP_FIGURES = ("coap/latency_median_ms", "coap/latency_p95_ms", "coap/messages_per_s", "coap/messages_lost")
MODES = {
    "burst": ({"devices": 5, "messages_per_device": 400, "rekeys": 3}, ()),
    "paced_5ms": ({"devices": 5, "messages_per_device": 200, "rekeys": 3, "publish_interval_s": 0.005}, ()),
    "fallback": (
        {
            "devices": 5,
            "messages_per_device": 400,
            "rekeys": 7,
            "pulses_per_block": 10**6,
            "eavesdrop": {"start_epoch": 2, "end_epoch": 4, "devices": [0, 1]},
            "qids": {"key_drop_window": 2},
        },
        FALLBACK_FIGURES,
    ),
    "coap": (
        {
            "devices": 1,
            "coap_devices": 5,
            "messages_per_device": 200,
            "rekeys": 3,
            "publish_interval_s": 0.005,
        },
        COAP_FIGURES,
    ),
}


def run() -> dict:
    missing = missing_requirements()
    if missing:
        return {"skipped": "needs " + ", ".join(missing)}
    out: dict = {}
    for mode, (values, extra) in MODES.items():
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
        for figure in (*FIGURES, *extra):
            out[f"{mode}_{figure.split('/')[1]}"] = round(float(np.median([r[figure] for r in runs])), 3)
    return out
