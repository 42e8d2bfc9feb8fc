"""The built-in network backend: the IoT network of ``qesif_core.network`` driven round by round.

It plays the part OMNeT++ plays in a co-simulation: at the start of each round it asks the orchestrator for
the grants of the sessions that will start in the round (one batched KEY_REQUEST, cached at the gateways so a
session start costs no round trip), simulates the round's traffic with the granted plans and reports
TELEMETRY, to which the orchestrator answers with the Q-IDS VERDICT.

Session lifetime (``keys.session_rounds`` = N, default 1): a device's security session (handshake, MQTT-SN
CONNECT, QKD key, the scheme's mode) is renewed when it falls due, at rounds r with (r + d) % N == 0 for
device d (staggered so the devices of a PAN do not all re-handshake in the same round). The renewal happens
in the first round from then on in which the device has messages and is not busy with exchanges carried over
from earlier rounds (a busy device keeps its session: no handshake, no key); in between, the device sends
with the session it has. A device without a session starts one with its first message, and a VERDICT in
which a gateway's QKD link becomes flagged (or stops being flagged) makes the session of every device of
that gateway due, so they are re-planned (the scheme sees the flag and moves them to classical mode while
the link is flagged) in the next round; a link that stays flagged causes no further renewals.
Only the sessions that start are sent in the KEY_REQUEST, so the orchestrator plans, counts and grants keys
for started sessions only. N = 1 renews in every round a device is free: the behaviour before this option.

The same :class:`BuiltinNetwork` runs
in the orchestrator's process (``bridge="inprocess"``) or as a separate process speaking the ZeroMQ protocol
(``python -m bridge.backends.builtin --endpoint ipc://... --spec run.json``); both give identical results.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from bridge.backends.workload import RoundMessages, Workload, run_workload
from bridge.cosim import protocol
from bridge.cosim.runsetup import run_streams
from qesif_core.costs import CostModel, load_cost_model
from qesif_core.errors import UserInputError
from qesif_core.network.ieee802154 import Ieee802154
from qesif_core.network.model import (
    DevicePower,
    NetworkParams,
    QueueState,
    SessionCosts,
    busy_devices,
    simulate_round,
)
from qesif_core.network.traffic import round_traffic
from qesif_core.network.wifi import ESP32_RADIO_A, Wifi80211

if TYPE_CHECKING:
    from bridge.scenario import NetworkSpec, RunSpec

log = logging.getLogger(__name__)

#: ``network.access`` values the built-in backend models.
ACCESS_MODELS = ("802.15.4", "wifi")

#: KEY_GRANT cost columns a device keeps for the lifetime of its session (``SessionCosts`` fields).
COST_COLUMNS = tuple(f.name for f in fields(SessionCosts))
INT_COST_COLUMNS = ("handshake_up_bytes", "handshake_down_bytes", "extra_bytes")

#: ``call(type, body) -> (reply_type, reply_body)``: how a backend reaches the orchestrator.
Call = Callable[[str, dict[str, Any]], tuple[str, dict[str, Any]]]


def network_params(costs: CostModel, network: NetworkSpec | None = None) -> NetworkParams:
    """Network parameters with the radio and device figures of the run's cost model and the reliability
    settings of the spec's ``network`` section (``access``, ``mqtt_qos``, ``coap_confirmable``,
    ``device_queue``, ``mqtt_retry_s``). Wi-Fi access uses the ESP32 radio currents instead of the cost
    model's CC2420 ones."""
    if network is None:
        from bridge.scenario import NetworkSpec

        network = NetworkSpec()
    dev = lambda name: float(costs.value(f"device.{name}"))  # noqa: E731
    radio = lambda name: float(costs.value(f"radio.{name}"))  # noqa: E731
    access = Ieee802154(
        bitrate_bps=radio("bitrate_bps"),
        phy_overhead_bytes=int(radio("phy_overhead_bytes")),
        mac_overhead_bytes=int(radio("mac_overhead_bytes")),
        max_mpdu_bytes=int(radio("max_psdu_bytes")),
    )
    power = DevicePower(
        supply_v=dev("supply_v"),
        radio_tx_a=radio("tx_ma") * 1e-3,
        radio_rx_a=radio("rx_ma") * 1e-3,
        radio_idle_a=radio("idle_ma") * 1e-3,
        radio_sleep_a=radio("sleep_ma") * 1e-3,
        mcu_active_a=dev("cpu_active_ua_per_mhz") * 1e-6 * dev("cpu_hz") / 1e6,
        mcu_sleep_a=dev("cpu_sleep_ua") * 1e-6,
        cpu_hz=dev("cpu_hz"),
    )
    if network.access == "wifi":
        access = Wifi80211()
        power = replace(power, **ESP32_RADIO_A)
    return NetworkParams(
        access=access,
        power=power,
        gateway_hz=float(costs.value("gateway.cpu_hz")),
        mqtt_qos=network.mqtt_qos,
        coap_confirmable=network.coap_confirmable,
        device_queue_limit=network.device_queue,
        mqtt_retry_s=network.mqtt_retry_s,
    )


def read_schedule(path: str, rounds: int, round_duration_s: float) -> list[RoundMessages]:
    """A schedule file (``device,time,payload,record``, :func:`bridge.backends.workload.write_schedule`) as
    each round's messages; a message belongs to round ``floor(time / round_duration_s)``."""
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype={"device": np.int64, "payload": np.int64, "record": np.int64})
    except (OSError, ValueError) as exc:
        raise UserInputError(
            f"--schedule {path}: cannot read a device,time,payload,record table ({exc})"
        ) from None
    round_of = np.floor(table["time"].to_numpy(float) / round_duration_s).astype(np.int64)
    if round_of.size and (round_of.min() < 0 or round_of.max() >= rounds):
        raise UserInputError(f"--schedule {path}: a message time lies outside the run's {rounds} rounds")
    out = []
    for r in range(rounds):
        rows = table[round_of == r]
        order = np.lexsort((rows["time"].to_numpy(), rows["device"].to_numpy()))
        out.append(
            RoundMessages(*(rows[c].to_numpy()[order] for c in ("device", "time", "payload", "record")))
        )
    return out


def builtin_network(spec: RunSpec, schedule: list[RoundMessages] | None = None) -> BuiltinNetwork:
    """The built-in backend of a run: only its network section and what the network needs besides."""
    streams = run_streams(spec.seed)
    return BuiltinNetwork(
        spec.network,
        run_workload(spec, streams),
        streams.channel,
        rounds=spec.rounds,
        costs=load_cost_model(spec.costs),
        session_rounds=spec.keys.session_rounds,
        schedule=schedule,
    )


class BuiltinNetwork:
    """The network side of one run (see the module docstring): the run's ``network`` section, its offered
    traffic (``workload``), its cost model, ``keys.session_rounds`` and the network's own random stream
    (``rng``: the run's ``channel`` stream, not the traffic one, which is the OMNeT++ backend's too).
    ``schedule`` (each round's messages, e.g. from :func:`read_schedule`) replaces the traffic the backend
    would draw itself. :func:`builtin_network` builds it from a run spec."""

    def __init__(
        self,
        network: NetworkSpec,
        workload: Workload,
        rng: np.random.Generator,
        *,
        rounds: int,
        costs: CostModel,
        session_rounds: int = 1,
        schedule: list[RoundMessages] | None = None,
    ) -> None:
        if network.access not in ACCESS_MODELS:
            raise UserInputError(
                f"network.access: the built-in backend models {', '.join(ACCESS_MODELS)}; "
                f"got {network.access!r}"
            )
        self.rounds = rounds
        self.round_duration_s = workload.round_duration_s
        self.params = network_params(costs, network)
        self.workload = workload
        self.n_devices = self.workload.n_devices
        self.n_gateways = self.workload.n_gateways
        self.topology = self.workload.topology
        self._rng = rng
        self._state = QueueState.idle(self.n_gateways, self.params)
        self._pending: dict[str, Any] | None = None
        self.session_rounds = session_rounds
        self._session_offset = np.arange(self.n_devices) % self.session_rounds
        self._session_due = np.ones(self.n_devices, dtype=bool)  # no session yet
        self._link_flagged = np.zeros(self.topology.gateway.max(initial=-1) + 1, dtype=bool)
        self._schedule = schedule
        self._session_costs = {
            name: np.zeros(self.n_devices, dtype=np.int64 if name in INT_COST_COLUMNS else np.float64)
            for name in COST_COLUMNS
        }

    def hello(self) -> dict[str, Any]:
        return {
            "version": protocol.PROTOCOL_VERSION,
            "peer": "qesif-builtin",
            "devices": self.n_devices,
            "gateways": self.n_gateways,
        }

    def begin_round(self, round_index: int) -> dict[str, Any]:
        """Draw the round's messages and ask for the grants of the sessions that start in it (KEY_REQUEST
        body): those of devices with messages, not busy, whose session is due (module docstring)."""
        if self._schedule is not None:
            messages = self._schedule[round_index]
        else:
            messages = self.workload.round_messages(round_index)
        device, time = messages.device, messages.time
        traffic = round_traffic(device, time, messages.payload)
        first_time = np.full(traffic.session_device.size, np.inf)
        np.minimum.at(first_time, traffic.session, time)
        self._session_due |= (round_index + self._session_offset) % self.session_rounds == 0
        busy = busy_devices(self._state, self.n_devices)
        starts = self._session_due[traffic.session_device] & ~busy[traffic.session_device]
        self._pending = {
            "round": round_index,
            "traffic": traffic,
            "record": messages.record,
            "starts": starts,
        }
        new = traffic.session_device[starts]
        return {
            "round": round_index,
            "device": new.tolist(),
            "gateway": self.topology.gateway[new].tolist(),
            "time": first_time[starts].tolist(),
        }

    def finish_round(self, grant: Mapping[str, Any]) -> dict[str, Any]:
        """Simulate the round with the granted plans; the TELEMETRY body."""
        pending = self._pending
        if pending is None or grant["round"] != pending["round"]:
            raise RuntimeError(f"KEY_GRANT for round {grant['round']} does not answer the pending request")
        traffic, starts = pending["traffic"], pending["starts"]
        new = traffic.session_device[starts]
        if grant["device"] != new.tolist():
            raise RuntimeError(f"KEY_GRANT of round {grant['round']} does not list the requested sessions")
        for name, kept in self._session_costs.items():
            kept[new] = np.asarray(grant[name], dtype=kept.dtype)
        self._session_due[new] = False
        # Every session of the round runs with its device's session costs: new ones with this grant's.
        costs = SessionCosts(
            **{name: kept[traffic.session_device] for name, kept in self._session_costs.items()}
        )
        result = simulate_round(
            self.params,
            self.topology.gateway,
            self.topology.protocol,
            traffic,
            costs,
            self.round_duration_s,
            self._state,
            self._rng,
            round_start_s=pending["round"] * self.round_duration_s,
            session_starts=starts,
        )
        self._pending = None
        records, first = np.unique(pending["record"], return_index=True)
        return {
            "round": pending["round"],
            "messages_sent": int(traffic.device.size),
            "messages_delivered": result.messages_delivered,
            "messages_lost": result.messages_lost,
            "queue_drops": result.queue_drops,
            "in_flight": result.in_flight,
            "payload_bytes_delivered": result.delivered_bytes,
            "latency_s": result.latency_s.tolist(),
            "session_device": traffic.session_device.tolist(),
            "session_energy_j": result.session_energy_j.tolist(),
            "record": records.tolist(),
            "record_gateway": self.topology.gateway[traffic.device[first]].tolist(),
            "frames": result.frames,
            "mac_drops": result.mac_drops,
            "retransmissions": result.retransmissions,
        }

    def end_round(self, verdict: Mapping[str, Any]) -> None:
        """Apply the round's VERDICT: devices of a gateway whose link's flag turned on or off must start a
        new session (to leave, or return to, quantum mode); a link that stays flagged changes nothing."""
        flagged = np.asarray(verdict["link_flagged"], dtype=bool)
        changed = np.flatnonzero(flagged != self._link_flagged[: flagged.size])
        self._link_flagged[: flagged.size] = flagged
        self._session_due |= np.isin(self.topology.gateway, changed)


def drive(network: BuiltinNetwork, call: Call) -> None:
    """The backend's side of a run: HELLO, per round KEY_REQUEST then TELEMETRY, BYE."""
    kind, welcome = call(protocol.HELLO, network.hello())
    _expect(kind, protocol.WELCOME, welcome)
    if welcome["rounds"] != network.rounds or welcome["devices"] != network.n_devices:
        raise RuntimeError("WELCOME does not describe this backend's run (rounds or devices differ)")
    for round_index in range(network.rounds):
        kind, grant = call(protocol.KEY_REQUEST, network.begin_round(round_index))
        _expect(kind, protocol.KEY_GRANT, grant)
        kind, verdict = call(protocol.TELEMETRY, network.finish_round(grant))
        _expect(kind, protocol.VERDICT, verdict)
        network.end_round(verdict)
    kind, body = call(protocol.BYE, {"reason": "done"})
    _expect(kind, protocol.BYE, body)


def _expect(kind: str, wanted: str, body: Mapping[str, Any]) -> None:
    if kind == protocol.ERROR:
        raise RuntimeError(f"orchestrator replied ERROR {body.get('code')}: {body.get('detail')}")
    if kind != wanted:
        raise RuntimeError(f"orchestrator replied {kind}, expected {wanted}")


def serve_peer(
    spec: RunSpec, endpoint: str, timeout_s: float, schedule: list[RoundMessages] | None = None
) -> int:
    """The built-in backend as the orchestrator's peer: connect to ``endpoint`` and drive the run."""
    from bridge.cosim.client import ZmqClient

    network = builtin_network(spec, schedule)
    with ZmqClient(endpoint, timeout_s=timeout_s) as client:
        drive(network, client.call)
    log.info("built-in backend finished %d rounds", network.rounds)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the built-in backend as a peer process of the orchestrator."""
    parser = argparse.ArgumentParser(prog="python -m bridge.backends.builtin", description=main.__doc__)
    parser.add_argument(
        "--endpoint", required=True, help="orchestrator endpoint (ipc:// or tcp://127.0.0.1:PORT)"
    )
    parser.add_argument("--spec", required=True, help="JSON file with the resolved run spec")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each reply")
    parser.add_argument(
        "--schedule", help="replay this schedule file (device,time,payload,record) instead of drawing traffic"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from bridge.scenario import run_spec

    with open(args.spec, encoding="utf-8") as handle:
        spec = run_spec(json.load(handle))
    schedule = None
    if args.schedule:
        schedule = read_schedule(args.schedule, spec.rounds, spec.round_duration_s)
    return serve_peer(spec, args.endpoint, args.timeout, schedule)


if __name__ == "__main__":
    sys.exit(main())
