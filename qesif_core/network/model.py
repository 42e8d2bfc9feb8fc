"""One round of the smart-city IoT network: sessions, MQTT/CoAP, 802.15.4 access, gateways, backhaul.

Path of an uplink message: device CPU (protocol stack and AEAD) -> its PAN's shared 802.15.4 channel (one PAN
per gateway, one FIFO server per PAN carrying uplink and downlink frames) -> gateway CPU (one FIFO core for
the per-message path: decrypt, re-protect towards the control centre, flow features) -> the gateway's IP
backhaul link (FIFO) -> the control centre's ingress link (FIFO) -> MQTT broker / CoAP server (FIFO, one node
per ``gateways_per_broker`` gateways) = delivery. The acknowledgement (MQTT QoS 1 PUBACK or CoAP piggybacked
ACK) comes back over backhaul and the PAN. On the 802.15.4 side MQTT is MQTT-SN over UDP (the MQTT variant
made for such links: the same PUBLISH/PUBACK QoS 1 and CONNECT/CONNACK exchanges, short topic ids); the
gateway relays it as MQTT over the backhaul.

A session (one per device and round) starts at the device's first message: the security handshake of the
scheme's plan (a device->gateway flight and/or a gateway->device flight, with the CPU time of each side), then
for MQTT a CONNECT/CONNACK with the broker. The device's messages wait for the session to be ready.

Dependent times (a flight waits for the previous one, an ACK for its message, and is only sent if its message
arrived) are resolved by fixed-point iteration: each pass recomputes the PAN channels with the arrival times
of the previous pass; with ``passes`` at least the longest dependency chain plus one, each chain is followed
to its end. The light queues behind the PAN (gateway CPU, backhaul, control centre, broker) are computed in
the last two passes only; earlier passes add their service times.

Application-level retransmissions (CoAP confirmable messages, RFC 7252 4.2: ACK_TIMEOUT x U[1,
ACK_RANDOM_FACTOR] doubling, MAX_RETRANSMIT; MQTT-SN: fixed T_retry, N_retry) follow when the message or its
ACK is lost (MAC retries exhausted, or channel access failure in a saturated PAN). They add the timeouts to
the latency and their frames' energy to the device, with the odds of a lost exchange from the round's measured
loss rates; their frames are not re-inserted into the channel queue, which underestimates the load of a PAN
that loses many frames.

Device energy: radio transmit, receive (CCA, ACKs, and listening while waiting for each response) and idle
(backoff) time, MCU active time, and sleep currents for the rest of the round.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qesif_core import _native
from qesif_core.network.ieee802154 import Ieee802154
from qesif_core.network.queues import fifo_departures, last_departure_per_queue, queue_order

MQTT, COAP = 0, 1
PROTOCOLS = ("mqtt", "coap")


@dataclass(frozen=True)
class DevicePower:
    """Supply currents of an IoT node: TI CC2420 radio (datasheet SWRS041c, 0 dBm) and an STM32L1-class
    Cortex-M3 at 32 MHz (about 230 uA/MHz in run mode, datasheet DS6876), at 3.0 V."""

    supply_v: float = 3.0
    radio_tx_a: float = 17.4e-3
    radio_rx_a: float = 18.8e-3
    radio_idle_a: float = 426e-6
    radio_sleep_a: float = 20e-6
    mcu_active_a: float = 7.4e-3
    mcu_sleep_a: float = 1.5e-6
    cpu_hz: float = 32e6


@dataclass(frozen=True)
class ProtocolSizes:
    """Header bytes of the stacks (6LoWPAN IPHC per RFC 6282, MQTT 3.1.1, CoAP per RFC 7252)."""

    ipv6_compressed: int = 10  # IPHC 2 + hop limit 1 + context-compressed addresses
    udp_compressed: int = 4  # NHC UDP with compressed ports
    mqtt_publish_overhead: int = 7  # MQTT-SN PUBLISH: length, type, flags, topic id 2, msg id 2
    mqtt_puback: int = 7  # MQTT-SN PUBACK
    mqtt_connect: int = 22  # MQTT-SN CONNECT: 6 + client id 16
    mqtt_connack: int = 3
    coap_request_overhead: int = 15  # header 4 + token 2 + Uri-Path 8 + payload marker 1
    coap_ack: int = 6  # header 4 + token 2 (piggybacked 2.04 response)
    backhaul_overhead: int = 98  # Ethernet 38 + IPv6 40 + TCP 20
    handshake_record_overhead: int = 25  # DTLS record header 13 + handshake message header 12


@dataclass(frozen=True)
class NetworkParams:
    """Everything of the network that is not the security scheme's choice."""

    access: Ieee802154 = field(default_factory=Ieee802154)
    power: DevicePower = field(default_factory=DevicePower)
    sizes: ProtocolSizes = field(default_factory=ProtocolSizes)
    device_stack_cycles: float = 20_000.0  # application, 6LoWPAN and MAC driver per message
    gateway_hz: float = 1.4e9  # Table 2: quad-core 1.4 GHz; one core serves the per-message path
    gateway_forward_cycles: float = 30_000.0  # IP forwarding, MQTT/CoAP proxying, flow features per message
    backhaul_bps: float = 100e6
    backhaul_propagation_s: float = 50e-6  # 10 km of fibre
    control_centre_bps: float = 1e9
    broker_s: float = 50e-6  # broker / CoAP server work per message
    gateways_per_broker: int = 10  # the control centre runs one broker node per 10 gateways
    coap_ack_timeout_s: float = 2.0  # RFC 7252 4.8
    coap_ack_random_factor: float = 1.5
    coap_max_retransmit: int = 4
    mqtt_retry_s: float = 10.0  # MQTT-SN 1.2 6.13: T_retry 10-15 s, fixed
    mqtt_max_retries: int = 4  # MQTT-SN N_retry 3-5
    passes: int = 7  # longest dependency chain (6 packets: flight, reply, CONNECT, CONNACK, data, ACK) + 1


@dataclass
class QueueState:
    """When each queue is busy until, carried from one round to the next."""

    pan: np.ndarray
    gateway_cpu: np.ndarray
    backhaul: np.ndarray
    control_centre: np.ndarray
    broker: np.ndarray

    @classmethod
    def idle(cls, n_gateways: int, params: NetworkParams) -> QueueState:
        return cls(
            pan=np.full(n_gateways, -np.inf),
            gateway_cpu=np.full(n_gateways, -np.inf),
            backhaul=np.full(n_gateways, -np.inf),
            control_centre=np.full(1, -np.inf),
            broker=np.full(-(-n_gateways // params.gateways_per_broker), -np.inf),
        )


@dataclass(frozen=True)
class SessionCosts:
    """Per-session costs of the scheme's plans (one entry per session of the round, in session order).

    Handshake flights are key-establishment bytes device -> gateway and gateway -> device (0 = no such
    flight); times are CPU seconds at the device and at the gateway; ``extra_bytes`` are added to every
    protected message (nonce, tag, scheme extras). A device's AEAD cost is per 16-byte block plus a fixed
    part, the gateway's per byte plus a fixed part.
    """

    handshake_up_bytes: np.ndarray
    handshake_down_bytes: np.ndarray
    handshake_device_s: np.ndarray
    handshake_gateway_s: np.ndarray
    extra_bytes: np.ndarray
    cipher_device_s_fixed: np.ndarray
    cipher_device_s_per_block: np.ndarray
    cipher_gateway_s_fixed: np.ndarray
    cipher_gateway_s_per_byte: np.ndarray


@dataclass(frozen=True)
class RoundTraffic:
    """Messages of one round, sorted by device then time; ``session`` indexes the round's sessions."""

    device: np.ndarray
    time: np.ndarray
    payload_bytes: np.ndarray
    session: np.ndarray
    session_device: np.ndarray


@dataclass(frozen=True)
class RoundResult:
    """Per-message and per-session outcomes of one round."""

    latency_s: np.ndarray  # nan when never delivered
    delivered: np.ndarray
    delivered_at: np.ndarray
    retransmissions: np.ndarray
    session_energy_j: np.ndarray
    session_ready_s: np.ndarray
    frames: int
    mac_drops: int


def group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Indices where a new run of equal values begins in a sorted array."""
    first = np.ones(sorted_keys.size, dtype=bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return np.flatnonzero(first)


def union_length(group: np.ndarray, start: np.ndarray, end: np.ndarray, n_groups: int) -> np.ndarray:
    """Total length of the union of intervals ``[start, end)`` per group (listening windows that overlap)."""
    out = np.zeros(n_groups)
    if group.size == 0:
        return out
    order = np.lexsort((start, group))
    g, s, e = group[order], start[order], end[order]
    first = np.ones(g.size, dtype=bool)
    first[1:] = g[1:] != g[:-1]
    gid = np.cumsum(first) - 1
    spread = float(max(e.max(), s.max()) - min(e.min(), s.min())) + 1.0
    offset = gid * spread
    running = np.maximum.accumulate(e + offset) - offset  # furthest end so far in the group
    previous_end = np.empty_like(running)
    previous_end[0] = -np.inf
    previous_end[1:] = running[:-1]
    previous_end[first] = -np.inf
    covered = np.maximum(0.0, e - np.maximum(s, previous_end))
    np.add.at(out, g, covered)
    return out


class _Packets:
    """Packets of a round, appended by kind; each kind remembers its packet indices."""

    def __init__(self) -> None:
        self.pan: list[np.ndarray] = []
        self.size: list[np.ndarray] = []
        self.device: list[np.ndarray] = []
        self.uplink: list[np.ndarray] = []
        self.count = 0

    def add(self, pan: np.ndarray, size: np.ndarray, device: np.ndarray, uplink: bool) -> np.ndarray:
        n = pan.size
        self.pan.append(pan)
        self.size.append(size)
        self.device.append(device)
        self.uplink.append(np.full(n, uplink))
        index = np.arange(self.count, self.count + n)
        self.count += n
        return index

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.concatenate(self.pan),
            np.concatenate(self.size).astype(np.int64),
            np.concatenate(self.device),
            np.concatenate(self.uplink),
        )


def simulate_round(
    params: NetworkParams,
    gateway_of: np.ndarray,
    protocol_of: np.ndarray,
    traffic: RoundTraffic,
    costs: SessionCosts,
    round_duration_s: float,
    state: QueueState,
    rng: np.random.Generator,
) -> RoundResult:
    """Simulate the messages of one round; updates ``state`` (queues busy until) in place."""
    sizes, acc, pw = params.sizes, params.access, params.power
    if traffic.device.size == 0:
        empty = np.empty(0)
        return RoundResult(empty, np.empty(0, bool), empty, np.empty(0, np.int64), empty, empty, 0, 0)
    n_sessions = traffic.session_device.size
    sdev = traffic.session_device
    sgw = gateway_of[sdev]
    sproto = protocol_of[sdev]
    mqtt_s = sproto == MQTT
    msess = traffic.session
    mgw = sgw[msess]
    mproto = sproto[msess]
    n_msgs = traffic.device.size
    session_start = np.full(n_sessions, np.inf)
    np.minimum.at(session_start, msess, traffic.time)

    transport = np.full(n_sessions, sizes.udp_compressed + sizes.ipv6_compressed)
    extra = costs.extra_bytes.astype(np.int64)

    packets = _Packets()
    has_up = costs.handshake_up_bytes > 0
    has_down = costs.handshake_down_bytes > 0
    up_s = np.flatnonzero(has_up)
    down_s = np.flatnonzero(has_down)
    conn_s = np.flatnonzero(mqtt_s)
    hs_frame = sizes.handshake_record_overhead + transport
    p_up = packets.add(sgw[up_s], costs.handshake_up_bytes[up_s] + hs_frame[up_s], sdev[up_s], True)
    p_down = packets.add(
        sgw[down_s], costs.handshake_down_bytes[down_s] + hs_frame[down_s], sdev[down_s], False
    )
    p_conn = packets.add(
        sgw[conn_s], sizes.mqtt_connect + extra[conn_s] + transport[conn_s], sdev[conn_s], True
    )
    p_connack = packets.add(
        sgw[conn_s], sizes.mqtt_connack + extra[conn_s] + transport[conn_s], sdev[conn_s], False
    )
    app_overhead = np.where(mproto == MQTT, sizes.mqtt_publish_overhead, sizes.coap_request_overhead)
    ack_bytes = np.where(mproto == MQTT, sizes.mqtt_puback, sizes.coap_ack)
    data_bytes = traffic.payload_bytes + app_overhead + extra[msess] + transport[msess]
    p_data = packets.add(mgw, data_bytes, traffic.device, True)
    p_ack = packets.add(mgw, ack_bytes + extra[msess] + transport[msess], traffic.device, False)
    pan, packet_bytes, packet_device, packet_up = packets.arrays()

    owner, mpdu = acc.fragment(packet_bytes)
    frame_pan = pan[owner]
    frames_per_pan = np.bincount(frame_pan, minlength=state.pan.size)
    p_collision = acc.collision_probability(frames_per_pan / round_duration_s)[frame_pan]
    mac = acc.transmit(mpdu, p_collision, rng)
    first_frame = group_starts(owner)

    # CPU times
    dev_hz = pw.cpu_hz
    stack_s = params.device_stack_cycles / dev_hz
    aead_blocks = -(-(traffic.payload_bytes + app_overhead) // 16)
    msg_dev_cpu = (
        stack_s + costs.cipher_device_s_fixed[msess] + costs.cipher_device_s_per_block[msess] * aead_blocks
    )
    msg_gw_cpu = (
        params.gateway_forward_cycles / params.gateway_hz
        + costs.cipher_gateway_s_fixed[msess]
        + costs.cipher_gateway_s_per_byte[msess] * (traffic.payload_bytes + app_overhead)
    )
    backhaul_bytes = traffic.payload_bytes + app_overhead + extra[msess] + sizes.backhaul_overhead
    backhaul_service = backhaul_bytes * 8.0 / params.backhaul_bps
    cc_service = backhaul_bytes * 8.0 / params.control_centre_bps
    ack_backhaul_s = (
        ack_bytes + extra[msess] + sizes.backhaul_overhead
    ) * 8.0 / params.backhaul_bps + params.backhaul_propagation_s
    connect_rtt = (
        2 * params.backhaul_propagation_s
        + (sizes.mqtt_connect + sizes.mqtt_connack + 2 * sizes.backhaul_overhead) * 8.0 / params.backhaul_bps
        + params.broker_s
        + params.gateway_forward_cycles / params.gateway_hz
    )
    # The device computes half its handshake before its flight (key generation), the rest after the reply.
    hs_dev_before = np.where(has_up, 0.5 * costs.handshake_device_s, 0.0)
    hs_dev_after = costs.handshake_device_s - hs_dev_before

    ready = np.zeros(packets.count)
    done = np.zeros(packets.count)
    zero_q = np.zeros(n_msgs, dtype=np.int64)
    broker_of = mgw // params.gateways_per_broker
    broker_service = np.full(n_msgs, params.broker_s)
    unqueued_path = (
        msg_gw_cpu + backhaul_service + params.backhaul_propagation_s + cc_service + params.broker_s
    )
    delivered_at = np.zeros(n_msgs)
    session_ready = session_start.copy()

    stages: dict[str, np.ndarray] = {}

    def follow_chain(queued: bool) -> None:
        """Arrival times of every packet from the completion times of the ones it waits for.

        ``queued``: pass messages through the gateway, backhaul, control-centre and broker queues (else
        add their service times only: those queues are light, so early passes skip them for speed).
        """
        nonlocal delivered_at, session_ready
        ready[p_up] = session_start[up_s] + hs_dev_before[up_s]
        reply_base = session_start.copy()
        reply_base[up_s] = done[p_up]
        ready[p_down] = reply_base[down_s] + costs.handshake_gateway_s[down_s]
        reply_base[down_s] = done[p_down]
        hs_end = reply_base + hs_dev_after
        ready[p_conn] = hs_end[conn_s] + stack_s
        ready[p_connack] = done[p_conn] + connect_rtt
        session_ready = hs_end.copy()
        session_ready[conn_s] = done[p_connack]
        ready[p_data] = np.maximum(traffic.time + msg_dev_cpu, session_ready[msess])
        arrive_gw = done[p_data]
        if queued:
            _, stages["gateway"] = fifo_departures(arrive_gw, msg_gw_cpu, mgw, state.gateway_cpu)
            _, stages["backhaul"] = fifo_departures(stages["gateway"], backhaul_service, mgw, state.backhaul)
            _, stages["centre"] = fifo_departures(
                stages["backhaul"] + params.backhaul_propagation_s, cc_service, zero_q, state.control_centre
            )
            _, delivered_at = fifo_departures(stages["centre"], broker_service, broker_of, state.broker)
        else:
            delivered_at = arrive_gw + unqueued_path
        ready[p_ack] = delivered_at + ack_backhaul_s + msg_gw_cpu

    kernel = _native.load("qesif_core.network._channel", "qesif_core.network._channel_py").channel_departures
    start = np.empty(owner.size)
    departure = np.empty(owner.size)
    dropped = np.zeros(owner.size, dtype=bool)
    frame_of_ack = owner >= p_ack[0]  # ACK packets were added last, one per message, in message order
    message_of_ack_frame = np.where(frame_of_ack, owner - p_ack[0], 0)
    sent = np.ones(owner.size, dtype=bool)  # an ACK is only sent for a message that arrived
    follow_chain(queued=False)
    passes = max(params.passes, 2)
    for k in range(passes):
        frame_ready = ready[owner] + mac["lead_s"]
        active = np.flatnonzero(sent)
        order = active[queue_order(frame_pan[active], frame_ready[active])]
        channel_free = state.pan.copy()
        s_sorted, d_sorted, x_sorted = kernel(
            np.ascontiguousarray(frame_pan[order]),
            np.ascontiguousarray(frame_ready[order]),
            np.ascontiguousarray(mac["service_s"][order]),
            np.ascontiguousarray(mac["gap_s"][order]),
            np.ascontiguousarray(mac["patience_s"][order]),
            channel_free,
        )
        start[order], departure[order], dropped[order] = s_sorted, d_sorted, x_sorted.astype(bool)
        start[~sent] = departure[~sent] = frame_ready[~sent]
        dropped[~sent] = False
        done[:] = np.maximum.reduceat(departure, first_frame)
        arrived = np.logical_and.reduceat(mac["delivered"] & ~dropped, first_frame)
        sent = ~frame_of_ack | arrived[p_data][message_of_ack_frame]
        follow_chain(queued=k >= passes - 2)

    # Queue bookkeeping for the next round.
    state.pan = channel_free
    state.gateway_cpu = np.maximum(
        state.gateway_cpu, last_departure_per_queue(mgw, stages["gateway"], state.gateway_cpu.size)
    )
    state.backhaul = np.maximum(
        state.backhaul, last_departure_per_queue(mgw, stages["backhaul"], state.backhaul.size)
    )
    state.control_centre = np.maximum(state.control_centre, stages["centre"].max(initial=-np.inf))
    state.broker = np.maximum(
        state.broker, last_departure_per_queue(broker_of, delivered_at, state.broker.size)
    )

    # Application-level retransmissions after a lost message or ACK (lost frames: MAC retries exhausted, or
    # channel access failure, whose rate per PAN this round sets the odds of a retransmission).
    frame_ok = mac["delivered"] & ~dropped & sent
    packet_ok = np.logical_and.reduceat(frame_ok, first_frame)
    sent_per_pan = np.bincount(frame_pan, weights=sent, minlength=state.pan.size)
    access_failure = np.bincount(frame_pan, weights=dropped, minlength=state.pan.size) / np.maximum(
        sent_per_pan, 1
    )
    frame_loss = acc.attempt_failure_probability(mpdu, p_collision) ** (acc.max_frame_retries + 1)
    frame_ok_prob = (1.0 - frame_loss) * (1.0 - access_failure[frame_pan])
    packet_ok_prob = np.exp(np.add.reduceat(np.log(np.maximum(frame_ok_prob, 1e-300)), first_frame))
    up_ok = packet_ok[p_data]
    ack_ok = packet_ok[p_ack]
    exchange_prob = packet_ok_prob[p_data] * packet_ok_prob[p_ack]
    is_coap = mproto == COAP
    max_retries = np.where(is_coap, params.coap_max_retransmit, params.mqtt_max_retries)
    first_timeout = np.where(
        is_coap,
        params.coap_ack_timeout_s * rng.uniform(1.0, params.coap_ack_random_factor, n_msgs),
        params.mqtt_retry_s,
    )
    retry_ok = (
        rng.random((n_msgs, max(params.coap_max_retransmit, params.mqtt_max_retries)))
        < exchange_prob[:, None]
    )
    need_retry = ~(up_ok & ack_ok)
    k_first = np.where(retry_ok.any(axis=1), retry_ok.argmax(axis=1) + 1, np.iinfo(np.int64).max)
    success_retry = need_retry & (k_first <= max_retries)
    retransmissions = np.where(need_retry, np.minimum(k_first, max_retries), 0)
    k = np.minimum(k_first, max_retries)
    waited = np.where(is_coap, first_timeout * (2.0**k - 1.0), first_timeout * k)  # CoAP doubles, MQTT-SN not
    delivered = up_ok | success_retry
    final_delivery = np.where(up_ok, delivered_at, delivered_at + waited)
    latency = np.where(delivered, final_delivery - traffic.time, np.nan)

    # Energy of each device in its session.
    frame_dev = packet_device[owner]
    frame_up = packet_up[owner]
    energy = np.zeros(gateway_of.size)
    v = pw.supply_v
    deferred = np.maximum(start - ready[owner] - mac["lead_s"], 0.0)  # waiting for a busy channel
    up_e = v * (
        pw.radio_tx_a * mac["tx_s"]
        + pw.radio_rx_a * mac["rx_s"]
        + pw.radio_idle_a * (mac["idle_s"] + deferred)
    )
    ack_tx = v * pw.radio_tx_a * (acc.turnaround_s + acc.ack_airtime_s())  # device ACKs a downlink frame
    frame_energy = np.where(frame_up, up_e, np.where(frame_ok, ack_tx, 0.0))
    np.add.at(energy, frame_dev, frame_energy)
    per_packet_energy = np.add.reduceat(frame_energy, first_frame)
    np.add.at(
        energy, traffic.device, retransmissions * (per_packet_energy[p_data] + per_packet_energy[p_ack])
    )
    # Listening for each response with the receiver on.
    hs_listen_from = session_start.copy()
    hs_listen_from[up_s] = done[p_up]
    listen_dev = np.concatenate([sdev[down_s], sdev[conn_s], traffic.device])
    listen_from = np.concatenate([hs_listen_from[down_s], done[p_conn], done[p_data]])
    listen_to = np.concatenate([done[p_down], done[p_connack], done[p_ack]])
    listen = union_length(listen_dev, listen_from, np.maximum(listen_to, listen_from), gateway_of.size)
    energy += v * pw.radio_rx_a * listen
    cpu_s = np.zeros(gateway_of.size)
    np.add.at(cpu_s, sdev, costs.handshake_device_s + np.where(mqtt_s, stack_s, 0.0))
    np.add.at(cpu_s, traffic.device, msg_dev_cpu * (1 + retransmissions))
    energy += v * pw.mcu_active_a * cpu_s
    energy += v * (pw.radio_sleep_a + pw.mcu_sleep_a) * round_duration_s

    return RoundResult(
        latency_s=latency,
        delivered=delivered,
        delivered_at=final_delivery,
        retransmissions=retransmissions,
        session_energy_j=energy[sdev],
        session_ready_s=session_ready,
        frames=int(sent.sum()),
        mac_drops=int((sent & ~frame_ok).sum()),
    )
