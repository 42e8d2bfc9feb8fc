from dataclasses import replace

import numpy as np
import pytest

from qesif_core.network.ieee802154 import Ieee802154
from qesif_core.network.model import (
    COAP,
    MQTT,
    NetworkParams,
    QueueState,
    SessionCosts,
    busy_devices,
    simulate_round,
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


def _one_device(times, protocol, params, seed, duration=1.0, rounds=1):
    """Rounds of one device sending at ``times`` (seconds from each round's start); results per round."""
    gateway = np.zeros(1, dtype=np.int64)
    state = QueueState.idle(1, params)
    rng = np.random.default_rng(seed)
    out = []
    for r in range(rounds):
        at = r * duration + np.asarray(times, dtype=float)
        traffic = round_traffic(np.zeros(at.size, dtype=np.int64), at, np.full(at.size, 40))
        out.append(
            simulate_round(
                params, gateway, np.array([protocol]), traffic, _costs(1), duration, state, rng, r * duration
            )
        )
    return out


def test_a_lone_coap_message_takes_the_sum_of_its_path(rng):
    gateway, protocol = np.zeros(1, dtype=np.int64), np.array([COAP])
    traffic = round_traffic(np.array([0, 0]), np.array([0.1, 3.0]), np.array([20, 20]))
    state = QueueState.idle(1, PARAMS)
    result = simulate_round(PARAMS, gateway, protocol, traffic, _costs(1), 5.0, state, rng)
    assert result.messages_delivered == 2
    acc, sizes = PARAMS.access, PARAMS.sizes
    packet = 20 + sizes.coap_request_overhead + 28 + acc.ip_udp_bytes
    airtime = (packet + acc.mac_overhead_bytes + acc.phy_overhead_bytes) * 8 / acc.bitrate_bps
    channel = acc.cca_s + 2 * acc.turnaround_s + airtime + acc.ack_airtime_s()
    cpu = PARAMS.device_stack_cycles / PARAMS.power.cpu_hz + 3e-5 + 4e-5 * 3  # 43 bytes = 3 AES blocks
    floor = cpu + channel + PARAMS.gateway_forward_cycles / PARAMS.gateway_hz + PARAMS.broker_s
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
        device, time = poisson_arrivals(devices, 0.0, 4.0, 0.1, rng)
        traffic_sessions = np.unique(device).size
        return _run(topology, device, time, 20, _costs(traffic_sessions), rng, duration=4.0)

    light, heavy = per_pan(2), per_pan(14)
    assert np.median(heavy.latency_s) > np.median(light.latency_s)
    assert heavy.mac_drops > light.mac_drops
    assert heavy.retransmissions > light.retransmissions


def test_same_seed_same_round_and_energy_is_plausible():
    def once(seed):
        rng = np.random.default_rng(seed)
        topology = build_topology(30, 3, 0.5, rng)
        device, time = poisson_arrivals(30, 0.0, 1.0, 0.1, rng)
        return _run(topology, device, time, 40, _costs(np.unique(device).size, 32, 32, 0.01), rng)

    a, b = once(11), once(11)
    assert np.array_equal(a.latency_s, b.latency_s)
    assert np.array_equal(a.session_energy_j, b.session_energy_j)
    sleep_floor = PARAMS.power.supply_v * (PARAMS.power.radio_sleep_a + PARAMS.power.mcu_sleep_a)
    assert (a.session_energy_j > sleep_floor).all()
    assert (a.session_energy_j < 1.0).all()  # far below a radio on for a whole second at 3 V


@pytest.mark.parametrize("protocol", [COAP, MQTT])
def test_a_confirmable_message_waits_for_the_ack_of_the_one_before(protocol):
    burst = [0.1, 0.1001, 0.1002]
    confirmed = _one_device(burst, protocol, PARAMS, 1)[0]
    unconfirmed = _one_device(burst, protocol, replace(PARAMS, mqtt_qos=0, coap_confirmable=False), 1)[0]
    assert confirmed.messages_delivered == unconfirmed.messages_delivered == 3
    # Each later message waited for its predecessor's whole exchange (data, gateway path, ACK frame), not
    # only for its frame: the gaps between deliveries are longer with ACKs.
    gaps_confirmed = np.diff(np.sort(confirmed.latency_s + burst))
    gaps_unconfirmed = np.diff(np.sort(unconfirmed.latency_s + burst))
    ack_airtime = PARAMS.access.ack_airtime_s() + 10 * 8 / PARAMS.access.bitrate_bps
    assert (gaps_confirmed > gaps_unconfirmed + ack_airtime).all()
    assert confirmed.frames == unconfirmed.frames + 3  # one ACK frame per message, nothing else


def test_lost_exchanges_are_sent_again_on_the_channel_and_carried_into_the_next_round():
    lossy = NetworkParams(access=Ieee802154(bit_error_rate=1e-3))
    results = _one_device(np.linspace(0.05, 0.95, 10), COAP, lossy, 8, rounds=4)
    assert sum(r.retransmissions for r in results) > 0
    assert sum(r.in_flight for r in results[:-1]) > 0  # timers of 2-16 s outlast a round of 1 s
    # A message retried after ACK_TIMEOUT (2 s at least) is delivered in a later round than it was sent in.
    latencies = np.concatenate([r.latency_s for r in results])
    assert latencies.max() >= 2.0
    sent = 40
    accounted = (
        sum(r.messages_delivered + r.messages_lost + r.queue_drops for r in results) + results[-1].in_flight
    )
    assert accounted == sent


def test_non_confirmable_messages_lost_on_the_link_are_lost_for_good():
    lossy = replace(NetworkParams(access=Ieee802154(bit_error_rate=2e-3)), coap_confirmable=False)
    result = _one_device(np.linspace(0.05, 0.95, 40), COAP, lossy, 8)[0]
    assert result.retransmissions == 0
    assert result.messages_lost > 0
    assert result.messages_delivered + result.messages_lost + result.in_flight == 40


def test_a_full_device_queue_drops_new_messages():
    # 60 messages in 60 ms from one device: far more than the channel carries meanwhile.
    small = replace(PARAMS, device_queue_limit=4)
    result = _one_device(np.linspace(0.0, 0.06, 60) + 0.1, COAP, small, 3)[0]
    assert result.queue_drops > 0
    assert result.messages_delivered + result.queue_drops + result.in_flight == 60


def _rounds_with_starts(choose_starts, rounds=4):
    """Loaded rounds (many devices busy at boundaries); ``choose_starts(busy, traffic)`` -> session_starts."""
    rng = np.random.default_rng(11)
    params = NetworkParams()
    topology = build_topology(30, 3, 0.5, rng)
    state = QueueState.idle(3, params)
    out = []
    for r in range(rounds):
        device, time = poisson_arrivals(30, float(r), 1.0, 0.05, rng)
        traffic = round_traffic(device, time, np.full(device.size, 60))
        busy = busy_devices(state, 30)
        starts = choose_starts(busy, traffic, r)
        costs = _costs(traffic.session_device.size, up=64, down=64, device_s=0.01)
        result = simulate_round(
            params,
            topology.gateway,
            topology.protocol,
            traffic,
            costs,
            1.0,
            state,
            rng,
            float(r),
            session_starts=starts,
        )
        out.append((busy, result))
    return out


def test_explicit_session_starts_of_the_free_devices_equal_the_default_rule():
    default = _rounds_with_starts(lambda busy, traffic, r: None)
    explicit = _rounds_with_starts(lambda busy, traffic, r: ~busy[traffic.session_device])
    assert any(busy.any() for busy, _ in default)
    for (_, a), (_, b) in zip(default, explicit, strict=True):
        assert np.array_equal(a.latency_s, b.latency_s)
        assert np.array_equal(a.session_energy_j, b.session_energy_j)
        assert np.array_equal(a.session_ready_s, b.session_ready_s, equal_nan=True)
        assert (a.frames, a.retransmissions, a.queue_drops) == (b.frames, b.retransmissions, b.queue_drops)


def test_kept_sessions_send_without_a_handshake():
    def first_round_only(busy, traffic, r):
        return ~busy[traffic.session_device] & (r == 0)

    renewed = _rounds_with_starts(lambda busy, traffic, r: None)
    kept = _rounds_with_starts(first_round_only)
    assert np.isnan(kept[1][1].session_ready_s).all()  # no session starts after round 0
    assert np.isfinite(renewed[1][1].session_ready_s).any()
    assert sum(r.frames for _, r in kept[1:]) < sum(r.frames for _, r in renewed[1:])


def test_a_busy_device_cannot_start_a_session():
    def every_session(busy, traffic, r):
        if r == 1:
            assert busy.any()
        return np.ones(traffic.session_device.size, dtype=bool)

    with pytest.raises(ValueError, match="session_starts"):
        _rounds_with_starts(every_session, rounds=2)
