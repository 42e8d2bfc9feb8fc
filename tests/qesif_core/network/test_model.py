import numpy as np
import pytest

from qesif_core.network.ieee802154 import Ieee802154
from qesif_core.network.model import (
    COAP,
    MQTT,
    NetworkParams,
    QueueState,
    SessionCosts,
    simulate_round,
    union_length,
)
from qesif_core.network.traffic import build_topology, poisson_arrivals, round_traffic

PARAMS = NetworkParams(access=Ieee802154(bit_error_rate=0.0))


def _costs(n, up=0, down=0, device_s=0.0, extra=28):
    full = lambda v: np.full(n, float(v))  # noqa: E731
    return SessionCosts(
        handshake_up_bytes=np.full(n, up),
        handshake_down_bytes=np.full(n, down),
        handshake_device_s=full(device_s),
        handshake_gateway_s=full(1e-4),
        extra_bytes=np.full(n, extra),
        cipher_device_s_fixed=full(3e-5),
        cipher_device_s_per_block=full(4e-5),
        cipher_gateway_s_fixed=full(1e-6),
        cipher_gateway_s_per_byte=full(1e-9),
    )


def _run(topology, device, time, payload, costs, rng, duration=1.0, params=PARAMS):
    traffic = round_traffic(device, time, np.full(device.size, payload))
    state = QueueState.idle(topology.n_gateways, params)
    return simulate_round(params, topology.gateway, topology.protocol, traffic, costs, duration, state, rng)


def test_a_lone_coap_message_takes_the_sum_of_its_path(rng):
    gateway, protocol = np.zeros(1, dtype=np.int64), np.array([COAP])
    traffic = round_traffic(np.array([0, 0]), np.array([0.1, 3.0]), np.array([20, 20]))
    state = QueueState.idle(1, PARAMS)
    result = simulate_round(PARAMS, gateway, protocol, traffic, _costs(1), 5.0, state, rng)
    acc, sizes = PARAMS.access, PARAMS.sizes
    packet = 20 + sizes.coap_request_overhead + 28 + sizes.udp_compressed + sizes.ipv6_compressed
    airtime = (packet + acc.mac_overhead_bytes + acc.phy_overhead_bytes) * 8 / acc.bitrate_bps
    channel = acc.cca_s + 2 * acc.turnaround_s + airtime + acc.ack_airtime_s()
    cpu = PARAMS.device_stack_cycles / PARAMS.power.cpu_hz + 3e-5 + 4e-5 * 3  # 43 bytes = 3 AES blocks
    floor = cpu + channel + PARAMS.gateway_forward_cycles / PARAMS.gateway_hz + PARAMS.broker_s
    assert result.delivered.all()
    assert (result.latency_s > floor).all()
    assert (result.latency_s < floor + 7 * acc.unit_backoff_s + 1e-3).all()  # + first backoff + backhaul


def test_a_handshake_delays_the_first_message_by_its_flights_and_cpu(rng):
    topology = build_topology(1, 1, 0.0, rng)
    device, time = np.array([0]), np.array([0.1])
    plain = _run(topology, device, time, 20, _costs(1), np.random.default_rng(1))
    shaken = _run(
        topology, device, time, 20, _costs(1, up=32, down=32, device_s=0.2), np.random.default_rng(1)
    )
    extra = shaken.latency_s[0] - plain.latency_s[0]
    assert 0.2 + 2 * 64 * 8 / 250e3 < extra < 0.25  # CPU + two flights of >= 64 bytes on air, no queue


def test_mqtt_sessions_connect_before_publishing(rng):
    coap = build_topology(1, 1, 0.0, rng)
    mqtt = build_topology(1, 1, 1.0, rng)
    assert mqtt.protocol[0] == MQTT
    device, time = np.array([0]), np.array([0.1])
    a = _run(coap, device, time, 20, _costs(1), np.random.default_rng(2))
    b = _run(mqtt, device, time, 20, _costs(1), np.random.default_rng(2))
    assert b.session_ready_s[0] > a.session_ready_s[0] + 2e-3  # a CONNECT/CONNACK exchange first
    assert b.latency_s[0] > a.latency_s[0]


def test_more_devices_per_pan_mean_more_delay_and_access_failures():
    def per_pan(devices):
        rng = np.random.default_rng(5)
        topology = build_topology(devices, 1, 0.5, rng)
        device, time = poisson_arrivals(devices, 0.0, 2.0, 0.1, rng)
        traffic_sessions = np.unique(device).size
        return _run(topology, device, time, 20, _costs(traffic_sessions), rng, duration=2.0)

    light, heavy = per_pan(2), per_pan(14)
    assert np.nanmedian(heavy.latency_s) > np.nanmedian(light.latency_s)
    assert heavy.mac_drops > light.mac_drops
    assert heavy.retransmissions.sum() > light.retransmissions.sum()


def test_same_seed_same_round_and_energy_is_plausible():
    def once(seed):
        rng = np.random.default_rng(seed)
        topology = build_topology(30, 3, 0.5, rng)
        device, time = poisson_arrivals(30, 0.0, 1.0, 0.1, rng)
        return _run(topology, device, time, 40, _costs(np.unique(device).size, 32, 32, 0.01), rng)

    a, b = once(11), once(11)
    assert np.array_equal(a.latency_s, b.latency_s, equal_nan=True)
    assert np.array_equal(a.session_energy_j, b.session_energy_j)
    sleep_floor = PARAMS.power.supply_v * (PARAMS.power.radio_sleep_a + PARAMS.power.mcu_sleep_a)
    assert (a.session_energy_j > sleep_floor).all()
    assert (a.session_energy_j < 1.0).all()  # far below a radio on for a whole second at 3 V


def test_lost_exchanges_are_retried_after_coap_timeouts():
    lossy = NetworkParams(access=Ieee802154(bit_error_rate=1.5e-3))
    gateway, protocol = np.zeros(1, dtype=np.int64), np.array([COAP])
    times = np.linspace(0.05, 0.95, 40)
    traffic = round_traffic(np.zeros(40, dtype=np.int64), times, np.full(40, 40))
    result = simulate_round(
        lossy, gateway, protocol, traffic, _costs(1), 1.0, QueueState.idle(1, lossy), np.random.default_rng(8)
    )
    retried = result.retransmissions > 0
    assert retried.any() and not retried.all()
    first_try = result.delivered & ~retried
    assert (result.latency_s[first_try] < 0.5).all()
    # A retried message waited at least ACK_TIMEOUT (2 s) unless only its ACK was lost.
    assert (result.latency_s[result.delivered & retried] > 0).all()
    assert np.nanmax(result.latency_s) >= 2.0


def test_union_length_merges_overlapping_windows():
    group = np.array([0, 0, 0, 1, 1])
    start = np.array([0.0, 0.5, 3.0, 1.0, 1.0])
    end = np.array([1.0, 2.0, 4.0, 2.0, 1.5])
    assert union_length(group, start, end, 3).tolist() == pytest.approx([3.0, 1.0, 0.0])
