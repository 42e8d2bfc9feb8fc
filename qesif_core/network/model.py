"""One round of the smart-city IoT network: sessions, MQTT/CoAP, 802.15.4 or Wi-Fi access, gateways, backhaul.

Path of an uplink message: device CPU (protocol stack and AEAD) -> its gateway's shared access channel (an
802.15.4 PAN, ``Ieee802154``, or a Wi-Fi BSS, ``Wifi80211``; "PAN" below) -> gateway CPU (one FIFO core for
the per-message path: decrypt, re-protect towards the control centre, flow features) -> the gateway's IP
backhaul link (FIFO) -> the control centre's ingress link (FIFO) -> MQTT broker / CoAP server (FIFO, one
node per ``gateways_per_broker`` gateways) = delivery. On the access side MQTT is MQTT-SN over UDP (the
MQTT variant made for such links: the same PUBLISH/PUBACK QoS 1 and CONNECT/CONNACK exchanges, short topic
ids); the gateway relays it as MQTT over the backhaul.

Every device works through its exchanges one at a time, in order: its session's security handshake (a
device->gateway flight answered by a gateway->device flight, with the CPU time of each side), for MQTT a
CONNECT/CONNACK with the broker, then its messages. A confirmable message (MQTT-SN QoS 1 PUBLISH, CoAP CON
request) is an exchange with its application ACK (PUBACK, or the CoAP piggybacked ACK): the device starts its
next message only when the ACK is back or the message is given up (CoAP NSTART = 1, RFC 7252 4.7; MQTT-SN:
one QoS 1 PUBLISH in flight per client). A lost request or ACK is sent again when the attempt's timer fires,
on the channel like any frame: CoAP after ACK_TIMEOUT x U[1, ACK_RANDOM_FACTOR], doubling, MAX_RETRANSMIT
times (RFC 7252 4.2, 4.8); MQTT-SN after a fixed T_retry, N_retry times (MQTT-SN 1.2, 6.13); DTLS handshake
flights after 1 s, doubling (RFC 6347 4.2.4.1); then the message is given up. QoS 0 PUBLISHes and CoAP NON
requests (``mqtt_qos = 0``, ``coap_confirmable = False``) get no ACK and no retransmission: the device moves
on once the frames are through. Messages that arrive while ``device_queue_limit`` messages already wait in
the device's queue are dropped; waiting counts in the latency. Exchanges still under way at the end of a round
carry over into the next round (device queue, attempt, timers), so the channel load of retransmissions is
where their timers put it.

The access channels run event by event (``_channel_py``, compiled as ``_channel``): every PAN's stations
(its devices and its gateway) with IEEE 802.15.4 unslotted CSMA/CA or 802.11 DCF as the standards specify
them (backoffs, carrier sensing against the channel's actual state, ACKs, retries; a frame overlapped by
another is lost), and the exchanges above them; a PAN's state carries from round to round, so a round cut
changes nothing. The path behind the PAN enters the loop as the service times of its light queues (the
response's timing); the delivery time of each message is then computed through the queues themselves
(vectorised Lindley recursion).

Device energy: radio transmit (frames, ACKs), receive (CCAs, ACK waits, frames for the device, and
listening for each response until it arrives or the timer fires) and idle (backoffs, turnarounds) time, MCU
active time, and sleep currents for the rest of the round.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qesif_core import _native
from qesif_core.network import _channel_py
from qesif_core.network.ieee802154 import Ieee802154
from qesif_core.network.queues import fifo_departures, last_departure_per_queue
from qesif_core.network.wifi import Wifi80211

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
    """Header bytes of the stacks (MQTT-SN 1.2, CoAP per RFC 7252, DTLS 1.2); IP and UDP headers are the
    access model's (``ip_udp_bytes``: 6LoWPAN-compressed on 802.15.4, plain on Wi-Fi)."""

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

    access: Ieee802154 | Wifi80211 = field(default_factory=Ieee802154)
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
    dtls_initial_timeout_s: float = 1.0  # RFC 6347 4.2.4.1: initial 1 s, doubled per retransmission
    dtls_max_retransmit: int = 4  # RFC 6347 leaves the count to implementations; as CoAP's MAX_RETRANSMIT
    mqtt_qos: int = 1  # 1: PUBLISH/PUBACK with retransmission; 0: fire and forget
    coap_confirmable: bool = True  # CON requests with ACK and retransmission; False: NON requests
    device_queue_limit: int = 8  # messages waiting in a device's buffer behind the one under way
    gateway_mac_queue: int = 100  # packets a gateway's MAC queues for its PAN (INET's DropTailQueue default)


@dataclass
class QueueState:
    """What carries from one round to the next: when each queue behind the PANs is busy until, the PANs'
    MAC and exchange state (``mac``, see ``_channel_py``), each device's exchanges still under way
    (``backlog``: job table and timeouts) and when it finished its last one."""

    gateway_cpu: np.ndarray
    backhaul: np.ndarray
    control_centre: np.ndarray
    broker: np.ndarray
    device_free: np.ndarray | None = None
    backlog: tuple[dict[str, np.ndarray], np.ndarray] | None = None
    mac: dict[str, np.ndarray] | None = None

    @classmethod
    def idle(cls, n_gateways: int, params: NetworkParams) -> QueueState:
        return cls(
            gateway_cpu=np.full(n_gateways, -np.inf),
            backhaul=np.full(n_gateways, -np.inf),
            control_centre=np.full(1, -np.inf),
            broker=np.full(-(-n_gateways // params.gateways_per_broker), -np.inf),
        )

    @property
    def n_gateways(self) -> int:
        return int(self.gateway_cpu.size)


def idle_mac_state(
    n_devices: int, n_pans: int, params: NetworkParams, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """The PANs' state before anything happened: stations idle, queues empty, one random stream per PAN
    (seeded from ``rng``)."""
    stations = n_devices + n_pans
    kinds = {"f": np.float64, "i": np.int64}
    state: dict[str, np.ndarray] = {}
    for fields_, size in (
        (_channel_py.STATION_FIELDS, stations),
        (_channel_py.DEVICE_FIELDS, n_devices),
        (_channel_py.PAN_FIELDS, n_pans),
    ):
        for name, kind in fields_.items():
            state[name] = np.zeros(size, dtype=kinds[kind])
    for name in ("t", "app_t", "gw_t", "med_t"):
        state[name][:] = np.inf
    for name in ("grant", "eifs_end", "nav", "med_change"):
        state[name][:] = -np.inf
    state["ack_to"][:] = -1
    if isinstance(params.access, Wifi80211):
        state["cw"][:] = params.access.cw_min
    for name in _channel_py.RING_FIELDS:
        state[name] = np.zeros(n_pans * params.gateway_mac_queue, dtype=np.int64)
    state["rng"] = rng.integers(0, 2**63, size=n_pans, dtype=np.int64).astype(np.uint64)
    return state


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
    """Outcomes of one round. Deliveries are counted in the round they happen in, whichever round the message
    was sent in; messages still under way at the end of the round are ``in_flight`` (carried over)."""

    latency_s: np.ndarray  # of the messages delivered to the control centre during the round
    delivered_bytes: int  # their application payload
    messages_lost: int  # given up after the last attempt (or a NON / QoS 0 message whose frame was lost)
    queue_drops: int  # messages dropped on arrival because the device's queue was full
    in_flight: int  # messages neither delivered nor given up or dropped at the end of the round
    retransmissions: int  # application-level retransmissions started in the round (data, CONNECT, handshake)
    session_energy_j: np.ndarray  # device energy in the round, per session of the round
    session_ready_s: np.ndarray  # when each session's handshake (and CONNECT) finished; nan: not in the round
    frames: int  # data frames put on air in the round (MAC retransmissions included, ACKs not)
    mac_drops: int  # frames a MAC gave up in the round: channel access failure or retries exhausted

    @property
    def messages_delivered(self) -> int:
        return int(self.latency_s.size)


def busy_devices(state: QueueState, n_devices: int) -> np.ndarray:
    """Devices with exchanges carried over into the next round: they keep their session (no new one)."""
    busy = np.zeros(n_devices, dtype=bool)
    if state.backlog is not None:
        busy[state.backlog[0]["device"]] = True
    return busy


def group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Indices where a new run of equal values begins in a sorted array."""
    first = np.ones(sorted_keys.size, dtype=bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return np.flatnonzero(first)


HANDSHAKE, CONNECT, MESSAGE = 0, 1, 2
_NOT_STARTED, _DONE, _QUEUE_DROPPED = _channel_py.NOT_STARTED, _channel_py.DONE, _channel_py.QUEUE_DROPPED
_JOB_FLOAT = ("attempt_start", "req_done", "arrived", "end", "listen")
_JOB_INT = ("phase", "attempt", "acked", "decided")


def _take(table: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    return {name: values[index] for name, values in table.items()}


def _concat(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([a[name], b[name]]) for name in a}


def _ranges(base: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(base[i], base[i] + length[i])``."""
    total = int(length.sum())
    offsets = np.repeat(np.cumsum(length) - length, length)
    return np.repeat(base, length) + np.arange(total) - offsets


def _new_jobs(
    params: NetworkParams,
    gateway_of: np.ndarray,
    protocol_of: np.ndarray,
    traffic: RoundTraffic,
    costs: SessionCosts,
    fresh: np.ndarray,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The round's new jobs (handshakes, CONNECTs, messages) and their retransmission timeouts. Only
    sessions marked ``fresh`` start with a handshake (and, for MQTT, a CONNECT); the others keep their
    device's session."""
    sizes, acc, pw = params.sizes, params.access, params.power
    n_sessions = traffic.session_device.size
    sdev = traffic.session_device
    sproto = protocol_of[sdev]
    msess = traffic.session
    mproto = sproto[msess]
    n_msgs = traffic.device.size
    session_start = np.full(n_sessions, np.inf)
    np.minimum.at(session_start, msess, traffic.time)
    transport = acc.ip_udp_bytes
    extra = costs.extra_bytes.astype(np.int64)
    stack_s = params.device_stack_cycles / pw.cpu_hz

    # Handshakes: a device flight answered by a gateway flight, or a single flight either way. A gateway
    # flight alone (a key-ID flight) answers the device's session start, which reaches the gateway without a
    # frame of its own: a request of zero bytes, retransmitted like a DTLS flight when the answer is lost.
    has_up = costs.handshake_up_bytes > 0
    has_down = costs.handshake_down_bytes > 0
    hs = np.flatnonzero((has_up | has_down) & fresh)
    up, answered = has_up[hs], has_down[hs]
    hs_dev_before = np.where(up, 0.5 * costs.handshake_device_s[hs], 0.0)
    hs_frame = sizes.handshake_record_overhead + transport
    # MQTT-SN CONNECT/CONNACK.
    conn = np.flatnonzero((sproto == MQTT) & fresh)
    connect_rtt = (
        2 * params.backhaul_propagation_s
        + (sizes.mqtt_connect + sizes.mqtt_connack + 2 * sizes.backhaul_overhead) * 8.0 / params.backhaul_bps
        + params.broker_s
        + params.gateway_forward_cycles / params.gateway_hz
    )
    # Messages.
    is_mqtt = mproto == MQTT
    app_overhead = np.where(is_mqtt, sizes.mqtt_publish_overhead, sizes.coap_request_overhead)
    ack_bytes = np.where(is_mqtt, sizes.mqtt_puback, sizes.coap_ack)
    confirmable = np.where(is_mqtt, params.mqtt_qos >= 1, params.coap_confirmable)
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
    ack_delay = (
        msg_gw_cpu
        + backhaul_service
        + params.backhaul_propagation_s
        + cc_service
        + params.broker_s
        + ack_backhaul_s
        + msg_gw_cpu
    )
    coap_first = params.coap_ack_timeout_s * rng.uniform(1.0, params.coap_ack_random_factor, n_msgs)

    def cat(hs_part: object, conn_part: object, msg_part: object, dtype: type = np.float64) -> np.ndarray:
        return np.concatenate([np.asarray(hs_part), np.asarray(conn_part), np.asarray(msg_part)]).astype(
            dtype
        )

    n_hs, n_conn = hs.size, conn.size
    zeros = lambda n: np.zeros(n)  # noqa: E731
    device = cat(sdev[hs], sdev[conn], traffic.device, np.int64)
    job = {
        "device": device,
        "pan": gateway_of[device],
        "kind": cat(np.full(n_hs, HANDSHAKE), np.full(n_conn, CONNECT), np.full(n_msgs, MESSAGE), np.int64),
        "session": cat(hs, conn, msess, np.int64),
        "arrival": cat(session_start[hs], session_start[conn], traffic.time),
        "earliest": cat(
            session_start[hs] + hs_dev_before, session_start[conn] + stack_s, traffic.time + msg_dev_cpu
        ),
        "pre_delay": cat(hs_dev_before, np.full(n_conn, stack_s), msg_dev_cpu),
        "resp_delay": cat(costs.handshake_gateway_s[hs], np.full(n_conn, connect_rtt), ack_delay),
        "post_delay": cat(costs.handshake_device_s[hs] - hs_dev_before, zeros(n_conn), zeros(n_msgs)),
        "dev_cpu": cat(costs.handshake_device_s[hs], np.full(n_conn, stack_s), msg_dev_cpu),
        "has_resp": cat(answered, np.ones(n_conn), confirmable, np.int64),
        "droppable": cat(zeros(n_hs), zeros(n_conn), np.ones(n_msgs), np.int64),
        "req_bytes": cat(
            np.where(up, costs.handshake_up_bytes[hs] + hs_frame, 0),
            sizes.mqtt_connect + extra[conn] + transport,
            traffic.payload_bytes + app_overhead + extra[msess] + transport,
            np.int64,
        ),
        "resp_bytes": cat(
            np.where(answered, costs.handshake_down_bytes[hs] + hs_frame, 0),
            sizes.mqtt_connack + extra[conn] + transport,
            np.where(confirmable, ack_bytes + extra[msess] + transport, 0),
            np.int64,
        ),
        "payload": cat(np.zeros(n_hs), np.zeros(n_conn), traffic.payload_bytes, np.int64),
        "gw_cpu": cat(zeros(n_hs), zeros(n_conn), msg_gw_cpu),
        "backhaul_service": cat(zeros(n_hs), zeros(n_conn), backhaul_service),
        "cc_service": cat(zeros(n_hs), zeros(n_conn), cc_service),
    }
    n_jobs = device.size
    retries = np.where(is_mqtt, params.mqtt_max_retries, params.coap_max_retransmit)
    job["n_att"] = 1 + cat(
        np.where(answered, params.dtls_max_retransmit, 0),
        np.full(n_conn, params.mqtt_max_retries),
        np.where(confirmable, retries, 0),
        np.int64,
    )
    first_timeout = cat(
        np.full(n_hs, params.dtls_initial_timeout_s),
        np.full(n_conn, params.mqtt_retry_s),
        np.where(is_mqtt, params.mqtt_retry_s, coap_first),
    )
    growth = cat(np.full(n_hs, 2.0), np.ones(n_conn), np.where(is_mqtt, 1.0, 2.0))
    timeout_job = np.repeat(np.arange(n_jobs), job["n_att"])
    timeout_attempt = np.arange(timeout_job.size) - np.repeat(
        np.cumsum(job["n_att"]) - job["n_att"], job["n_att"]
    )
    timeouts = first_timeout[timeout_job] * growth[timeout_job] ** timeout_attempt
    job["timeout_base"] = np.cumsum(job["n_att"]) - job["n_att"]

    for name in _JOB_FLOAT:
        job[name] = np.full(n_jobs, np.nan) if name in ("arrived", "end") else np.zeros(n_jobs)
    for name in _JOB_INT:
        job[name] = np.zeros(n_jobs, dtype=np.int64)
    job["seq"] = np.full(n_jobs, -1, dtype=np.int64)
    return job, timeouts


def simulate_round(
    params: NetworkParams,
    gateway_of: np.ndarray,
    protocol_of: np.ndarray,
    traffic: RoundTraffic,
    costs: SessionCosts,
    round_duration_s: float,
    state: QueueState,
    rng: np.random.Generator,
    round_start_s: float = 0.0,
    session_starts: np.ndarray | None = None,
) -> RoundResult:
    """Simulate the round ``[round_start_s, round_start_s + round_duration_s)``: the exchanges of its
    sessions and those carried over from earlier rounds; updates ``state``.

    ``session_starts`` (bool per session of the round) says which sessions are new (handshake, CONNECT);
    the others continue their device's session and just send traffic. ``None``: every session of a device
    not busy at the round's start (:func:`busy_devices`) is new. A busy device always keeps its session.
    """
    pw = params.power
    n_devices, n_pans = gateway_of.size, state.n_gateways
    n_sessions = traffic.session_device.size
    if state.device_free is None:
        state.device_free = np.full(n_devices, -np.inf)
    if state.mac is None:
        state.mac = idle_mac_state(n_devices, n_pans, params, rng)
    horizon = round_start_s + round_duration_s
    busy_device = busy_devices(state, n_devices)
    if session_starts is None:
        fresh = ~busy_device[traffic.session_device]
    else:
        fresh = np.asarray(session_starts, dtype=bool)
        if fresh.shape != traffic.session_device.shape or np.any(fresh & busy_device[traffic.session_device]):
            raise ValueError("session_starts: one flag per session, and none for a device still busy")
    job, timeouts = _new_jobs(params, gateway_of, protocol_of, traffic, costs, fresh, rng)
    job["order"] = np.arange(job["device"].size, dtype=np.int64)
    job["new"] = np.ones(job["device"].size, dtype=np.int64)
    if state.backlog is not None:
        old_job, old_timeouts = state.backlog
        job["timeout_base"] = job["timeout_base"] + old_timeouts.size
        old_job = dict(old_job, new=np.zeros(old_job["device"].size, dtype=np.int64))
        job = _concat(old_job, job)
        timeouts = np.concatenate([old_timeouts, timeouts])
    # Each device's jobs in order: carried first, then handshake, CONNECT, messages.
    order = np.lexsort((job["order"], job["new"], job["device"]))
    job = _take(job, order)
    n_jobs = job["device"].size
    devices = np.arange(n_devices)
    dev_cursor = np.searchsorted(job["device"], devices, side="left").astype(np.int64)
    dev_hi = np.searchsorted(job["device"], devices, side="right").astype(np.int64)
    dev_first = dev_cursor.copy()
    before = {name: job[name].copy() for name in ("phase", "attempt", "arrived")}
    job["listen"] = np.zeros(n_jobs)
    pan_dev = np.argsort(gateway_of, kind="stable").astype(np.int64)
    pan_lo = np.searchsorted(gateway_of[pan_dev], np.arange(n_pans + 1)).astype(np.int64)
    acc_f, acc_i = params.access.kernel_params(params.gateway_mac_queue)
    out = {name: np.zeros(n_devices + n_pans) for name in ("en_tx", "en_rx", "en_idle")}
    for name in ("frames", "drops", "ring_drops"):
        out[name] = np.zeros(n_pans, dtype=np.int64)
    kernel = _native.load("qesif_core.network._channel", "qesif_core.network._channel_py").run_pans
    kernel(
        pan_dev,
        pan_lo,
        dev_cursor,
        dev_hi,
        state.device_free,
        job,
        np.ascontiguousarray(timeouts, dtype=np.float64),
        state.mac,
        out,
        acc_f,
        acc_i,
        int(params.device_queue_limit),
        float(horizon),
    )

    # Deliveries of the round: the first arrival of each message at its gateway, then the queues behind it.
    is_msg = job["kind"] == MESSAGE
    arrived_now = np.flatnonzero(is_msg & np.isnan(before["arrived"]) & ~np.isnan(job["arrived"]))
    gw = job["pan"][arrived_now]
    broker_of = gw // params.gateways_per_broker
    _, at_gateway = fifo_departures(
        job["arrived"][arrived_now], job["gw_cpu"][arrived_now], gw, state.gateway_cpu
    )
    _, at_backhaul = fifo_departures(at_gateway, job["backhaul_service"][arrived_now], gw, state.backhaul)
    _, at_centre = fifo_departures(
        at_backhaul + params.backhaul_propagation_s,
        job["cc_service"][arrived_now],
        np.zeros(arrived_now.size, dtype=np.int64),
        state.control_centre,
    )
    _, delivered_at = fifo_departures(
        at_centre, np.full(arrived_now.size, params.broker_s), broker_of, state.broker
    )
    state.gateway_cpu = np.maximum(state.gateway_cpu, last_departure_per_queue(gw, at_gateway, n_pans))
    state.backhaul = np.maximum(state.backhaul, last_departure_per_queue(gw, at_backhaul, n_pans))
    state.control_centre = np.maximum(state.control_centre, at_centre.max(initial=-np.inf))
    state.broker = np.maximum(
        state.broker, last_departure_per_queue(broker_of, delivered_at, state.broker.size)
    )
    latency = delivered_at - job["arrival"][arrived_now]

    # Device energy in the round.
    v = pw.supply_v
    energy = v * (
        pw.radio_tx_a * out["en_tx"][:n_devices]
        + pw.radio_rx_a * out["en_rx"][:n_devices]
        + pw.radio_idle_a * out["en_idle"][:n_devices]
    )
    energy += v * pw.radio_rx_a * np.bincount(job["device"], weights=job["listen"], minlength=n_devices)
    started = (
        (before["phase"] == _NOT_STARTED) & (job["phase"] != _NOT_STARTED) & (job["phase"] != _QUEUE_DROPPED)
    )
    retransmitted = job["attempt"] - before["attempt"]
    cpu_s = np.where(started, job["dev_cpu"], 0.0) + retransmitted * (params.device_stack_cycles / pw.cpu_hz)
    energy += v * pw.mcu_active_a * np.bincount(job["device"], weights=cpu_s, minlength=n_devices)
    energy += v * (pw.radio_sleep_a + pw.mcu_sleep_a) * round_duration_s

    # Sessions of the round: ready when their handshake and CONNECT are done (nan: not within the round, or
    # the device kept its earlier session).
    session_ready = np.full(n_sessions, np.inf)
    np.minimum.at(session_ready, traffic.session, traffic.time)
    session_ready[~fresh] = np.nan
    setup = np.flatnonzero((job["new"] == 1) & ~is_msg)
    np.maximum.at(session_ready, job["session"][setup], np.nan_to_num(job["end"][setup], nan=np.inf))
    session_ready[np.isinf(session_ready)] = np.nan

    # What carries over: every device's jobs from the one under way on.
    finished = (job["phase"] == _DONE) | (job["phase"] == _QUEUE_DROPPED)
    owner_cursor = np.repeat(dev_cursor, dev_hi - dev_first)
    keep = np.flatnonzero((np.arange(n_jobs) >= owner_cursor) & ~finished)
    carried = _take(job, keep)
    timeout_index = _ranges(carried["timeout_base"], carried["n_att"])
    carried["timeout_base"] = np.cumsum(carried["n_att"]) - carried["n_att"]
    carried["order"] = np.arange(keep.size, dtype=np.int64)
    carried["session"] = np.full(keep.size, -1, dtype=np.int64)
    del carried["new"]
    state.backlog = (carried, timeouts[timeout_index])

    return RoundResult(
        latency_s=latency,
        delivered_bytes=int(job["payload"][arrived_now].sum()),
        messages_lost=int(
            (is_msg & (job["phase"] == _DONE) & (before["phase"] != _DONE) & np.isnan(job["arrived"])).sum()
        ),
        queue_drops=int(
            (is_msg & (job["phase"] == _QUEUE_DROPPED) & (before["phase"] != _QUEUE_DROPPED)).sum()
        ),
        in_flight=int(((carried["kind"] == MESSAGE) & np.isnan(carried["arrived"])).sum()),
        retransmissions=int(retransmitted.sum()),
        session_energy_j=energy[traffic.session_device],
        session_ready_s=session_ready,
        frames=int(out["frames"].sum()),
        mac_drops=int(out["drops"].sum()),
    )
