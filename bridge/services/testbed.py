"""The MQTT half of the testbed: QKD keys from the ETSI GS QKD 014 KME protect real MQTT traffic.

A real Mosquitto broker runs on 127.0.0.1 with a TLS-PSK listener whose ``psk_file`` is written from keys the
broker's SAE takes with ``enc_keys`` (master side); every client (the devices and the control centre's
subscriber) takes the same key with ``dec_keys`` (slave side) and connects with paho-mqtt over TLS 1.2 PSK
(``sslpsk3``: Python 3.11's ``ssl`` has no PSK API). Rekeying fetches new keys, rewrites the psk_file,
sends SIGHUP (mosquitto reloads ``psk_file`` on it) and reconnects every client, since a live TLS session
keeps its old key. Latency, throughput, handshake and rekey times are wall-clock measurements of this
machine and go into the same CSV-R layout as the simulations (``backend`` = ``testbed``).
"""

from __future__ import annotations

import base64
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

from bridge.datasets import load_flows
from bridge.services import kme_certs
from bridge.services.kme import KmeConfig, KmeServer
from qesif_core.errors import UserInputError

BROKER_SAE = "SAE-broker"
CONTROL_CENTRE_SAE = "SAE-cc"
PSK_HINT = "qesif"
TOPIC_PREFIX = "qesif"
HEADER_BYTES = 16  # sequence number and send time (ns) at the start of every payload
MIN_PAYLOAD, MAX_PAYLOAD = HEADER_BYTES, 4096
MOSQUITTO_SBIN = Path("/usr/sbin/mosquitto")
CSVR_COLUMNS = ["run", "type", "module", "name", "attrname", "attrvalue", "value", "vectime", "vecvalue"]


class TestbedUnavailable(RuntimeError):
    """A system program or Python package the testbed needs is missing (the message names it)."""


class KeySupplyError(RuntimeError):
    """The KME delivered no key (503 when the QKD link yielded none); names the status, never a key."""


class PskRefused(ConnectionError):
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
    pulses_per_block: int = 10**7
    timeout_s: float = 30.0
    publish_interval_s: float = 0.0  # pause after each device round of publishes; 0: back-to-back bursts

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
        config = cls(**kwargs)
        if config.rekeys >= config.messages_per_device:
            raise UserInputError(
                f"{source}: rekeys ({config.rekeys}) must be below messages_per_device "
                f"({config.messages_per_device}): every key epoch carries at least one message"
            )
        return config

    @property
    def device_saes(self) -> list[str]:
        return [f"SAE-dev{i}" for i in range(self.devices)]


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
    """A Mosquitto process on 127.0.0.1 with one TLS-PSK listener; stopped by pid on ``stop``/exit.

    Mosquitto 2.0 reads port 0 as a unix socket, so a free port is picked first and the start retried on
    the rare race with another process taking it.
    """

    def __init__(self, workdir: Path, psks: Mapping[str, bytes], start_timeout_s: float = 10.0) -> None:
        self.workdir = workdir
        self.psk_file = workdir / "psk.txt"
        self.config_file = workdir / "mosquitto.conf"
        self.log_file = workdir / "mosquitto.log"
        self.port = 0
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
        self.config_file.write_text(
            "\n".join(
                [
                    # as root mosquitto would switch to user "mosquitto", who cannot read our 0600 psk_file
                    f"user {pwd.getpwuid(os.geteuid()).pw_name}",
                    "per_listener_settings false",
                    "allow_anonymous false",
                    "persistence false",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    f"listener {self.port} 127.0.0.1",
                    f"psk_hint {PSK_HINT}",
                    f"psk_file {self.psk_file}",
                    "use_identity_as_username true",
                    "",
                ]
            )
        )

    def start(self) -> MosquittoBroker:
        binary = _mosquitto_binary()
        for _attempt in range(5):
            self.port = _free_port()
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
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
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


def psk_context(identity: str, key: bytes) -> Any:
    """A TLS 1.2 PSK client context offering ``identity`` with ``key`` (no certificates involved)."""
    from sslpsk3.sslpsk3 import SSLPSKContext

    class TrackingContext(SSLPSKContext):
        """Remembers the sockets it wraps, so a refused handshake's socket can be closed."""

        sockets: list[ssl.SSLSocket]

        def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
            sock = super().wrap_socket(*args, **kwargs)
            self.sockets.append(sock)
            return sock

    context = TrackingContext(ssl.PROTOCOL_TLS_CLIENT)
    context.sockets = []
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("PSK")
    context.set_psk_client_callback(lambda _hint: (identity, key))
    return context


@dataclass
class MqttPskClient:
    """One paho-mqtt client over TLS-PSK; ``connect`` returns the time to CONNACK (TCP + TLS + MQTT)."""

    identity: str
    port: int
    on_message: Any = None
    _client: Any = field(default=None, repr=False)
    _connected: threading.Event = field(default_factory=threading.Event, repr=False)

    def connect(self, key: bytes, timeout_s: float) -> float:
        import paho.mqtt.client as mqtt

        self._connected.clear()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.identity, clean_session=True)
        context = psk_context(self.identity, key)
        client.tls_set_context(context)
        client.on_connect = lambda _c, _u, _f, reason, _p: (not reason.is_failure) and self._connected.set()
        if self.on_message is not None:
            client.on_message = self.on_message
        started = time.perf_counter()
        try:
            client.connect("127.0.0.1", self.port, keepalive=60)
        except (ssl.SSLError, ConnectionError, OSError) as error:
            for sock in context.sockets:  # paho leaves the socket of a failed TLS handshake open
                sock.close()
            raise PskRefused(f"broker refused the TLS-PSK handshake of {self.identity}") from error
        client.loop_start()
        if not self._connected.wait(timeout_s):
            client.disconnect()
            client.loop_stop()
            raise PskRefused(f"no CONNACK for {self.identity} within {timeout_s} s")
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
    """Per device and message, the payload size in bytes: the dataset's ``bytes_out`` of one flow each."""
    n = config.devices * config.messages_per_device
    flows = load_flows(config.dataset, config.dataset_path, rng, max_rows=n)
    sizes = flows["bytes_out"].to_numpy(dtype=float)
    if sizes.size == 0:
        raise UserInputError(f"dataset {config.dataset!r} gave no flows")
    sizes = np.resize(sizes, n)
    sizes = np.where(np.isfinite(sizes), sizes, MIN_PAYLOAD)
    return np.clip(sizes, MIN_PAYLOAD, MAX_PAYLOAD).astype(np.int64).reshape(config.devices, -1)


class _Receiver:
    """The control centre's inbox: receive time per unique (device, sequence) message."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency_ns: dict[tuple[str, int], int] = {}
        self.last_receive_ns = 0

    def on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        now = time.perf_counter_ns()
        sequence = int.from_bytes(message.payload[:8], "big")
        sent = int.from_bytes(message.payload[8:16], "big")
        device = message.topic.split("/")[1]
        with self.lock:
            self.latency_ns.setdefault((device, sequence), now - sent)
            self.last_receive_ns = max(self.last_receive_ns, now)

    def count(self) -> int:
        with self.lock:
            return len(self.latency_ns)


def run_testbed(config: TestbedConfig, workdir: Path | None = None) -> pd.DataFrame:
    """Run the scenario end to end on this machine and return its CSV-R table (module docstring)."""
    missing = missing_requirements()
    if missing:
        raise TestbedUnavailable("the testbed needs: " + ", ".join(missing))
    rng = np.random.default_rng(config.seed)
    sizes = payload_sizes(config, rng)
    with tempfile.TemporaryDirectory(prefix="qesif-testbed-", dir=workdir) as tmp:
        root = Path(tmp)
        clients = [*config.device_saes, CONTROL_CENTRE_SAE]
        certs = kme_certs.generate(root / "certs", [BROKER_SAE, *clients])
        kme_config = KmeConfig.from_mapping(
            {
                "certs": str(certs.root),
                "pairs": [{"master": BROKER_SAE, "slave": sae} for sae in clients],
                "port": 0,
                "seed": config.seed,
                "channel": config.channel,
                "pulses_per_block": config.pulses_per_block,
                "block_interval_s": 3600.0,
                "initial_blocks": 1,
            },
            "testbed kme",
        )
        with KmeServer(kme_config) as kme:
            return _run_with_kme(config, root, certs, kme.address, clients, sizes)


def _fetch_keys(
    broker: KmeKeyClient, slaves: Mapping[str, KmeKeyClient]
) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """New keys: the broker's (enc_keys) and each client's (dec_keys of the same key_ID)."""
    broker_side, client_side = {}, {}
    for sae, client in slaves.items():
        key_id, key = broker.enc_key(sae)
        broker_side[sae] = key
        client_side[sae] = client.dec_key(BROKER_SAE, key_id)
    return broker_side, client_side


def _connect_all(
    clients: Mapping[str, MqttPskClient], keys: Mapping[str, bytes], timeout_s: float
) -> list[float]:
    """Connect every client, retrying while the broker may still hold the previous psk_file."""
    times = []
    for sae, client in clients.items():
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                times.append(client.connect(keys[sae], timeout_s))
                break
            except PskRefused:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
    return times


def _run_with_kme(
    config: TestbedConfig,
    root: Path,
    certs: kme_certs.CertPaths,
    kme_address: tuple[str, int],
    client_saes: list[str],
    sizes: np.ndarray,
) -> pd.DataFrame:
    broker_sae = KmeKeyClient(certs, BROKER_SAE, kme_address)
    slaves = {sae: KmeKeyClient(certs, sae, kme_address) for sae in client_saes}
    keys_used = 0
    broker_keys, client_keys = _fetch_keys(broker_sae, slaves)
    keys_used += len(broker_keys)
    receiver = _Receiver()
    mqtt_clients = {
        sae: MqttPskClient(sae, 0, on_message=receiver.on_message if sae == CONTROL_CENTRE_SAE else None)
        for sae in client_saes
    }
    handshakes: list[float] = []
    rekeys: list[float] = []
    epoch_seconds: list[float] = []
    sent = 0
    broker = MosquittoBroker(root, broker_keys)
    try:
        broker.start()
        for client in mqtt_clients.values():
            client.port = broker.port
        handshakes += _connect_all(mqtt_clients, client_keys, config.timeout_s)
        mqtt_clients[CONTROL_CENTRE_SAE].subscribe(f"{TOPIC_PREFIX}/+/telemetry", config.timeout_s)
        epochs = np.array_split(np.arange(config.messages_per_device), config.rekeys + 1)
        for number, epoch in enumerate(epochs):
            if number > 0:
                started = time.perf_counter()
                for client in mqtt_clients.values():
                    client.disconnect()
                broker_keys, client_keys = _fetch_keys(broker_sae, slaves)
                keys_used += len(broker_keys)
                broker.write_psks(broker_keys)
                broker.reload()
                handshakes += _connect_all(mqtt_clients, client_keys, config.timeout_s)
                mqtt_clients[CONTROL_CENTRE_SAE].subscribe(f"{TOPIC_PREFIX}/+/telemetry", config.timeout_s)
                rekeys.append(time.perf_counter() - started)
            epoch_start = time.perf_counter_ns()
            pending = []
            for sequence in epoch:
                for index, sae in enumerate(config.device_saes):
                    size = int(sizes[index, sequence])
                    header = int(sequence).to_bytes(8, "big") + time.perf_counter_ns().to_bytes(8, "big")
                    payload = header + bytes(size - HEADER_BYTES)
                    pending.append(mqtt_clients[sae].publish(f"{TOPIC_PREFIX}/{sae}/telemetry", payload))
                    sent += 1
                if config.publish_interval_s > 0:
                    time.sleep(config.publish_interval_s)
            _wait_delivered(receiver, sent, config.timeout_s)
            for info in pending:
                info.wait_for_publish(config.timeout_s)
            epoch_seconds.append((receiver.last_receive_ns - epoch_start) / 1e9)
    finally:
        for client in mqtt_clients.values():
            client.disconnect()
        broker.stop()
    return _results_table(config, receiver, sent, handshakes, rekeys, epoch_seconds, keys_used)


def _wait_delivered(receiver: _Receiver, expected: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while receiver.count() < expected and time.monotonic() < deadline:
        time.sleep(0.005)


def _results_table(
    config: TestbedConfig,
    receiver: _Receiver,
    sent: int,
    handshakes: list[float],
    rekeys: list[float],
    epoch_seconds: list[float],
    keys_used: int,
) -> pd.DataFrame:
    latencies_ms = np.array(list(receiver.latency_ns.values()), dtype=float) / 1e6
    delivered = latencies_ms.size
    rows: list[dict[str, Any]] = [
        {"type": "runattr", "attrname": name, "attrvalue": value}
        for name, value in {
            "dataset": config.dataset,
            "channel": config.channel,
            "scheme": "mqtt-tls-psk",
            "seed": str(config.seed),
            "backend": "testbed",
            "synthetic": str(config.dataset_path is None).lower(),
        }.items()
    ]

    def scalar(module: str, name: str, value: float) -> None:
        rows.append({"type": "scalar", "module": module, "name": name, "value": float(value)})

    def median_ms(seconds: list[float]) -> float:
        return 1e3 * float(np.median(seconds)) if seconds else float("nan")

    scalar("network", "latency_median_ms", np.median(latencies_ms) if delivered else np.nan)
    scalar("network", "latency_p95_ms", np.percentile(latencies_ms, 95) if delivered else np.nan)
    scalar("network", "latency_mean_ms", latencies_ms.mean() if delivered else np.nan)
    scalar("network", "messages_sent", sent)
    scalar("network", "messages_delivered", delivered)
    scalar("network", "messages_lost", sent - delivered)
    busy = sum(epoch_seconds)
    scalar("network", "messages_per_s", delivered / busy if busy > 0 else np.nan)
    scalar("testbed", "handshake_median_ms", median_ms(handshakes))
    scalar("testbed", "handshakes", len(handshakes))
    scalar("testbed", "rekey_median_ms", median_ms(rekeys))
    scalar("testbed", "rekeys", len(rekeys))
    scalar("keys", "keys_used", keys_used)
    table = pd.DataFrame(rows, columns=CSVR_COLUMNS)
    table["run"] = f"testbed-{config.seed}"
    return table
