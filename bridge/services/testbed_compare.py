"""The testbed's measured figures beside the built-in backend's prediction for the matching scenario.

The simulated scenario has the testbed's devices (MQTT and CoAP, one gateway: the one broker), its
dataset, channel and QKD block size, its Q-IDS settings, and its offered load: each device's mean time
between messages is the one the testbed measured (``testbed/interarrival_ms``, median over its runs),
with one simulated round per key epoch and a session per round. Loopback has no radio; Wi-Fi access
(``network.access: wifi``) is the closest built-in match. Nothing is fitted: both sides run as they are
and are printed together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bridge.cosim.orchestrator import run_once
from bridge.scenario import expand, parse_scenario
from bridge.services.testbed import TestbedConfig, run_testbed
from qesif_core.errors import UserInputError

SIMULATED_SCHEME = "QESIF"
#: (label, testbed scalar, built-in scalar); None: the side does not have that figure.
METRICS: tuple[tuple[str, str | None, str | None], ...] = (
    ("latency median (ms)", "network/latency_median_ms", "network/latency_median_ms"),
    ("latency p95 (ms)", "network/latency_p95_ms", "network/latency_p95_ms"),
    ("latency mean (ms)", "network/latency_mean_ms", "network/latency_mean_ms"),
    ("delivered messages/s", "network/messages_per_s", "derived/messages_per_s"),
    ("goodput (kbit/s)", "network/goodput_kbps", "network/goodput_kbps"),
    ("messages sent", "network/messages_sent", "network/messages_sent"),
    ("messages delivered", "network/messages_delivered", "network/messages_delivered"),
    ("handshake median (ms)", "testbed/handshake_median_ms", None),
    ("rekey median (ms)", "testbed/rekey_median_ms", None),
    ("QKD keys used", "keys/keys_used", "keys/keys_used"),
    ("mode switches", "hybrid/mode_switches", "hybrid/mode_switches"),
    ("CoAP latency median (ms)", "coap/latency_median_ms", None),
)


def _scalars(table: pd.DataFrame) -> dict[str, float]:
    rows = table[table["type"] == "scalar"]
    return {f"{m}/{n}": float(v) for m, n, v in zip(rows["module"], rows["name"], rows["value"], strict=True)}


def simulated_scenario(config: TestbedConfig, interarrival_s: float, seeds: list[int]) -> dict[str, Any]:
    """The scenario mapping (``bridge.scenario`` schema) that matches ``config`` at the measured load."""
    if config.eavesdrop is not None:
        raise UserInputError(
            "eavesdrop: the built-in backend keeps one channel for a whole run; compare a testbed scenario "
            "without an eavesdrop interval"
        )
    if not interarrival_s > 0:
        raise UserInputError(f"measured interarrival {interarrival_s!r} s is not positive")
    devices = config.devices + config.coap_devices
    qids = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.qids.items()}
    qids.setdefault("calibration_blocks", 8)
    return {
        "name": "testbed-compare",
        "seeds": seeds,
        "rounds": config.epochs,
        "round_duration_s": config.messages_per_device / config.epochs * interarrival_s,
        "datasets": [
            {
                "name": config.dataset,
                "path": config.dataset_path,
                "max_rows": max(3000, 4 * devices * config.messages_per_device),
            }
        ],
        "channels": [config.channel],
        "schemes": [SIMULATED_SCHEME],
        "network": {
            "devices": devices,
            "gateways": 1,
            "mean_interarrival_s": interarrival_s,
            "mqtt_fraction": config.devices / devices,
            "access": "wifi",
            "mqtt_qos": 1,
            "coap_confirmable": True,
        },
        "qkd": {"pulses_per_block": config.pulses_per_block},
        "qids": qids,
        "keys": {"session_rounds": 1},  # a new session (and key) per round, as the testbed rekeys per epoch
    }


def compare(config: TestbedConfig, runs: int = 3, workdir: Path | None = None) -> pd.DataFrame:
    """Run the testbed ``runs`` times (seeds seed, seed+1, ...) and the built-in backend on the matching
    scenario with the same seeds; one row per metric: medians and ranges of both sides."""
    if not 1 <= runs <= 20:
        raise UserInputError(f"--runs must be in [1, 20], got {runs}")
    seeds = [config.seed + i for i in range(runs)]
    measured = [
        _scalars(run_testbed(dataclasses.replace(config, seed=seed), workdir=workdir)) for seed in seeds
    ]
    interarrival_s = float(np.median([m["testbed/interarrival_ms"] for m in measured])) / 1e3
    scenario = parse_scenario(simulated_scenario(config, interarrival_s, seeds), "testbed compare")
    predicted = []
    for run in expand(scenario, "testbed compare"):
        values = _scalars(run_once(run.spec))
        duration = run.spec["rounds"] * run.spec["round_duration_s"]
        values["derived/messages_per_s"] = values["network/messages_delivered"] / duration
        predicted.append(values)
    rows = []
    for label, ours, theirs in METRICS:
        if ours is not None and ours not in measured[0]:
            continue
        rows.append(
            {"metric": label, **_summary("testbed", measured, ours), **_summary("builtin", predicted, theirs)}
        )
    rows.append(
        {
            "metric": "offered interarrival per device (ms)",
            **_summary("testbed", measured, "testbed/interarrival_ms"),
            **_summary("builtin", [{"x": 1e3 * interarrival_s}] * len(predicted), "x"),
        }
    )
    return pd.DataFrame(rows)


def _summary(side: str, runs: list[Mapping[str, float]], name: str | None) -> dict[str, float]:
    values = np.array([r.get(name, np.nan) for r in runs] if name else [np.nan], dtype=float)
    finite = values[np.isfinite(values)]
    return {
        f"{side}_median": float(np.median(finite)) if finite.size else np.nan,
        f"{side}_min": float(finite.min()) if finite.size else np.nan,
        f"{side}_max": float(finite.max()) if finite.size else np.nan,
    }


def format_comparison(table: pd.DataFrame) -> str:
    """The comparison as aligned text: median [min-max] of each side."""

    def cell(row: Any, side: str) -> str:
        median = row[f"{side}_median"]
        if not np.isfinite(median):
            return "-"
        return f"{median:.4g} [{row[f'{side}_min']:.4g}-{row[f'{side}_max']:.4g}]"

    lines = [("metric", "testbed (measured)", "built-in (predicted, Wi-Fi)")]
    lines += [(row["metric"], cell(row, "testbed"), cell(row, "builtin")) for _, row in table.iterrows()]
    widths = [max(len(line[i]) for line in lines) for i in range(3)]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)) for line in lines
    )
