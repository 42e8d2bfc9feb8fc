import numpy as np
import pytest

from qesif_core.network.model import MQTT
from qesif_core.network.traffic import RecordReplay, build_topology, poisson_arrivals, round_traffic


def test_topology_spreads_devices_over_domains_gateways_and_protocols(rng):
    topology = build_topology(100, 10, 0.5, rng)
    assert np.bincount(topology.gateway).tolist() == [10] * 10
    assert np.bincount(topology.domain).tolist() == [34, 33, 33]
    assert (topology.protocol == MQTT).sum() == 50


def test_poisson_arrivals_have_the_table2_rate_and_are_sorted(rng):
    device, time = poisson_arrivals(200, 10.0, 5.0, 0.1, rng)
    assert device.size == pytest.approx(200 * 50, rel=0.03)
    assert (time >= 10.0).all() and (time < 15.0).all()
    assert np.all(np.diff(device) >= 0)
    same = device[1:] == device[:-1]
    assert np.all(np.diff(time)[same] >= 0)
    gaps = np.diff(time)[same]
    assert gaps.mean() == pytest.approx(0.1, rel=0.05)  # exponential inter-arrival, mean 100 ms


def test_replay_keeps_one_source_per_device_in_time_order_across_rounds():
    source = np.array(["a", "b", "a", "a", "b"])
    ts = np.array([3.0, 1.0, 1.0, 2.0, 0.5])
    replay = RecordReplay(source, ts, 3)
    first = replay.take(np.array([0, 0, 1]))
    second = replay.take(np.array([0, 0, 0, 2]))
    assert first.tolist() == [2, 3, 4]  # device 0 replays source "a" by time, device 1 source "b"
    # Device 0 continues (0) and wraps around (2, 3); device 2 has no source of its own and replays the
    # whole time-ordered table [4, 1, 2, 3, 0] from its offset 2 * 5 // 3 = 3.
    assert second.tolist() == [0, 2, 3, 3]
    traffic = round_traffic(np.array([0, 0, 2]), np.array([0.1, 0.2, 0.3]), np.array([10, 20, 30]))
    assert traffic.session_device.tolist() == [0, 2] and traffic.session.tolist() == [0, 0, 1]
