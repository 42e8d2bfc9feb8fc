"""The offered traffic of a run, shared by every network backend so that they carry the same workload.

A device's messages arrive as a Poisson process (``network.mean_interarrival_s``); each carries a held-out
flow record of the run's dataset, replayed per device in its time order (``RecordReplay``), whose mean bytes
per packet sets the message's payload, or ``network.payload_bytes`` when given (every message the same).
The built-in backend draws each round's messages as it reaches the round (its channel draws come from a
stream of their own); the OMNeT++ backend draws all rounds before the simulation starts and hands them to
the model as a schedule file (:func:`write_schedule`): both carry exactly the same messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bridge.cosim.runsetup import RunStreams, run_flows
from qesif_core.errors import UserInputError
from qesif_core.network.traffic import RecordReplay, Topology, build_topology, poisson_arrivals

if TYPE_CHECKING:
    from bridge.scenario import NetworkSpec, RunSpec

#: Bounds of one message's application payload: a record's mean bytes per packet, clipped to a sensor
#: reading at least and one application message at most (larger flows are bulk transfers).
PAYLOAD_MIN_BYTES = 16
PAYLOAD_MAX_BYTES = 256


def record_payloads(bytes_out: np.ndarray, pkts_out: np.ndarray) -> np.ndarray:
    """Application payload of a message carrying a record: its mean bytes per packet, clipped."""
    per_packet = np.nan_to_num(bytes_out, nan=0.0) / np.maximum(np.nan_to_num(pkts_out, nan=1.0), 1.0)
    return np.clip(np.round(per_packet), PAYLOAD_MIN_BYTES, PAYLOAD_MAX_BYTES).astype(np.int64)


@dataclass(frozen=True)
class RoundMessages:
    """One round's messages in arrival order: device, time (s), payload (bytes), flow record (row index of
    the run's flow table)."""

    device: np.ndarray
    time: np.ndarray
    payload: np.ndarray
    record: np.ndarray


class Workload:
    """Topology and per-round messages of one run (see the module docstring): the network section, the
    round length, the run's flow table and its held-out records (``test_index``)."""

    def __init__(
        self,
        network: NetworkSpec,
        round_duration_s: float,
        flows: pd.DataFrame,
        test_index: np.ndarray,
        streams: RunStreams,
    ) -> None:
        self.n_devices = network.devices
        self.n_gateways = network.gateways
        if self.n_gateways > self.n_devices:
            raise UserInputError(
                f"network.gateways ({self.n_gateways}) exceeds network.devices ({self.n_devices})"
            )
        self.round_duration_s = float(round_duration_s)
        self.mean_interarrival_s = network.mean_interarrival_s
        self.topology: Topology = build_topology(
            self.n_devices, self.n_gateways, network.mqtt_fraction, streams.topology
        )
        held_out = flows.iloc[test_index]
        self._record_ids = test_index
        fixed = network.payload_bytes
        if fixed is None:
            self._payload = record_payloads(
                held_out["bytes_out"].to_numpy(float), held_out["pkts_out"].to_numpy(float)
            )
        else:
            self._payload = np.full(len(held_out), int(fixed), dtype=np.int64)
        source = held_out["device_key"].astype(str).to_numpy()
        self._replay = RecordReplay(source, held_out["ts"].to_numpy(float), self.n_devices)
        self._rng = streams.traffic

    def round_messages(self, round_index: int) -> RoundMessages:
        start = round_index * self.round_duration_s
        device, time = poisson_arrivals(
            self.n_devices, start, self.round_duration_s, self.mean_interarrival_s, self._rng
        )
        slot = self._replay.take(device)
        return RoundMessages(device, time, self._payload[slot], self._record_ids[slot])


def run_workload(spec: RunSpec, streams: RunStreams) -> Workload:
    """The workload of a run: its network section, round length and held-out flow records."""
    flows, _, test_index = run_flows(spec, streams)
    return Workload(spec.network, spec.round_duration_s, flows, test_index, streams)


def write_schedule(workload: Workload, rounds: int, path: Path) -> pd.DataFrame:
    """All rounds' messages as ``device,time,payload,record`` rows sorted by time (the OMNeT++ model's
    schedule file); returns the table written."""
    parts = [workload.round_messages(r) for r in range(rounds)]
    table = pd.DataFrame(
        {
            "device": np.concatenate([p.device for p in parts]).astype(np.int64),
            "time": np.concatenate([p.time for p in parts]),
            "payload": np.concatenate([p.payload for p in parts]).astype(np.int64),
            "record": np.concatenate([p.record for p in parts]).astype(np.int64),
        }
    ).sort_values(["time", "device"], kind="stable")
    # repr-exact times, so the model's rounds see exactly the drawn arrival times
    table.to_csv(path, index=False, float_format="%.17g")
    return table
