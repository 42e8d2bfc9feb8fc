"""A small resolved run spec (what ``bridge.scenario`` produces) for orchestrator tests: seconds to run."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.scenario import resolve_channel


def make_spec(seed: int = 3, rounds: int = 3, channel: str = "clean", scheme: str = "QESIF", **network: Any):
    return {
        "seed": seed,
        "rounds": rounds,
        "round_duration_s": 0.5,
        "backend": "builtin",
        "dataset": {"name": "ton_iot", "path": None, "max_rows": 1500},
        "channel": resolve_channel("<test>", "channel", {"name": channel}),
        "scheme": scheme,
        "network": {
            "devices": 20,
            "gateways": 2,
            "mean_interarrival_s": 0.1,
            "mqtt_fraction": 0.5,
            "access": "802.15.4",
            **network,
        },
        "qkd": {"protocol": "bb84", "pulses_per_block": 20000},
        "qids": {"calibration_blocks": 5},
        "keys": {},
        "costs": {},
    }


@pytest.fixture
def small_spec():
    return make_spec
