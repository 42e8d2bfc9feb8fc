"""A loaded network over a few rounds, for tests that compare runs of it."""

import numpy as np
import pytest

from qesif_core.network.model import NetworkParams, QueueState, SessionCosts, simulate_round
from qesif_core.network.traffic import build_topology, poisson_arrivals, round_traffic


def _loaded_rounds(access, *, seed, devices, gateways, payload, handshake_bytes, rounds=3):
    """``rounds`` rounds of 1 s: every device sends at 10 messages/s, every free device starts a session with
    flights of ``handshake_bytes`` each way; the round results."""
    rng = np.random.default_rng(seed)
    params = NetworkParams(access=access)
    topology = build_topology(devices, gateways, 0.5, rng)
    state = QueueState.idle(gateways, params)
    out = []
    for r in range(rounds):
        device, time = poisson_arrivals(devices, float(r), 1.0, 0.1, rng)
        traffic = round_traffic(device, time, np.full(device.size, payload))
        n = traffic.session_device.size
        full = lambda v, n=n: np.full(n, float(v))  # noqa: E731
        costs = SessionCosts(
            np.full(n, handshake_bytes), np.full(n, handshake_bytes), full(0.01), full(1e-4), np.full(n, 28),
            full(3e-5), full(4e-5), full(1e-6), full(1e-9),
        )  # fmt: skip
        out.append(
            simulate_round(params, topology.gateway, topology.protocol, traffic, costs, 1.0, state, rng, r)
        )
    return out


@pytest.fixture
def loaded_rounds():
    return _loaded_rounds
