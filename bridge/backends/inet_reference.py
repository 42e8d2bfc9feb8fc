"""The INET reference grid: the built-in network against OMNeT++/INET over a grid of configurations.

The grid brackets Table 2's point (``GRID``): access {802.15.4, Wi-Fi} x reliability {acknowledged (MQTT-SN
QoS 1, CoAP CON), unacknowledged (QoS 0, NON)} x devices per gateway {5, 10, 20} x mean inter-arrival
{1 s, 0.1 s} x payload {32, 100, 256 B}: 72 configurations of two PANs for 60 rounds of 1 s. Both backends
run the same workload (``bridge.backends.workload``, same seed) and get the same grants: every session is
QESIF's quantum session on a clean link (QKD-PSK key-ID flight of 72 B from the gateway, AES-256-GCM), so
the rows compare networks and nothing else. A stand-in for the orchestrator (:class:`FixedGrants`) answers
both, with no QKD or Q-IDS run behind it.

``python -m bridge.backends.inet_reference --out DIR`` runs every configuration on OMNeT++/INET (the QESIF
model built with ``make omnet``) and writes ``DIR/reference.csv`` (one row per configuration,
:data:`FIGURES`) and ``DIR/provenance.json`` (command, seed, code fingerprint, OMNeT++ and INET versions,
wall times). ``--backend builtin`` writes the same table from the built-in backend. The committed table
lives in ``tests/data/inet_reference/``; ``tests/bridge/backends/test_inet_reference.py`` checks the
built-in backend against it on every test run, without OMNeT++.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import platform
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bridge.cosim import protocol
from bridge.scenario import RunSpec, resolve_channel, run_spec
from qesif_core.network.ieee802154 import Ieee802154

SEED = 1
ROUNDS = 60
ROUND_DURATION_S = 1.0
GATEWAYS = 2
ACCESS = ("802.15.4", "wifi")
RELIABILITY = ("ack", "noack")
DEVICES_PER_GATEWAY = (5, 10, 20)
MEAN_INTERARRIVAL_S = (1.0, 0.1)
PAYLOAD_BYTES = (32, 100, 256)
#: Per-configuration figures, in the table's column order after the configuration's own columns.
FIGURES = (
    "messages_sent",
    "messages_delivered",
    "delivery_ratio",
    "latency_median_ms",
    "latency_p95_ms",
    "frames",
    "mac_drops",
    "queue_drops",
)


@dataclass(frozen=True)
class Config:
    """One configuration of the grid."""

    access: str
    reliability: str  # "ack": MQTT-SN QoS 1 and CoAP CON; "noack": QoS 0 and NON
    devices_per_gateway: int
    mean_interarrival_s: float
    payload_bytes: int

    @property
    def name(self) -> str:
        return (
            f"{self.access}-{self.reliability}-{self.devices_per_gateway}dev-"
            f"{self.mean_interarrival_s:g}s-{self.payload_bytes}B"
        )


GRID = tuple(
    Config(*values)
    for values in itertools.product(
        ACCESS, RELIABILITY, DEVICES_PER_GATEWAY, MEAN_INTERARRIVAL_S, PAYLOAD_BYTES
    )
)


def config_spec(config: Config, backend: str = "builtin") -> dict[str, Any]:
    """The resolved run spec of a configuration (what the backends and the workload read)."""
    acknowledged = config.reliability == "ack"
    return {
        "seed": SEED,
        "rounds": ROUNDS,
        "round_duration_s": ROUND_DURATION_S,
        "backend": backend,
        "dataset": {"name": "ton_iot", "path": None, "max_rows": 1000},
        "channel": resolve_channel("<inet reference>", "channel", {"name": "clean"}),
        "scheme": "QESIF",
        "network": {
            "devices": GATEWAYS * config.devices_per_gateway,
            "gateways": GATEWAYS,
            "mean_interarrival_s": config.mean_interarrival_s,
            "mqtt_fraction": 0.5,
            "access": config.access,
            "mqtt_qos": 1 if acknowledged else 0,
            "coap_confirmable": acknowledged,
            "device_queue": 8,
            "payload_bytes": config.payload_bytes,
        },
        "qkd": {},
        "qids": {},
        "keys": {"session_rounds": ROUNDS},
        "costs": {},
    }


def session_grant() -> dict[str, Any]:
    """KEY_GRANT columns of QESIF's quantum session (one session)."""
    from bridge.cosim.orchestrator import plan_costs
    from qesif_core.costs import load_cost_model
    from qesif_core.schemes.base import SessionPlan

    plan = SessionPlan("quantum", "qkd-psk", "aes-256-gcm", consumes_qkd_key=True)
    return {
        "mode": "quantum",
        "handshake": "qkd-psk",
        "cipher": plan.cipher,
        **plan_costs(load_cost_model(), plan),
    }


class FixedGrants:
    """The orchestrator's side of a run, reduced to the network: every session gets ``session_grant()``,
    no link is ever flagged; the TELEMETRY bodies are kept."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.grant = session_grant()
        self.telemetry: list[dict[str, Any]] = []
        self.finished = False

    def handle(self, kind: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        protocol.check_body(kind, body)
        net = self.spec.network
        if kind == protocol.HELLO:
            return protocol.WELCOME, {
                "version": protocol.PROTOCOL_VERSION,
                "rounds": self.spec.rounds,
                "round_duration_s": self.spec.round_duration_s,
                "devices": net.devices,
                "gateways": net.gateways,
            }
        if kind == protocol.KEY_REQUEST:
            n = len(body["device"])
            columns = {name: [value] * n for name, value in self.grant.items()}
            return protocol.KEY_GRANT, {
                "round": body["round"],
                "device": body["device"],
                "key_id": [f"ref-{body['round']}-{d}" for d in body["device"]],
                **columns,
            }
        if kind == protocol.TELEMETRY:
            self.telemetry.append(body)
            return protocol.VERDICT, {
                "round": body["round"],
                "link_flagged": [False] * net.gateways,
                "flagged_records": [],
            }
        if kind == protocol.BYE:
            self.finished = len(self.telemetry) == self.spec.rounds
            return protocol.BYE, {"reason": "done"}
        raise protocol.ProtocolError(protocol.E_TYPE, f"unexpected {kind}")


def figures(telemetry: list[Mapping[str, Any]]) -> dict[str, float]:
    """A run's figures (``FIGURES``) from its TELEMETRY bodies, as the orchestrator's table computes them."""
    sent = sum(t["messages_sent"] for t in telemetry)
    delivered = sum(t["messages_delivered"] for t in telemetry)
    latency = np.concatenate([np.asarray(t["latency_s"], dtype=float) for t in telemetry] or [[]])
    return {
        "messages_sent": sent,
        "messages_delivered": delivered,
        "delivery_ratio": delivered / sent if sent else float("nan"),
        "latency_median_ms": 1e3 * float(np.median(latency)) if latency.size else float("nan"),
        "latency_p95_ms": 1e3 * float(np.percentile(latency, 95)) if latency.size else float("nan"),
        "frames": sum(t["frames"] for t in telemetry),
        "mac_drops": sum(t["mac_drops"] for t in telemetry),
        "queue_drops": sum(t["queue_drops"] for t in telemetry),
    }


#: How INET 4.5 frames a packet over 802.15.4 (it has no 6LoWPAN), as ``Ieee802154`` fields: uncompressed
#: IPv4 + UDP headers, IPv4 fragments of at most 118 bytes (127 - its 9-byte MAC header), and its
#: macAckWaitDuration of 560 us (Ieee802154NarrowbandMac.ned).
INET_FRAMING = {"ip_udp_bytes": 28, "mac_overhead_bytes": 9, "fragmentation": "ipv4", "ack_wait_s": 560e-6}


def run_network(spec: RunSpec | Mapping[str, Any], inet_framing: bool = False) -> dict[str, float]:
    """A run's figures (``FIGURES``) with the network of ``spec.backend`` (``builtin`` in this process,
    ``omnetpp``: the QESIF model as the peer) and :class:`FixedGrants` for the orchestrator; also
    ``setup_s`` (the workload: topology, flow records, for OMNeT++ the schedule and ini files) and
    ``simulate_s`` (the network's rounds, for OMNeT++ from starting the model to its exit).
    ``inet_framing``: the built-in 802.15.4 model frames packets as INET does (``INET_FRAMING``)."""
    spec = run_spec(spec)
    handler = FixedGrants(spec)
    started = time.perf_counter()
    if spec.backend == "omnetpp":
        from bridge.backends.omnetpp import cosim_peer, require_model
        from bridge.cosim.orchestrator import serve_with_peer

        model = require_model()
        timeout_s = 300.0
        with tempfile.TemporaryDirectory(prefix="qesif-inet-ref-") as workdir:
            endpoint = f"ipc://{workdir}/orchestrator.sock"
            peer, _ = cosim_peer(spec, model, Path(workdir), endpoint, timeout_s=timeout_s)
            ready = time.perf_counter()
            serve_with_peer(handler, endpoint, peer, timeout_s=timeout_s)
        if not handler.finished:
            raise RuntimeError(f"the model said BYE after {len(handler.telemetry)} rounds")
    else:
        from bridge.backends.builtin import builtin_network, drive

        network = builtin_network(spec)
        if inet_framing and isinstance(network.params.access, Ieee802154):
            network.params = replace(network.params, access=replace(network.params.access, **INET_FRAMING))
        ready = time.perf_counter()
        drive(network, handler.handle)
    done = time.perf_counter()
    return {**figures(handler.telemetry), "setup_s": ready - started, "simulate_s": done - ready}


def table2_spec(access: str, backend: str, rounds: int = 10) -> dict[str, Any]:
    """Table 2's network (100 devices, 10 gateways, 100 ms, records' payloads) for ``rounds`` s."""
    spec = config_spec(Config(access, "ack", 10, 0.1, 0), backend)
    spec["network"].update(devices=100, gateways=10, payload_bytes=None)
    spec["rounds"] = rounds
    return spec


def read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of a reference table: the configuration's fields typed, figures as floats."""
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            config = Config(
                access=row["access"],
                reliability=row["reliability"],
                devices_per_gateway=int(row["devices_per_gateway"]),
                mean_interarrival_s=float(row["mean_interarrival_s"]),
                payload_bytes=int(row["payload_bytes"]),
            )
            rows.append({"config": config, **{name: float(row[name]) for name in FIGURES}})
    return rows


def _rows(backend: str) -> Iterator[tuple[Config, dict[str, float], float]]:
    for config in GRID:
        started = time.perf_counter()
        result = run_network(config_spec(config, backend))
        yield config, result, time.perf_counter() - started


def _versions() -> dict[str, str]:
    """Python, and the OMNeT++ and INET the built model uses (their own version files)."""
    from bridge.backends.omnetpp import find_model

    versions = {"python": platform.python_version()}
    model = find_model()
    if model is not None:
        omnetpp_version = model.omnetpp_lib.parent / "Version"
        if omnetpp_version.is_file():
            versions["omnetpp"] = omnetpp_version.read_text(encoding="utf-8").strip()
        defs = model.inet_src / "inet" / "common" / "INETDefs.h"
        if defs.is_file():
            text = defs.read_text(encoding="utf-8")
            found = dict(re.findall(r"#define (INET_VERSION|INET_PATCH_LEVEL)\s+0x([0-9a-fA-F]+)", text))
            if "INET_VERSION" in found:
                number = int(found["INET_VERSION"], 16)
                versions["inet"] = (
                    f"{number >> 8}.{number & 0xFF}.{int(found.get('INET_PATCH_LEVEL', '0'), 16)}"
                )
    return versions


def main(argv: list[str] | None = None) -> int:
    """Write the reference table of the grid (see the module docstring)."""
    from bridge.provenance import code_fingerprint

    parser = argparse.ArgumentParser(
        prog="python -m bridge.backends.inet_reference", description=main.__doc__
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="folder for reference.csv and provenance.json"
    )
    parser.add_argument("--backend", choices=("omnetpp", "builtin"), default="omnetpp")
    args = parser.parse_args(argv)
    fingerprint = code_fingerprint()  # of the code that runs, before anything can change it
    args.out.mkdir(parents=True, exist_ok=True)
    walls: dict[str, float] = {}
    with (args.out / "reference.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([*asdict(GRID[0]), *FIGURES])
        for config, result, wall in _rows(args.backend):
            writer.writerow([*asdict(config).values(), *(_format(result[name]) for name in FIGURES)])
            handle.flush()
            walls[config.name] = round(wall, 2)
            print(f"{config.name}: {result} ({wall:.1f} s)", file=sys.stderr)
    provenance = {
        "command": f"python -m bridge.backends.inet_reference --out {args.out} --backend {args.backend}",
        "backend": args.backend,
        "seed": SEED,
        "rounds": ROUNDS,
        "round_duration_s": ROUND_DURATION_S,
        "gateways": GATEWAYS,
        "code_fingerprint": fingerprint,
        "versions": _versions(),
        "wall_s": walls,
    }
    (args.out / "provenance.json").write_text(json.dumps(provenance, indent=1) + "\n", encoding="utf-8")
    return 0


def _format(value: float) -> str:
    return f"{value:.6g}"


if __name__ == "__main__":
    sys.exit(main())
