"""The MQTT half of the testbed: QKD keys from the ETSI GS QKD 014 KME protect real MQTT traffic, with a
Q-IDS-driven classical fallback.

A real Mosquitto broker runs on 127.0.0.1 with two listeners: a TLS-PSK listener whose ``psk_file`` is
written from keys the broker's SAE takes with ``enc_keys`` (master side), and a classical listener (TLS 1.3,
ECDHE, mutual certificate authentication with the KME's local CA). A client in quantum mode takes the same
key with ``dec_keys`` (slave side) and connects with paho-mqtt over TLS 1.2 PSK (``sslpsk3``: Python 3.11's
``ssl`` has no PSK API); a client in classical mode connects to the certificate listener.

The run is a sequence of key epochs. Each epoch starts with one QKD block per client link on the KME
(the attacker of the scenario's ``eavesdrop`` interval switched on for the attacked links) and one step
of Algorithm 2 (the Q-IDS) over every link's trace so far; a flagged link, or a KME without a key for it,
puts its client in classical mode for the epoch, a clean link in quantum mode with a fresh key. Rekeying
rewrites the psk_file (only clients in quantum mode keep an entry), sends SIGHUP (mosquitto reloads
``psk_file`` on it) and reconnects the clients, since a live TLS session keeps its old key. Messages are
QoS 1; a device republishes on its new connection every message of its old one that the broker had not
acknowledged, and the control centre keeps a persistent session, so a switch loses nothing (the
subscriber counts every message by device and sequence number). Latency, throughput, handshake and rekey
times are wall-clock measurements of this machine and go into the same CSV-R layout as the simulations
(``backend`` = ``testbed``).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bridge.backends.workload import record_payloads
from bridge.cosim.orchestrator import qids_calibration
from bridge.datasets import load_flows
from bridge.services import kme_certs
from bridge.services.coap import CoapTestbed, missing_coap
from bridge.services.kme import KeyStore, KmeConfig, KmeServer
from bridge.store import ResultStore, encode
from qesif_core.errors import UserInputError
from qesif_core.qids.anomaly import CALIBRATION_MODES, QidsParams, key_drop_ratio, run_matrices
from qesif_core.qkd.channel import CHANNEL_PRESETS, EAVESDROPPED_FRACTION

BROKER_SAE = "SAE-broker"
CONTROL_CENTRE_SAE = "SAE-cc"
PSK_HINT = "qesif"
TOPIC_PREFIX = "qesif"
HEADER_BYTES = 16  # sequence number and send time (ns) at the start of every payload
MOSQUITTO_SBIN = Path("/usr/sbin/mosquitto")
QUANTUM, CLASSICAL = "quantum", "classical"
DEFAULT_CALIBRATION_BLOCKS = 8
CSVR_COLUMNS = ["run", "type", "module", "name", "attrname", "attrvalue", "value", "vectime", "vecvalue"]


class TestbedUnavailable(RuntimeError):
    """A system program or Python package the testbed needs is missing (the message names it)."""


class KeySupplyError(RuntimeError):
    """The KME delivered no key (503 when the QKD link yielded none); names the status, never a key."""


class HandshakeRefused(ConnectionError):
    """The broker refused a client's TLS handshake, or sent no CONNACK in time."""


class PskRefused(HandshakeRefused):
    """The broker refused a client's TLS-PSK handshake (wrong, unknown or revoked key)."""


def missing_requirements() -> list[str]:
    """Names of what the testbed needs and this machine lacks (empty when it can run)."""
    missing = []
    if _find_mosquitto() is None:
        missing.append("mosquitto (Debian package `mosquitto`)")
    for module, package in (("paho.mqtt.client", "paho-mqtt"), ("sslpsk3", "sslpsk3")):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"{package} (Python package)")
    return missing


def _find_mosquitto() -> str | None:
    """The broker on PATH, or in /usr/sbin (Debian's place, often off a normal user's PATH)."""
    return shutil.which("mosquitto") or (str(MOSQUITTO_SBIN) if MOSQUITTO_SBIN.is_file() else None)


def _mosquitto_binary() -> str:
    found = _find_mosquitto()
    if found is None:
        raise TestbedUnavailable("mosquitto not found (install the Debian package `mosquitto`)")
    return found


@dataclass(frozen=True)
class Eavesdrop:
    """An attacker (intercept-resend on the ``eavesdropped`` preset's fraction of pulses, on top of the run's
    channel) on the QKD links of ``devices`` (indices; all devices when None) in epochs [start, end)."""

    start_epoch: int
    end_epoch: int
    devices: tuple[int, ...] | None = None
    coap_devices: tuple[int, ...] = ()

    def attacks(self, device: int, epoch: int) -> bool:
        in_devices = self.devices is None or device in self.devices
        return in_devices and self.start_epoch <= epoch < self.end_epoch

    def attacks_coap(self, device: int, epoch: int) -> bool:
        return device in self.coap_devices and self.start_epoch <= epoch < self.end_epoch


@dataclass(frozen=True)
class TestbedConfig:
    """One testbed run: how many devices publish how many dataset-driven messages, with how many rekeys."""

    __test__ = False  # not a pytest class despite the name

    devices: int = 3
    messages_per_device: int = 50
    rekeys: int = 1
    seed: int = 1
    dataset: str = "ton_iot"
    dataset_path: str | None = None
    channel: str = "clean"
    coap_devices: int = 0  # CoAP devices (OSCORE keyed from the KME) besides the MQTT devices
    pulses_per_block: int = 10**7
    timeout_s: float = 30.0
    publish_interval_s: float = 0.0  # pause after each device round of publishes; 0: back-to-back bursts
    eavesdrop: Eavesdrop | None = None
    # Algorithm 2's QidsParams fields, and the calibration mode and block count
    qids: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "testbed") -> TestbedConfig:
        """Checked config from a scenario mapping; unknown fields and bad values name the field."""
        if not isinstance(values, Mapping):
            raise UserInputError(
                f"{source}: the testbed scenario must be a mapping, got {type(values).__name__}"
            )
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserInputError(f"{source}: unknown field(s) {unknown}; known: {sorted(known)}")
        bounds = {
            "devices": (1, 50),
            "coap_devices": (0, 50),
            "messages_per_device": (1, 100_000),
            "rekeys": (0, 100),
            "seed": (0, 2**63 - 1),
            "pulses_per_block": (10**5, 10**9),
        }
        kwargs: dict[str, Any] = {}
        for name, (low, high) in bounds.items():
            if name in values:
                value = values[name]
                if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                    raise UserInputError(
                        f"{source}: {name} must be an integer in [{low}, {high}], got {value!r}"
                    )
                kwargs[name] = value
        for name in ("dataset", "channel"):
            if name in values:
                if not isinstance(values[name], str):
                    raise UserInputError(f"{source}: {name} must be a string, got {values[name]!r}")
                kwargs[name] = values[name]
        if values.get("dataset_path") is not None:
            path = values["dataset_path"]
            if not isinstance(path, str) or not Path(path).is_file():
                raise UserInputError(f"{source}: dataset_path {path!r} is not a file")
            kwargs["dataset_path"] = path
        for name, (low, high) in {"timeout_s": (1, 3600), "publish_interval_s": (0, 60)}.items():
            if name in values:
                value = values[name]
                if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                    raise UserInputError(
                        f"{source}: {name} must be a number in [{low}, {high}], got {value!r}"
                    )
                kwargs[name] = float(value)
        if values.get("qids") is not None:
            kwargs["qids"] = _checked_qids(values["qids"], source)
        config = cls(**kwargs)
        if config.rekeys >= config.messages_per_device:
            raise UserInputError(
                f"{source}: rekeys ({config.rekeys}) must be below messages_per_device "
                f"({config.messages_per_device}): every key epoch carries at least one message"
            )
        if config.channel not in CHANNEL_PRESETS:
            raise UserInputError(
                f"{source}: channel must be one of {', '.join(CHANNEL_PRESETS)}, got {config.channel!r}"
            )
        if values.get("eavesdrop") is not None:
            config = dataclasses.replace(
                config, eavesdrop=_checked_eavesdrop(values["eavesdrop"], config, source)
            )
        return config

    @property
    def epochs(self) -> int:
        return self.rekeys + 1

    def spec(self) -> dict[str, Any]:
        """The run's description for the results store (JSON-able; ``channel`` as the simulations have it)."""
        return {
            "backend": "testbed",
            "seed": self.seed,
            "dataset": {"name": self.dataset, "path": self.dataset_path},
            "channel": {"name": self.channel, **dataclasses.asdict(CHANNEL_PRESETS[self.channel])},
            "testbed": json.loads(json.dumps(dataclasses.asdict(self))),
        }

    def qids_params(self) -> QidsParams:
        return QidsParams(
            **{k: v for k, v in self.qids.items() if k not in ("calibration", "calibration_blocks")}
        )

    @property
    def device_saes(self) -> list[str]:
        return [f"SAE-dev{i}" for i in range(self.devices)]

    @property
    def coap_saes(self) -> list[str]:
        return [f"SAE-coap{i}" for i in range(self.coap_devices)]


def _checked_qids(raw: Any, source: str) -> dict[str, Any]:
    """The ``qids`` mapping: QidsParams fields plus ``calibration`` and ``calibration_blocks``."""
    if not isinstance(raw, Mapping):
        raise UserInputError(f"{source}: qids must be a mapping, got {raw!r}")
    names = {f.name for f in dataclasses.fields(QidsParams)}
    unknown = sorted(set(raw) - names - {"calibration", "calibration_blocks"})
    if unknown:
        raise UserInputError(f"{source}: unknown qids field(s) {unknown}")
    values = {k: (tuple(v) if k == "weights" and isinstance(v, list) else v) for k, v in raw.items()}
    try:
        QidsParams(**{k: v for k, v in values.items() if k in names})
    except TypeError as error:
        raise UserInputError(f"{source}: qids: {error}") from None
    mode = values.get("calibration", CALIBRATION_MODES[0])
    if mode not in CALIBRATION_MODES:
        raise UserInputError(f"{source}: qids.calibration must be one of {CALIBRATION_MODES}, got {mode!r}")
    blocks = values.get("calibration_blocks", DEFAULT_CALIBRATION_BLOCKS)
    if isinstance(blocks, bool) or not isinstance(blocks, int) or not 2 <= blocks <= 1000:
        raise UserInputError(
            f"{source}: qids.calibration_blocks must be an integer in [2, 1000], got {blocks!r}"
        )
    return values


def _checked_eavesdrop(raw: Any, config: TestbedConfig, source: str) -> Eavesdrop:
    """``eavesdrop: {start_epoch, end_epoch, devices}``: epochs within the run, device indices in range."""
    if not isinstance(raw, Mapping):
        raise UserInputError(f"{source}: eavesdrop must be a mapping, got {raw!r}")
    unknown = sorted(set(raw) - {"start_epoch", "end_epoch", "devices", "coap_devices"})
    if unknown:
        raise UserInputError(f"{source}: unknown eavesdrop field(s) {unknown}")
    bounds = []
    for name in ("start_epoch", "end_epoch"):
        value = raw.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= config.epochs:
            raise UserInputError(
                f"{source}: eavesdrop.{name} must be an integer in [0, {config.epochs}] "
                f"(epochs = rekeys + 1), got {value!r}"
            )
        bounds.append(value)
    if bounds[0] >= bounds[1]:
        raise UserInputError(f"{source}: eavesdrop.start_epoch must be below end_epoch, got {bounds}")
    devices = raw.get("devices")
    if devices is not None:
        devices = _indices(devices, config.devices, "eavesdrop.devices", source)
    coap = raw.get("coap_devices")
    coap = () if coap is None else _indices(coap, config.coap_devices, "eavesdrop.coap_devices", source)
    return Eavesdrop(bounds[0], bounds[1], devices, coap)


def _indices(raw: Any, count: int, name: str, source: str) -> tuple[int, ...]:
    if (
        not isinstance(raw, list)
        or not raw
        or any(isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < count for d in raw)
    ):
        raise UserInputError(
            f"{source}: {name} must be a non-empty list of device indices in [0, {count - 1}], got {raw!r}"
        )
    return tuple(sorted(set(raw)))


class KmeKeyClient:
    """An SAE's ETSI GS QKD 014 client (mutual TLS with its certificate); key bytes stay in memory only."""

    def __init__(self, certs: kme_certs.CertPaths, sae: str, address: tuple[str, int]) -> None:
        self.sae = sae
        self._address = address
        self._tls = ssl.create_default_context(cafile=str(certs.ca_cert))
        self._tls.load_cert_chain(certs.sae_cert(sae), certs.sae_key(sae))

    def _get(self, path: str) -> dict[str, Any]:
        host, port = self._address
        connection = http.client.HTTPSConnection(host, port, context=self._tls, timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise KeySupplyError(f"KME answered {response.status} to {self.sae} for {path.split('?')[0]}")
        return json.loads(body)

    def enc_key(self, slave: str) -> tuple[str, bytes]:
        """(key_ID, key) of one new key shared with ``slave`` (this SAE is the master)."""
        entry = self._get(f"/api/v1/keys/{slave}/enc_keys?number=1")["keys"][0]
        return entry["key_ID"], base64.b64decode(entry["key"])

    def dec_key(self, master: str, key_id: str) -> bytes:
        """The key ``key_ID`` that ``master`` took with enc_keys (this SAE is the slave)."""
        entry = self._get(f"/api/v1/keys/{master}/dec_keys?key_ID={key_id}")["keys"][0]
        return base64.b64decode(entry["key"])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MosquittoBroker:
    """A Mosquitto process on 127.0.0.1 with a TLS-PSK listener and, given ``certs``, a classical listener
    (TLS 1.3 with ECDHE, server and client certificates of the KME's CA); stopped by pid on ``stop``/exit.

    Mosquitto 2.0 reads port 0 as a unix socket, so free ports are picked first and the start retried on
    the rare race with another process taking one.
    """

    def __init__(
        self,
        workdir: Path,
        psks: Mapping[str, bytes],
        start_timeout_s: float = 10.0,
        certs: kme_certs.CertPaths | None = None,
    ) -> None:
        self.workdir = workdir
        self.psk_file = workdir / "psk.txt"
        self.config_file = workdir / "mosquitto.conf"
        self.log_file = workdir / "mosquitto.log"
        self.certs = certs
        self.port = 0
        self.classical_port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._start_timeout_s = start_timeout_s
        self.write_psks(psks)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def write_psks(self, psks: Mapping[str, bytes]) -> None:
        """Write ``identity:hexkey`` lines (mode 0600, replaced atomically), mosquitto's psk_file format."""
        tmp = self.psk_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            for identity, key in psks.items():
                out.write(f"{identity}:{key.hex()}\n")
        os.replace(tmp, self.psk_file)

    def _write_config(self) -> None:
        classical = []
        if self.certs is not None:
            classical = [
                f"listener {self.classical_port} 127.0.0.1",
                f"cafile {self.certs.ca_cert}",
                f"certfile {self.certs.server_cert}",
                f"keyfile {self.certs.server_key}",
                "tls_version tlsv1.3",
                "require_certificate true",
                "use_identity_as_username true",  # the certificate's CN (the SAE ID) is the MQTT username
            ]
        self.config_file.write_text(
            "\n".join(
                [
                    # as root mosquitto would switch to user "mosquitto", who cannot read our 0600 psk_file
                    f"user {pwd.getpwuid(os.geteuid()).pw_name}",
                    "per_listener_settings false",
                    "allow_anonymous false",
                    "persistence false",
                    "max_queued_messages 0",  # no cap: a QoS 1 message queued for an absent subscriber stays
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    f"listener {self.port} 127.0.0.1",
                    f"psk_hint {PSK_HINT}",
                    f"psk_file {self.psk_file}",
                    "use_identity_as_username true",
                    *classical,
                    "",
                ]
            )
        )

    def start(self) -> MosquittoBroker:
        binary = _mosquitto_binary()
        for _attempt in range(5):
            self.port = _free_port()
            self.classical_port = _free_port() if self.certs is not None else 0
            self._write_config()
            with open(self.log_file, "ab") as log:
                self._process = subprocess.Popen(
                    [binary, "-c", str(self.config_file)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            if self._wait_listening():
                return self
            self.stop()
        raise RuntimeError(f"mosquitto did not start; log tail: {self._log_tail()}")

    def _wait_listening(self) -> bool:
        deadline = time.monotonic() + self._start_timeout_s
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            try:
                for port in (self.port, self.classical_port):
                    if port:
                        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                            pass
                return True
            except OSError:
                time.sleep(0.02)
        return False

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_file.read_text().splitlines()[-5:])
        except OSError:
            return "(no log)"

    def reload(self) -> None:
        """SIGHUP: mosquitto re-reads its config, psk_file included (live sessions keep their keys)."""
        if self._process is None or self._process.poll() is not None:
            raise RuntimeError("mosquitto is not running")
        self._process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tracking(base: type[ssl.SSLContext]) -> type[ssl.SSLContext]:
    """``base`` remembering the sockets it wraps, so a refused handshake's socket can be closed (paho
    leaves it open)."""

    class TrackingContext(base):  # type: ignore[misc, valid-type]
        sockets: list[ssl.SSLSocket]

        def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
            sock = super().wrap_socket(*args, **kwargs)
            self.sockets.append(sock)
            return sock

    return TrackingContext


def psk_context(identity: str, key: bytes) -> Any:
    """A TLS 1.2 PSK client context offering ``identity`` with ``key`` (no certificates involved)."""
    from sslpsk3.sslpsk3 import SSLPSKContext

    context = _tracking(SSLPSKContext)(ssl.PROTOCOL_TLS_CLIENT)
    context.sockets = []
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("PSK")
    context.set_psk_client_callback(lambda _hint: (identity, key))
    return context


def certificate_context(certs: kme_certs.CertPaths, identity: str) -> Any:
    """The classical client context: TLS 1.3 (ECDHE key exchange), the broker's certificate verified against
    the KME's CA (its SAN holds 127.0.0.1), and ``identity``'s own certificate for mutual authentication."""
    context = _tracking(ssl.SSLContext)(ssl.PROTOCOL_TLS_CLIENT)
    context.sockets = []
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_verify_locations(cafile=str(certs.ca_cert))
    context.load_cert_chain(certs.sae_cert(identity), certs.sae_key(identity))
    return context


@dataclass
class MqttPskClient:
    """One paho-mqtt client over TLS-PSK (``connect``) or TLS with certificates (``connect_classical``);
    both return the time to CONNACK (TCP + TLS + MQTT). ``clean_session`` False keeps the broker-side
    session (subscriptions, queued QoS 1 messages) across reconnects."""

    identity: str
    port: int
    on_message: Any = None
    clean_session: bool = True
    classical_port: int = 0
    _client: Any = field(default=None, repr=False)
    _connected: threading.Event = field(default_factory=threading.Event, repr=False)

    def connect(self, key: bytes, timeout_s: float) -> float:
        context = psk_context(self.identity, key)
        try:
            return self._connect(context, self.port, timeout_s)
        except HandshakeRefused as error:
            raise PskRefused(f"broker refused the TLS-PSK handshake of {self.identity}") from error

    def connect_classical(self, certs: kme_certs.CertPaths, timeout_s: float) -> float:
        return self._connect(certificate_context(certs, self.identity), self.classical_port, timeout_s)

    @property
    def tls_socket(self) -> ssl.SSLSocket | None:
        """The live connection's TLS socket (for its negotiated version and cipher)."""
        return None if self._client is None else self._client.socket()

    def _connect(self, context: Any, port: int, timeout_s: float) -> float:
        import paho.mqtt.client as mqtt

        self._connected.clear()
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.identity, clean_session=self.clean_session
        )
        client.tls_set_context(context)
        client.on_connect = lambda _c, _u, _f, reason, _p: (not reason.is_failure) and self._connected.set()
        if self.on_message is not None:
            client.on_message = self.on_message
        started = time.perf_counter()
        try:
            client.connect("127.0.0.1", port, keepalive=60)
        except (ssl.SSLError, ConnectionError, OSError) as error:
            for sock in context.sockets:  # paho leaves the socket of a failed TLS handshake open
                sock.close()
            raise HandshakeRefused(f"broker refused the TLS handshake of {self.identity}") from error
        client.loop_start()
        if not self._connected.wait(timeout_s):
            client.disconnect()
            client.loop_stop()
            raise HandshakeRefused(f"no CONNACK for {self.identity} within {timeout_s} s")
        self._client = client
        return time.perf_counter() - started

    def subscribe(self, topic: str, timeout_s: float) -> None:
        done = threading.Event()
        self._client.on_subscribe = lambda *_args: done.set()
        self._client.subscribe(topic, qos=1)
        if not done.wait(timeout_s):
            raise RuntimeError(f"no SUBACK for {self.identity} within {timeout_s} s")

    def publish(self, topic: str, payload: bytes) -> Any:
        return self._client.publish(topic, payload, qos=1)

    def disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()


def payload_sizes(config: TestbedConfig, rng: np.random.Generator) -> np.ndarray:
    """Per device and message, the payload size in bytes: one flow each, sized by the simulations' rule
    (``bridge.backends.workload.record_payloads``: the flow's mean bytes per packet, clipped to 16..256)."""
    n = config.devices * config.messages_per_device
    flows = load_flows(config.dataset, config.dataset_path, rng, max_rows=n)
    if len(flows) == 0:
        raise UserInputError(f"dataset {config.dataset!r} gave no flows")
    sizes = record_payloads(flows["bytes_out"].to_numpy(dtype=float), flows["pkts_out"].to_numpy(dtype=float))
    return np.maximum(np.resize(sizes, n), HEADER_BYTES).astype(np.int64).reshape(config.devices, -1)


class _Receiver:
    """The control centre's inbox: latency of the first copy of every (device, sequence) message, and how
    many copies arrived (QoS 1 is at-least-once: a republished message may arrive twice)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency_ns: dict[tuple[str, int], int] = {}
        self.receive_ns: dict[tuple[str, int], int] = {}  # first copy's arrival
        self.receptions = 0
        self.last_receive_ns = 0

    def on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        now = time.perf_counter_ns()
        sequence = int.from_bytes(message.payload[:8], "big")
        sent = int.from_bytes(message.payload[8:16], "big")
        device = message.topic.split("/")[1]
        with self.lock:
            self.latency_ns.setdefault((device, sequence), now - sent)
            self.receive_ns.setdefault((device, sequence), now)
            self.receptions += 1
            self.last_receive_ns = max(self.last_receive_ns, now)

    def count(self) -> int:
        with self.lock:
            return len(self.latency_ns)


class LinkMonitor:
    """The run's QKD engine and Q-IDS: per epoch one KME block per client link (attacked links on the
    channel with the attacker switched on), then Algorithm 2 over every link's trace so far."""

    def __init__(
        self, config: TestbedConfig, store: KeyStore, pairs: list[tuple[str, str]], rng: np.random.Generator
    ) -> None:
        self.params = config.qids_params()
        self.pairs = pairs
        self._store = store
        self._clean = CHANNEL_PRESETS[config.channel]
        self._attacked = dataclasses.replace(
            self._clean, eve="intercept-resend", eve_fraction=EAVESDROPPED_FRACTION
        )
        section = {"calibration_blocks": DEFAULT_CALIBRATION_BLOCKS, **config.qids}
        self._calibration = qids_calibration(
            self._clean, self.params, section, config.pulses_per_block, "bb84", len(pairs), rng
        )
        self._h_q: list[list[float]] = [[] for _ in pairs]
        self._qber: list[list[float]] = [[] for _ in pairs]
        self._secret_bits: list[list[float]] = [[] for _ in pairs]
        self._channel_attacked = self._clean.eve != "none" and self._clean.eve_fraction > 0
        self.attacked: list[list[bool]] = []  # ground truth per epoch and link: an attacker was on
        self.flags: list[np.ndarray] = []
        self.qber_mean: list[float] = []  # per epoch, over the links

    def step(self, attacked: list[bool]) -> np.ndarray:
        """Run one block per link (``attacked[i]``: attacker on link i) and return Algorithm 2's flags."""
        for i, pair in enumerate(self.pairs):
            outcome = self._store.feed_pair(pair, self._attacked if attacked[i] else self._clean)
            self._h_q[i].append(outcome.h_q)
            self._qber[i].append(outcome.qber)
            self._secret_bits[i].append(outcome.secret_bits)
        drop = key_drop_ratio(np.array(self._secret_bits, dtype=float), self.params.key_drop_window)
        result = run_matrices(
            np.array(self._h_q, dtype=float),
            np.array(self._qber, dtype=float),
            drop,
            self._calibration,
            self.params,
        )
        flags = result.flags[:, -1].copy()
        self.attacked.append([self._channel_attacked or on for on in attacked])
        self.qber_mean.append(float(np.nanmean([qber[-1] for qber in self._qber])))
        self.flags.append(flags)
        return flags


@dataclass
class _Tally:
    """What the run measured besides latency (times in seconds; no key material)."""

    handshakes: dict[str, list[float]] = field(default_factory=lambda: {QUANTUM: [], CLASSICAL: []})
    rekeys: list[float] = field(default_factory=list)
    pauses: list[float] = field(default_factory=list)  # between two epochs' publishing, Q-IDS step included
    keys_used: int = 0
    supply_fallbacks: int = 0
    mode_switches: int = 0
    republished: int = 0
    sent: int = 0
    first_publish_ns: int = 0
    message_mode: dict[tuple[str, int], str] = field(default_factory=dict)
    message_epoch: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)  # (epoch, bytes)
    epoch_first_publish_ns: list[int] = field(default_factory=list)
    publish_s: list[float] = field(default_factory=list)  # per epoch: its publishing loop, pauses included
    classical_clients: list[int] = field(default_factory=list)  # per epoch


def _acked(info: Any) -> bool:
    try:
        return bool(info.is_published())
    except (ValueError, RuntimeError):  # never queued (no connection): not acknowledged
        return False


class _Client:
    """One MQTT client of the run with its mode and its outbox: the QoS 1 messages of the current
    connection, kept until the broker acknowledged them (PUBACK)."""

    def __init__(self, sae: str, mqtt: MqttPskClient) -> None:
        self.sae = sae
        self.mqtt = mqtt
        self.mode: str | None = None
        self.outbox: dict[int, tuple[bytes, Any]] = {}

    def publish(self, sequence: int, payload: bytes) -> None:
        self.outbox[sequence] = (payload, self.mqtt.publish(f"{TOPIC_PREFIX}/{self.sae}/telemetry", payload))

    def disconnect(self) -> list[tuple[int, bytes]]:
        """Close the connection; returns the messages the broker has not acknowledged (to republish)."""
        self.mqtt.disconnect()
        unacked = [(seq, payload) for seq, (payload, info) in sorted(self.outbox.items()) if not _acked(info)]
        self.outbox = {}
        self.mode = None
        return unacked


def run_testbed(config: TestbedConfig, workdir: Path | None = None) -> pd.DataFrame:
    """Run the scenario end to end on this machine and return its CSV-R table (module docstring)."""
    missing = missing_requirements() + (missing_coap() if config.coap_devices else [])
    if missing:
        raise TestbedUnavailable("the testbed needs: " + ", ".join(missing))
    rng = np.random.default_rng(config.seed)
    sizes = payload_sizes(dataclasses.replace(config, devices=config.devices + config.coap_devices), rng)
    with tempfile.TemporaryDirectory(prefix="qesif-testbed-", dir=workdir) as tmp:
        root = Path(tmp)
        clients = [*config.device_saes, CONTROL_CENTRE_SAE]
        certs = kme_certs.generate(root / "certs", [BROKER_SAE, *clients, *config.coap_saes])
        pairs = [(BROKER_SAE, sae) for sae in clients] + [
            (CONTROL_CENTRE_SAE, sae) for sae in config.coap_saes
        ]
        kme_config = KmeConfig.from_mapping(
            {
                "certs": str(certs.root),
                "pairs": [{"master": master, "slave": slave} for master, slave in pairs],
                "port": 0,
                "seed": config.seed,
                "channel": config.channel,
                "pulses_per_block": config.pulses_per_block,
                "block_interval_s": 3600.0,  # the run feeds one block per link and epoch itself
                "initial_blocks": 1,
            },
            "testbed kme",
        )
        with KmeServer(kme_config) as kme:
            monitor = LinkMonitor(config, kme.store, pairs, rng.spawn(1)[0])
            coap = (
                _CoapRun(config, certs, kme.address, sizes[config.devices :]) if config.coap_devices else None
            )
            return _TestbedRun(config, root, certs, kme.address, clients, monitor, coap).run(
                sizes[: config.devices]
            )


class _TestbedRun:
    """One run's clients, broker and tallies; ``run`` goes through the key epochs."""

    def __init__(
        self,
        config: TestbedConfig,
        root: Path,
        certs: kme_certs.CertPaths,
        kme_address: tuple[str, int],
        client_saes: list[str],
        monitor: LinkMonitor,
        coap: _CoapRun | None = None,
    ) -> None:
        self.config = config
        self.certs = certs
        self.monitor = monitor
        self.coap = coap
        self.broker_sae = KmeKeyClient(certs, BROKER_SAE, kme_address)
        self.slaves = {sae: KmeKeyClient(certs, sae, kme_address) for sae in client_saes}
        self.receiver = _Receiver()
        self.clients = {
            sae: _Client(
                sae,
                MqttPskClient(
                    sae,
                    0,
                    on_message=self.receiver.on_message if sae == CONTROL_CENTRE_SAE else None,
                    clean_session=sae != CONTROL_CENTRE_SAE,  # the broker queues for an absent control centre
                ),
            )
            for sae in client_saes
        }
        self.broker = MosquittoBroker(root, {}, certs=certs)
        self.tally = _Tally()

    def run(self, sizes: np.ndarray) -> pd.DataFrame:
        eavesdrop = self.config.eavesdrop
        try:
            if self.coap is not None:
                self.coap.start()
            for epoch, sequences in enumerate(
                np.array_split(np.arange(self.config.messages_per_device), self.config.epochs)
            ):
                paused = time.perf_counter()
                if self.coap is not None:
                    self.coap.finish_epoch()
                attacked = [
                    eavesdrop is not None and eavesdrop.attacks(i, epoch) for i in range(self.config.devices)
                ]
                attacked.append(False)  # the control centre's link is never attacked
                attacked += [
                    eavesdrop is not None and eavesdrop.attacks_coap(i, epoch)
                    for i in range(self.config.coap_devices)
                ]
                flags = dict(
                    zip(
                        [slave for _master, slave in self.monitor.pairs],
                        self.monitor.step(attacked),
                        strict=True,
                    )
                )
                started = time.perf_counter()
                self._start_epoch(epoch, flags)
                if epoch > 0:
                    self.tally.rekeys.append(time.perf_counter() - started)
                    self.tally.pauses.append(time.perf_counter() - paused)
                self.tally.classical_clients.append(
                    sum(client.mode == CLASSICAL for client in self.clients.values())
                )
                if self.coap is not None:
                    self.coap.start_epoch(epoch, flags)
                    self.coap.post(sequences)  # in the background, while the MQTT devices publish
                self._publish(sequences, sizes)
            if self.coap is not None:
                self.coap.finish_epoch()
            _wait_delivered(self.receiver, self.tally.sent, self.config.timeout_s)
            deadline = time.monotonic() + self.config.timeout_s
            for client in self.clients.values():
                for _payload, info in client.outbox.values():
                    info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        finally:
            for client in self.clients.values():
                client.mqtt.disconnect()
            self.broker.stop()
            if self.coap is not None:
                self.coap.stop()
        table = _results_table(self.config, self.receiver, self.tally, self.monitor)
        if self.coap is None:
            return table
        coap_rows = pd.DataFrame(
            [
                {"type": "scalar", "module": "coap", "name": n, "value": float(v)}
                for n, v in self.coap.scalars().items()
            ],
            columns=CSVR_COLUMNS,
        )
        coap_rows["run"] = table["run"].iloc[0]
        table.loc[(table["module"] == "keys") & (table["name"] == "keys_used"), "value"] += (
            self.coap.keys_used
        )
        return pd.concat([table, coap_rows], ignore_index=True)

    def _start_epoch(self, epoch: int, flagged: Mapping[str, bool]) -> None:
        """Plan every client's mode for the epoch, rekey and move clients between listeners (break before
        make), then republish what the broker had not acknowledged on the old connections."""
        wanted = {sae: CLASSICAL if flagged[sae] else QUANTUM for sae in self.clients}
        broker_keys, client_keys = {}, {}
        for sae in self.clients:
            if wanted[sae] != QUANTUM:
                continue
            try:
                key_id, broker_keys[sae] = self.broker_sae.enc_key(sae)
                client_keys[sae] = self.slaves[sae].dec_key(BROKER_SAE, key_id)
                self.tally.keys_used += 1
            except KeySupplyError:  # the KME holds no key for this link: classical for this epoch
                broker_keys.pop(sae, None)
                wanted[sae] = CLASSICAL
                self.tally.supply_fallbacks += 1
        unacked: dict[str, list[tuple[int, bytes]]] = {}
        previous = {sae: client.mode for sae, client in self.clients.items()}
        for sae, client in self.clients.items():
            if client.mode == QUANTUM or (client.mode is not None and wanted[sae] == QUANTUM):
                unacked[sae] = client.disconnect()
        self.broker.write_psks(
            broker_keys
        )  # clients in classical mode have no entry: their old key is revoked
        if epoch == 0:
            self.broker.start()
            for client in self.clients.values():
                client.mqtt.port, client.mqtt.classical_port = self.broker.port, self.broker.classical_port
        else:
            self.broker.reload()
        for sae, client in self.clients.items():
            if client.mode is not None:
                continue  # a classical session that stays classical keeps its connection
            self.tally.handshakes[wanted[sae]].append(
                self._connect(client.mqtt, wanted[sae], client_keys.get(sae))
            )
            client.mode = wanted[sae]
            if previous[sae] is not None and previous[sae] != wanted[sae]:
                self.tally.mode_switches += 1
            if sae == CONTROL_CENTRE_SAE:
                client.mqtt.subscribe(f"{TOPIC_PREFIX}/+/telemetry", self.config.timeout_s)
        for sae, messages in unacked.items():
            for sequence, payload in messages:
                self.clients[sae].publish(sequence, payload)
            self.tally.republished += len(messages)

    def _connect(self, client: MqttPskClient, mode: str, key: bytes | None) -> float:
        """Connect in ``mode``, retrying while the broker may still hold the previous psk_file."""
        deadline = time.monotonic() + self.config.timeout_s
        while True:
            try:
                if mode == QUANTUM:
                    return client.connect(key, self.config.timeout_s)
                return client.connect_classical(self.certs, self.config.timeout_s)
            except HandshakeRefused:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _publish(self, sequences: np.ndarray, sizes: np.ndarray) -> None:
        epoch = len(self.tally.epoch_first_publish_ns)
        started = time.perf_counter_ns()
        self.tally.epoch_first_publish_ns.append(started)
        for sequence in sequences:
            for index, sae in enumerate(self.config.device_saes):
                size = int(sizes[index, sequence])
                now = time.perf_counter_ns()
                self.tally.first_publish_ns = self.tally.first_publish_ns or now
                payload = (
                    int(sequence).to_bytes(8, "big") + now.to_bytes(8, "big") + bytes(size - HEADER_BYTES)
                )
                client = self.clients[sae]
                client.publish(int(sequence), payload)
                self.tally.message_mode[(sae, int(sequence))] = client.mode or QUANTUM
                self.tally.message_epoch[(sae, int(sequence))] = (epoch, size)
                self.tally.sent += 1
            if self.config.publish_interval_s > 0:
                time.sleep(self.config.publish_interval_s)
        self.tally.publish_s.append((time.perf_counter_ns() - started) / 1e9)


class _CoapRun:
    """The run's CoAP devices: per key epoch an OSCORE context per device from a new KME key (master: the
    control centre's SAE, which runs the CoAP server); a device whose link is flagged or has no key goes
    classical (EDHOC, then OSCORE from its exporter) and keeps that session until its link is usable."""

    def __init__(
        self,
        config: TestbedConfig,
        certs: kme_certs.CertPaths,
        kme_address: tuple[str, int],
        sizes: np.ndarray,
    ) -> None:
        self.saes = config.coap_saes
        self.sizes = sizes
        self.master = KmeKeyClient(certs, CONTROL_CENTRE_SAE, kme_address)
        self.slaves = {sae: KmeKeyClient(certs, sae, kme_address) for sae in self.saes}
        self.testbed = CoapTestbed(self.saes, config.timeout_s)
        self.mode: dict[str, str | None] = {sae: None for sae in self.saes}
        self.rekeys: list[float] = []
        self.sent = {QUANTUM: 0, CLASSICAL: 0}
        self.keys_used = self.supply_fallbacks = self.mode_switches = 0
        self._posting: Any = None

    def start(self) -> None:
        self.testbed.start()

    def stop(self) -> None:
        self.testbed.stop()

    def start_epoch(self, epoch: int, flagged: Mapping[str, bool]) -> None:
        started = time.perf_counter()
        for index, sae in enumerate(self.saes):
            mode = CLASSICAL if flagged[sae] else QUANTUM
            if mode == QUANTUM:
                try:
                    key_id, server_key = self.master.enc_key(sae)
                    device_key = self.slaves[sae].dec_key(CONTROL_CENTRE_SAE, key_id)
                except KeySupplyError:
                    mode = CLASSICAL
                    self.supply_fallbacks += 1
                else:
                    self.keys_used += 1
                    self.testbed.set_server_key(index, key_id, server_key)
                    self.testbed.set_device_key(index, key_id, device_key)
            if mode == CLASSICAL and self.mode[sae] != CLASSICAL:
                self.testbed.set_classical(index)  # an EDHOC session lasts while the device stays classical
            if self.mode[sae] is not None and self.mode[sae] != mode:
                self.mode_switches += 1
            self.mode[sae] = mode
        if epoch > 0:
            self.rekeys.append(time.perf_counter() - started)

    def post(self, sequences: np.ndarray) -> None:
        messages = {}
        for index, sae in enumerate(self.saes):
            messages[sae] = [(int(s), int(self.sizes[index, s])) for s in sequences]
            self.sent[self.mode[sae] or QUANTUM] += len(messages[sae])
        self._posting = self.testbed.start_posting(messages)

    def finish_epoch(self) -> None:
        if self._posting is not None:
            posting, self._posting = self._posting, None
            self.testbed.finish(posting)

    def scalars(self) -> dict[str, float]:
        latencies_ms = np.array(list(self.testbed.latency_ns.values()), dtype=float) / 1e6
        delivered = latencies_ms.size
        sent = sum(self.sent.values())
        busy_s = self.testbed.busy_s
        return {
            "messages_sent": sent,
            "messages_delivered": delivered,
            "messages_lost": sent - delivered,
            "messages_quantum": self.sent[QUANTUM],
            "messages_classical": self.sent[CLASSICAL],
            "latency_median_ms": float(np.median(latencies_ms)) if delivered else np.nan,
            "latency_p95_ms": float(np.percentile(latencies_ms, 95)) if delivered else np.nan,
            "messages_per_s": delivered / busy_s if delivered and busy_s > 0 else np.nan,
            "refusals": self.testbed.refusals,
            "failures": self.testbed.failures,
            "rekey_median_ms": 1e3 * float(np.median(self.rekeys)) if self.rekeys else np.nan,
            "keys_used": self.keys_used,
            "edhoc_sessions": self.testbed.edhoc_sessions,
            "mode_switches": self.mode_switches,
            "supply_fallbacks": self.supply_fallbacks,
        }


def store_run(table: pd.DataFrame, config: TestbedConfig, root: str | Path) -> str:
    """Save a run's table in the results store at ``root``, beside the simulations' runs, under the key
    ``testbed-<seed>-<first 12 hex of SHA-256 of its spec>`` (two scenarios with one seed stay apart) and
    list it in the store's ``testbed`` manifest when the store uses manifests; returns the key."""
    spec = config.spec()
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    key = f"testbed-{config.seed}-{digest[:12]}"
    store = ResultStore(root)
    uses_manifests = store.manifest_keys() is not None or not store.finished_keys()
    store.save_run(key, encode(table, key, spec, {}))
    if uses_manifests:
        manifest = store.scenarios_dir / "testbed.json"
        keys = json.loads(manifest.read_text())["keys"] if manifest.is_file() else []
        store.save_manifest("testbed", list(dict.fromkeys([*keys, key])))
    return key


def _wait_delivered(receiver: _Receiver, expected: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while receiver.count() < expected and time.monotonic() < deadline:
        time.sleep(0.005)


def _results_table(
    config: TestbedConfig, receiver: _Receiver, tally: _Tally, monitor: LinkMonitor
) -> pd.DataFrame:
    with receiver.lock:
        latency = dict(receiver.latency_ns)
        receive_ns = dict(receiver.receive_ns)
        receptions = receiver.receptions
        last_receive_ns = receiver.last_receive_ns
    latencies_ms = np.array(list(latency.values()), dtype=float) / 1e6
    delivered = latencies_ms.size
    rows: list[dict[str, Any]] = [
        {"type": "runattr", "attrname": name, "attrvalue": value}
        for name, value in {
            "dataset": config.dataset,
            "channel": config.channel,
            "scheme": "testbed (measured)",
            "seed": str(config.seed),
            "backend": "testbed",
            "synthetic": str(config.dataset_path is None).lower(),
        }.items()
    ]

    def scalar(module: str, name: str, value: float) -> None:
        rows.append({"type": "scalar", "module": module, "name": name, "value": float(value)})

    def median_ms(seconds: list[float]) -> float:
        return 1e3 * float(np.median(seconds)) if seconds else float("nan")

    def percentile(values: np.ndarray, q: float) -> float:
        return float(np.percentile(values, q)) if values.size else float("nan")

    scalar("network", "latency_median_ms", percentile(latencies_ms, 50))
    scalar("network", "latency_p95_ms", percentile(latencies_ms, 95))
    scalar("network", "latency_mean_ms", latencies_ms.mean() if delivered else np.nan)
    scalar("network", "messages_sent", tally.sent)
    scalar("network", "messages_delivered", delivered)
    scalar("network", "messages_lost", tally.sent - delivered)
    scalar("network", "duplicates", receptions - delivered)
    active_s = (last_receive_ns - tally.first_publish_ns) / 1e9 - sum(tally.pauses)
    scalar("network", "messages_per_s", delivered / active_s if delivered and active_s > 0 else np.nan)
    delivered_bits = 8 * sum(
        size for message, (_epoch, size) in tally.message_epoch.items() if message in latency
    )
    scalar("network", "goodput_kbps", delivered_bits / active_s / 1e3 if active_s > 0 else np.nan)
    scalar("testbed", "interarrival_ms", 1e3 * sum(tally.publish_s) / config.messages_per_device)
    scalar("testbed", "handshake_median_ms", median_ms(tally.handshakes[QUANTUM]))
    scalar("testbed", "handshakes", len(tally.handshakes[QUANTUM]))
    scalar("testbed", "classical_handshake_median_ms", median_ms(tally.handshakes[CLASSICAL]))
    scalar("testbed", "classical_handshakes", len(tally.handshakes[CLASSICAL]))
    scalar("testbed", "rekey_median_ms", median_ms(tally.rekeys))
    scalar("testbed", "rekeys", len(tally.rekeys))
    scalar("testbed", "republished", tally.republished)
    scalar("keys", "keys_used", tally.keys_used)
    for mode in (QUANTUM, CLASSICAL):
        keys = [k for k, m in tally.message_mode.items() if m == mode]
        mode_ms = np.array([latency[k] for k in keys if k in latency], dtype=float) / 1e6
        scalar("hybrid", f"messages_{mode}", len(keys))
        scalar("hybrid", f"delivered_{mode}", mode_ms.size)
        scalar("hybrid", f"latency_median_{mode}_ms", percentile(mode_ms, 50))
        scalar("hybrid", f"{mode}_sessions", len(tally.handshakes[mode]))
    scalar("hybrid", "mode_switches", tally.mode_switches)
    scalar("hybrid", "supply_fallbacks", tally.supply_fallbacks)
    attacked = np.array(monitor.attacked, dtype=bool)
    flags = np.array(monitor.flags, dtype=bool)
    scalar("qkd", "blocks", flags.size)
    scalar("ids", "link_flags", flags.sum())
    scalar("ids", "quantum_detection_rate", flags[attacked].mean() if attacked.any() else np.nan)
    scalar("ids", "quantum_false_alarm_rate", flags[~attacked].mean() if (~attacked).any() else np.nan)

    def vector(module: str, name: str, values: list[float]) -> None:
        times = [float(epoch + 1) for epoch in range(len(values))]  # vectime: the key epoch, 1-based
        rows.append({"type": "vector", "module": module, "name": name, "vectime": times, "vecvalue": values})

    latency_by_epoch: list[list[float]] = [[] for _ in tally.epoch_first_publish_ns]
    bits_by_epoch = [0] * len(latency_by_epoch)
    last_by_epoch = list(tally.epoch_first_publish_ns)
    for message, (epoch, size) in tally.message_epoch.items():
        if message in latency:
            latency_by_epoch[epoch].append(latency[message] / 1e6)
            bits_by_epoch[epoch] += 8 * size
            last_by_epoch[epoch] = max(last_by_epoch[epoch], receive_ns[message])
    vector("network", "latency_ms", [float(np.mean(v)) if v else np.nan for v in latency_by_epoch])
    spans_s = [
        (last - first) / 1e9 for first, last in zip(tally.epoch_first_publish_ns, last_by_epoch, strict=True)
    ]
    vector(
        "network",
        "goodput_kbps",
        [b / s / 1e3 if s > 0 else np.nan for b, s in zip(bits_by_epoch, spans_s, strict=True)],
    )
    vector("qkd", "qber", monitor.qber_mean)
    vector("hybrid", "classical_clients", [float(n) for n in tally.classical_clients])
    table = pd.DataFrame(rows, columns=CSVR_COLUMNS)
    table["run"] = f"testbed-{config.seed}"
    return table
