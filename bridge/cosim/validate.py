"""The orchestrator's frame validator: everything a peer sends is checked here before it is used.

Two layers, both raising :class:`~bridge.cosim.protocol.ProtocolError` (answered with an ERROR frame; the
run goes on):

- syntax and schema (:func:`bridge.cosim.protocol.decode`): size, nesting depth (checked before
  ``json.loads``, so no frame can exhaust the parser's recursion), UTF-8 JSON, no duplicate member names,
  the envelope, each body's fields and types, equal column lengths, finite numbers;
- meaning (:class:`FrameValidator`, one per run): ids are integers inside their documented ranges
  (compared as Python integers, so ``2**63`` and beyond are refused like any other out-of-range id, before
  anything becomes a NumPy array), session times lie inside the current round, a device asks for at most
  one session per round and only at its own gateway, and a TELEMETRY is consistent: counts are
  non-negative, nothing is delivered, lost or dropped that was not sent (cumulatively: a delivery may
  complete a message of an earlier round), one latency per delivered message and none longer than the run
  so far, energies finite, non-negative and below :data:`MAX_DEVICE_POWER_W` over the round, every
  reported device holding a session, each flow record a held-out record of the run reported once per
  round, and every listed gateway inside the network.

The validator keeps the run's cumulative counts and the devices holding a session; it changes them only
when a frame has passed every check, so a refused frame leaves no trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from bridge.cosim.protocol import E_FIELD, ProtocolError

#: Largest count a TELEMETRY may report (so that every total stays exact in a float64 result).
MAX_COUNT = 2**53 - 1
#: Upper bound of a device's mean power over a round (W): 100 W is far above any IoT device (an ESP32
#: transmitting draws under 1 W), so only nonsense is refused.
MAX_DEVICE_POWER_W = 100.0
#: Longest HELLO ``peer`` name (it is logged).
MAX_PEER_NAME = 200


def _ids_in_range(values: Sequence[int], limit: int, what: str, field: str) -> None:
    """Each of ``values`` is an integer id in ``[0, limit)``; Python integers, so any size compares."""
    if values and (min(values) < 0 or max(values) >= limit):
        bad = next(v for v in values if not 0 <= v < limit)
        raise ProtocolError(E_FIELD, f"{field}: {what} {_short(bad)} outside 0..{limit - 1}")


def _unique(values: Sequence[Any], field: str) -> None:
    if len(set(values)) != len(values):
        seen: set[Any] = set()
        twice = next(v for v in values if v in seen or seen.add(v))
        raise ProtocolError(E_FIELD, f"{field}: {_short(twice)} listed twice")


def _counts(body: dict[str, Any], names: Iterable[str], kind: str) -> None:
    for name in names:
        value = body[name]
        if not 0 <= value <= MAX_COUNT:
            raise ProtocolError(E_FIELD, f"{kind}.{name}: {_short(value)} outside 0..{MAX_COUNT}")


def _within(values: Sequence[float], low: float, high: float, field: str, unit: str) -> None:
    if values and (min(values) < low or max(values) > high):
        bad = next(v for v in values if not low <= v <= high)
        raise ProtocolError(E_FIELD, f"{field}: {_short(bad)} {unit} outside [{low:g}, {high:g}] {unit}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


class FrameValidator:
    """The meaning checks of one run's KEY_REQUEST and TELEMETRY bodies (module docstring).

    ``gateway_of[d]`` is device d's gateway; ``records`` the flow records the network may carry (the run's
    held-out records). Bodies reach it already checked against the schema (types, equal column lengths).
    """

    COUNTS = (
        "messages_sent",
        "messages_delivered",
        "messages_lost",
        "queue_drops",
        "in_flight",
        "payload_bytes_delivered",
        "frames",
        "mac_drops",
        "retransmissions",
    )

    def __init__(
        self,
        *,
        gateway_of: Sequence[int],
        round_duration_s: float,
        records: np.ndarray,
        max_message_bytes: int,
    ) -> None:
        self.gateway_of = [int(g) for g in gateway_of]
        self.n_devices = len(self.gateway_of)
        self.n_gateways = max(self.gateway_of, default=-1) + 1
        self.round_duration_s = float(round_duration_s)
        self.n_flow_rows = int(records.max(initial=-1)) + 1
        self._carried = np.zeros(self.n_flow_rows, dtype=bool)
        self._carried[np.asarray(records, dtype=np.int64)] = True
        self.max_message_bytes = int(max_message_bytes)
        self.sent = 0  # cumulative messages sent
        self.finished = 0  # cumulative messages delivered, lost or dropped at a queue
        self.with_session: set[int] = set()  # devices granted a session so far

    def hello(self, body: dict[str, Any]) -> None:
        name = body["peer"]
        if len(name) > MAX_PEER_NAME or not name.isprintable():
            raise ProtocolError(E_FIELD, f"HELLO.peer: printable text of at most {MAX_PEER_NAME} chars")

    def key_request(self, r: int, body: dict[str, Any]) -> None:
        """A round-``r`` KEY_REQUEST: devices in range, each once, at its own gateway, times in round r."""
        devices, gateways, times = body["device"], body["gateway"], body["time"]
        _ids_in_range(devices, self.n_devices, "device", "KEY_REQUEST.device")
        _ids_in_range(gateways, self.n_gateways, "gateway", "KEY_REQUEST.gateway")
        _unique(devices, "KEY_REQUEST.device")
        for d, g in zip(devices, gateways, strict=True):
            if self.gateway_of[d] != g:
                raise ProtocolError(
                    E_FIELD, f"KEY_REQUEST: device {d} belongs to gateway {self.gateway_of[d]}, not {g}"
                )
        start = r * self.round_duration_s
        _within(times, start, start + self.round_duration_s, f"KEY_REQUEST.time (round {r})", "s")
        self.with_session.update(devices)

    def telemetry(self, r: int, body: dict[str, Any]) -> None:
        """A round-``r`` TELEMETRY (module docstring); on success its counts join the run's totals."""
        _counts(body, self.COUNTS, "TELEMETRY")
        delivered = body["messages_delivered"]
        sent = self.sent + body["messages_sent"]
        finished = self.finished + delivered + body["messages_lost"] + body["queue_drops"]
        if finished > sent:
            raise ProtocolError(
                E_FIELD,
                f"TELEMETRY: {finished} messages delivered, lost or dropped so far, but only {sent} sent",
            )
        if body["in_flight"] > sent - finished:
            raise ProtocolError(
                E_FIELD,
                f"TELEMETRY: {body['in_flight']} messages in flight, but only {sent - finished} sent and "
                "not yet delivered, lost or dropped",
            )
        if body["payload_bytes_delivered"] > delivered * self.max_message_bytes:
            raise ProtocolError(
                E_FIELD,
                f"TELEMETRY: {delivered} messages delivered cannot carry "
                f"{body['payload_bytes_delivered']} payload bytes (at most {self.max_message_bytes} each)",
            )
        if delivered and not self.with_session:
            raise ProtocolError(
                E_FIELD, f"TELEMETRY: {delivered} messages delivered, but no session was ever granted"
            )
        latency = body["latency_s"]
        if len(latency) != delivered:
            raise ProtocolError(
                E_FIELD,
                f"TELEMETRY: {len(latency)} latencies for {delivered} delivered messages (one each)",
            )
        run_so_far = (r + 1) * self.round_duration_s
        _within(latency, 0.0, run_so_far, "TELEMETRY.latency_s", "s")
        devices = body["session_device"]
        _ids_in_range(devices, self.n_devices, "device", "TELEMETRY.session_device")
        _unique(devices, "TELEMETRY.session_device")
        without = [d for d in devices if d not in self.with_session]
        if without:
            raise ProtocolError(
                E_FIELD, f"TELEMETRY.session_device: device {without[0]} was never granted a session"
            )
        cap = MAX_DEVICE_POWER_W * self.round_duration_s
        _within(body["session_energy_j"], 0.0, cap, "TELEMETRY.session_energy_j", "J")
        records = body["record"]
        _ids_in_range(records, self.n_flow_rows, "record", "TELEMETRY.record")
        _unique(records, "TELEMETRY.record")
        if records and not self._carried[np.asarray(records, dtype=np.int64)].all():
            bad = next(x for x in records if not self._carried[x])
            raise ProtocolError(
                E_FIELD, f"TELEMETRY.record: {bad} is not a held-out record of the run (the network's)"
            )
        _ids_in_range(body["record_gateway"], self.n_gateways, "gateway", "TELEMETRY.record_gateway")
        self.sent, self.finished = sent, finished
