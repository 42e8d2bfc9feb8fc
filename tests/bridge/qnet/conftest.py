"""A small two-zone QKD network scenario for the network tests (a mapping, as a YAML file would give)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

NODES = [
    {"name": "cc", "zone": "centre", "role": "control_centre"},
    {"name": "r1", "zone": "north", "role": "relay"},
    {"name": "r2", "zone": "north", "role": "relay"},
    {"name": "gw1", "zone": "north", "role": "gateway"},
    {"name": "gw2", "zone": "south", "role": "gateway"},
]
LINKS = [
    {"a": "gw1", "b": "r1", "distance_km": 3},
    {"a": "r1", "b": "cc", "distance_km": 6, "eve": {"start_s": 40, "end_s": 80}},
    {"a": "gw1", "b": "r2", "distance_km": 4},
    {"a": "r2", "b": "cc", "distance_km": 7},
    {"a": "gw2", "b": "cc", "distance_km": 5},
]


def network_scenario(**changes: Any) -> dict[str, Any]:
    """12 rounds of 10 s; gw1 reaches cc through r1 (attacked from 40 s to 80 s) or through r2."""
    data: dict[str, Any] = {
        "name": "qnet-test",
        "seeds": [3],
        "rounds": 12,
        "round_duration_s": 10.0,
        "datasets": ["ton_iot"],
        "channels": ["clean"],
        "schemes": ["QESIF"],
        "network": {"devices": 20, "gateways": 2, "mean_interarrival_s": 1.0},
        "qkd": {"pulses_per_block": 1_000_000},
        "qids": {"calibration_blocks": 4},
        "keys": {"session_rounds": 2},
        "quantum_network": {
            "nodes": copy.deepcopy(NODES),
            "links": copy.deepcopy(LINKS),
            "routing": {"policies": ["adaptive", "static"]},
            "monitor": {"source": "gw1", "target": "cc"},
        },
    }
    data.update(changes)
    return data


@pytest.fixture
def scenario() -> dict[str, Any]:
    return network_scenario()
