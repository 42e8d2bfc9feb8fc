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
    than sources) replay the whole table from an offset of their own. Memory is O(records + devices): the
    devices without a source share the one time-ordered table.
    """

    def __init__(self, source: np.ndarray, ts: np.ndarray, n_devices: int) -> None:
        order = np.lexsort((np.arange(ts.size), ts))
        codes = np.unique(np.asarray(source)[order], return_inverse=True)[1]
        owner = codes % n_devices
        by_owner = np.argsort(owner, kind="stable")  # each device's records, in time order
        self._own = order[by_owner]
        self._own_length = np.bincount(owner, minlength=n_devices).astype(np.int64)
        self._own_offset = np.cumsum(self._own_length) - self._own_length
        self._order = order
        self._rotation = np.arange(n_devices, dtype=np.int64) * order.size // n_devices
        self._cursor = np.zeros(n_devices, dtype=np.int64)

    def take(self, device: np.ndarray) -> np.ndarray:
        """Record indices for messages of ``device`` (sorted by device), continuing each device's replay."""
        if device.size == 0:
            return np.empty(0, dtype=np.int64)
        starts = group_starts(device)
        run_length = np.diff(np.append(starts, device.size))
        rank = np.arange(device.size) - np.repeat(starts, run_length)
        position = self._cursor[device] + rank
        np.add.at(self._cursor, device[starts], run_length)
        own = self._own_length[device]
        records = self._order[(self._rotation[device] + position) % self._order.size]
        has = own > 0
        records[has] = self._own[self._own_offset[device[has]] + position[has] % own[has]]
        return records


def round_traffic(device: np.ndarray, time: np.ndarray, payload_bytes: np.ndarray) -> RoundTraffic:
    """Group a round's messages into sessions (one per device that sends in the round)."""
    session_device, session = np.unique(device, return_inverse=True)
    return RoundTraffic(
        device=device,
        time=time,
        payload_bytes=np.asarray(payload_bytes, dtype=np.int64),
        session=session,
        session_device=session_device,
    )
