"""Topology (Table 2) and traffic: which device sends what, through which gateway, and when.

Devices are spread over the transport, energy and healthcare domains and over the gateways (contiguous blocks:
each gateway serves one district). Each device generates messages as a Poisson process (exponential
inter-arrival times, Table 2: mean 100 ms). Dataset records decide what a device sends: the records of one
source (``device_key``) are replayed in time order by one device, so a device's messages carry its records'
sizes and its records' ground truth (benign or attack).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qesif_core.network.model import COAP, MQTT, RoundTraffic, group_starts

DOMAINS = ("transport", "energy", "healthcare")


@dataclass(frozen=True)
class Topology:
    """Per-device domain, gateway and application protocol (``MQTT`` or ``COAP``)."""

    domain: np.ndarray
    gateway: np.ndarray
    protocol: np.ndarray
    n_gateways: int

    @property
    def n_devices(self) -> int:
        return int(self.gateway.size)


def build_topology(
    n_devices: int, n_gateways: int, mqtt_fraction: float, rng: np.random.Generator
) -> Topology:
    """Devices in equal shares per domain and per gateway; ``round(mqtt_fraction * n)`` of them use MQTT."""
    index = np.arange(n_devices)
    protocol = np.full(n_devices, COAP, dtype=np.int64)
    protocol[rng.permutation(n_devices)[: round(mqtt_fraction * n_devices)]] = MQTT
    return Topology(
        domain=index % len(DOMAINS),
        gateway=index * n_gateways // n_devices,
        protocol=protocol,
        n_gateways=n_gateways,
    )


def poisson_arrivals(
    n_devices: int, start_s: float, duration_s: float, mean_interarrival_s: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Message times of every device in ``[start, start + duration)``, sorted by device then time.

    A Poisson process restricted to a window is a Poisson number of uniform points, so windows (rounds)
    can be drawn one at a time without changing the process.
    """
    counts = rng.poisson(duration_s / mean_interarrival_s, n_devices)
    device = np.repeat(np.arange(n_devices), counts)
    time = start_s + rng.random(device.size) * duration_s
    order = np.lexsort((time, device))
    return device[order], time[order]


class RecordReplay:
    """Assigns dataset records to devices and hands them out in time order, round after round.

    ``source`` holds one integer per record naming its source (factorised ``device_key``); sources are dealt
    to devices in turn, so one source is replayed by one device. Devices left without a source (more devices
    than sources) replay the whole table from an offset of their own.
    """

    def __init__(self, source: np.ndarray, ts: np.ndarray, n_devices: int) -> None:
        order = np.lexsort((np.arange(ts.size), ts))
        source = np.asarray(source)[order]
        codes = np.unique(source, return_inverse=True)[1]
        owner = codes % n_devices
        lists: list[np.ndarray] = [order[owner == d] for d in range(n_devices)]
        n = order.size
        for d in range(n_devices):
            if lists[d].size == 0:
                lists[d] = np.roll(order, -(d * n // n_devices))
        self._length = np.array([lst.size for lst in lists], dtype=np.int64)
        self._offset = np.concatenate([[0], np.cumsum(self._length)[:-1]])
        self._records = np.concatenate(lists)
        self._cursor = np.zeros(n_devices, dtype=np.int64)

    def take(self, device: np.ndarray) -> np.ndarray:
        """Record indices for messages of ``device`` (sorted by device), continuing each device's replay."""
        if device.size == 0:
            return np.empty(0, dtype=np.int64)
        starts = group_starts(device)
        run_length = np.diff(np.append(starts, device.size))
        rank = np.arange(device.size) - np.repeat(starts, run_length)
        position = (self._cursor[device] + rank) % self._length[device]
        np.add.at(self._cursor, device[starts], run_length)
        return self._records[self._offset[device] + position]


def no_transmissions() -> RoundTraffic:
    """An empty set of transmissions (no retransmission pending)."""
    empty_i, empty_f = np.empty(0, dtype=np.int64), np.empty(0)
    return RoundTraffic(
        empty_i, empty_f, empty_i, empty_i, empty_i, empty_f, empty_i, np.empty(0, dtype=bool), empty_f
    )


def _fields(t: RoundTraffic) -> tuple[np.ndarray, ...]:
    return (t.device, t.time, t.payload_bytes, t.origin_s, t.attempt, t.duplicate, t.timeout_s)


def _assemble(fields: tuple[np.ndarray, ...], order: np.ndarray | None = None) -> RoundTraffic:
    device, time, payload, origin, attempt, duplicate, timeout = (
        f if order is None else f[order] for f in fields
    )
    session_device, session = np.unique(device, return_inverse=True)
    return RoundTraffic(
        device=device.astype(np.int64),
        time=time.astype(np.float64),
        payload_bytes=payload.astype(np.int64),
        session=session,
        session_device=session_device,
        origin_s=origin.astype(np.float64),
        attempt=attempt.astype(np.int64),
        duplicate=duplicate.astype(bool),
        timeout_s=timeout.astype(np.float64),
    )


def round_traffic(
    device: np.ndarray, time: np.ndarray, payload_bytes: np.ndarray, carried: RoundTraffic | None = None
) -> RoundTraffic:
    """A round's new messages plus the retransmissions ``carried`` into it, sorted by device then time and
    grouped into sessions (one per device that transmits in the round)."""
    n = np.asarray(device).size
    fresh = (
        np.asarray(device),
        np.asarray(time, dtype=np.float64),
        np.asarray(payload_bytes),
        np.asarray(time, dtype=np.float64),
        np.zeros(n, dtype=np.int64),
        np.zeros(n, dtype=bool),
        np.full(n, np.nan),
    )
    if carried is not None and carried.device.size:
        fresh = tuple(np.concatenate([a, b]) for a, b in zip(fresh, _fields(carried), strict=True))
    order = np.lexsort((np.arange(fresh[0].size), fresh[1], fresh[0]))
    return _assemble(fresh, order)


def split_due(pending: RoundTraffic, until_s: float) -> tuple[RoundTraffic, RoundTraffic]:
    """Pending retransmissions due before ``until_s``, and the rest."""
    due = pending.time < until_s
    fields = _fields(pending)
    return _assemble(tuple(f[due] for f in fields)), _assemble(tuple(f[~due] for f in fields))


def join(a: RoundTraffic, b: RoundTraffic) -> RoundTraffic:
    """Two sets of pending transmissions as one."""
    return _assemble(tuple(np.concatenate([x, y]) for x, y in zip(_fields(a), _fields(b), strict=True)))
