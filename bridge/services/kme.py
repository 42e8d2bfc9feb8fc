"""An ETSI GS QKD 014 V1.1.1 key management entity (KME) over HTTPS with mutual TLS, fed live by the QKD
engine.

REST front end only: every delivery rule (key container, one-time delivery to master and slave, the
400/401/503 refusals, expiry) is :class:`qesif_core.keys.KeyPool`'s; this module routes a request to the
pool of the caller's SAE pair, parses and bounds the request, and turns the pool's answer (or its
:class:`~qesif_core.keys.KeyDeliveryError`) into JSON.

- ``GET /api/v1/keys/{slave_SAE_ID}/status`` (master SAE) -> Status;
- ``GET /api/v1/keys/{slave_SAE_ID}/enc_keys?number=&size=`` or ``POST`` with a Key request
  (``number``, ``size``, ``additional_slave_SAE_IDs``, ``extension_mandatory``, ``extension_optional``)
  -> Key container;
- ``GET /api/v1/keys/{master_SAE_ID}/dec_keys?key_ID=`` or ``POST`` with Key IDs
  (``{"key_IDs": [{"key_ID": ...}]}``) (slave SAE) -> Key container;
- errors: the Error object ``{"message": ..., "details": [...]}``.

The caller's SAE ID is the common name of its client certificate (its first SAN when it has no CN),
verified against the KME's CA. A request from an SAE outside the addressed pair is refused with 401; so
is a connection without a certificate. Malformed requests get a 4xx (never a 5xx other than the spec's
503 "no key available"), request size and time are bounded, and key bytes are never logged.

The feeder runs one QKD block per pair every ``block_interval_s`` (:func:`qesif_core.qkd.session.run_block`
with one seeded generator per pair); Algorithm 1 (:func:`qesif_core.entropy_keys.generate_key`, one-slot
window) decides whether the block's key enters the pool, as in the co-simulation orchestrator.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import re
import selectors
import socket
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from bridge.services.kme_certs import CertPaths, check_sae_id
from qesif_core.entropy_keys import SlotObservation, generate_key
from qesif_core.errors import UserInputError
from qesif_core.keys import KeyDeliveryError, KeyPool
from qesif_core.qkd.bb84 import check_pulses
from qesif_core.qkd.channel import CHANNEL_PRESETS, ChannelParams
from qesif_core.qkd.session import PROTOCOLS, run_block

logger = logging.getLogger(__name__)

API_ROUTE = re.compile(r"/api/v1/keys/([^/]+)/(status|enc_keys|dec_keys)")
KEY_ID_PATTERN = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
ENC_QUERY = frozenset({"number", "size"})
ENC_BODY = frozenset(
    {"number", "size", "additional_slave_SAE_IDs", "extension_mandatory", "extension_optional"}
)
DEC_BODY = frozenset({"key_IDs", "key_IDs_extension"})
KEY_ID_ENTRY = frozenset({"key_ID", "key_ID_extension"})
MAX_QUERY_FIELDS = 8
MAX_UNAUTHENTICATED = 8  # finished handshakes without an SAE certificate served at once (they get 401)
MAX_LOGGED_CHARS = 160


@dataclass(frozen=True)
class SaePair:
    """One KME pair: the master SAE fetches keys with enc_keys, the slave the same keys with dec_keys."""

    master: str
    slave: str
    link: str


@dataclass(frozen=True)
class KmeConfig:
    """Everything ``qesif kme serve`` needs; the YAML config file has these field names."""

    certs: Path
    pairs: tuple[SaePair, ...]
    host: str = "127.0.0.1"
    port: int = 8443
    seed: int = 1
    channel: str = "clean"
    protocol: str = "bb84"
    pulses_per_block: int = 10**7
    block_interval_s: float = 1.0
    initial_blocks: int = 1
    key_size: int = 256
    max_key_count: int = 1000
    max_key_per_request: int = 16
    key_lifetime_s: float = 3600.0
    max_body_bytes: int = 16384
    request_timeout_s: float = 5.0
    handshake_timeout_s: float = 3.0
    max_connections: int = 32
    max_connections_per_sae: int = 8
    max_handshakes: int = 256
    max_connections_per_address: int = 64

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "config") -> KmeConfig:
        """Validate a mapping (a YAML file's content or CLI options); errors name ``source`` and field."""
        if not isinstance(values, Mapping):
            raise UserInputError(f"{source}: must be a mapping of KME settings (got {type(values).__name__})")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserInputError(f"{source}: unknown field(s) {', '.join(map(str, unknown))}")
        for name in ("certs", "pairs"):
            if values.get(name) is None:
                raise UserInputError(f"{source}: field {name} is required")
        if isinstance(values["certs"], Path):
            values = {**values, "certs": str(values["certs"])}
        out: dict[str, Any] = {
            "certs": Path(_typed(values, "certs", str, source)),
            "pairs": _pairs(values["pairs"], source),
        }
        defaults = {f.name: f.default for f in fields(cls) if f.name not in ("certs", "pairs")}
        for name, default in defaults.items():
            value = values.get(name, default)
            if isinstance(default, int) and not isinstance(default, bool):
                value = _integer(value, name, source)
            elif isinstance(default, float):
                value = _number(value, name, source)
            else:
                value = _typed(values, name, str, source) if name in values else default
            out[name] = value
        config = cls(**out)
        config._check(source)
        return config

    def _check(self, source: str) -> None:
        ranges = {
            "port": (0, 65535),
            "seed": (0, 2**63 - 1),
            "initial_blocks": (0, 10**6),
            "max_key_count": (1, 10**7),
            "max_key_per_request": (1, 10**4),
            "max_body_bytes": (64, 1 << 24),
            "max_connections": (1, 4096),
            "max_connections_per_sae": (1, 4096),
            "max_handshakes": (1, 65536),
            "max_connections_per_address": (1, 65536),
        }
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise UserInputError(f"{source}: field {name} must lie in [{low}, {high}] (got {value})")
        for name in ("block_interval_s", "key_lifetime_s", "request_timeout_s", "handshake_timeout_s"):
            if not getattr(self, name) > 0:
                raise UserInputError(f"{source}: field {name} must be > 0 (got {getattr(self, name)})")
        if self.key_size % 8 or not 64 <= self.key_size <= 1024:
            raise UserInputError(
                f"{source}: field key_size must be a multiple of 8 in [64, 1024] (got {self.key_size})"
            )
        if self.channel not in CHANNEL_PRESETS:
            raise UserInputError(
                f"{source}: field channel must be one of {', '.join(CHANNEL_PRESETS)} (got {self.channel!r})"
            )
        if self.protocol not in PROTOCOLS:
            raise UserInputError(
                f"{source}: field protocol must be one of {', '.join(PROTOCOLS)} (got {self.protocol!r})"
            )
        check_pulses(self.pulses_per_block, f"{source}: field pulses_per_block")
        if not self.host:
            raise UserInputError(f"{source}: field host must not be empty")

    def cert_paths(self) -> CertPaths:
        return CertPaths(self.certs)


def _typed(values: Mapping[str, Any], name: str, kind: type, source: str) -> Any:
    value = values[name]
    if not isinstance(value, kind):
        raise UserInputError(f"{source}: field {name} must be a {kind.__name__} (got {value!r})")
    return value


def _integer(value: Any, name: str, source: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserInputError(f"{source}: field {name} must be an integer (got {value!r})")
    return value


def _number(value: Any, name: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserInputError(f"{source}: field {name} must be a finite number (got {value!r})")
    return float(value)


def _pairs(raw: Any, source: str) -> tuple[SaePair, ...]:
    if not isinstance(raw, list) or not raw:
        raise UserInputError(
            f"{source}: field pairs must be a non-empty list of {{master, slave}} (got {raw!r})"
        )
    pairs = []
    for index, item in enumerate(raw):
        where = f"{source}: pairs[{index}]"
        if (
            not isinstance(item, Mapping)
            or not {"master", "slave"} <= set(item)
            or set(item)
            - {
                "master",
                "slave",
                "link",
            }
        ):
            raise UserInputError(
                f"{where} must be a mapping with master, slave and optional link (got {item!r})"
            )
        master = check_sae_id(item["master"], f"{where}.master")
        slave = check_sae_id(item["slave"], f"{where}.slave")
        if master == slave:
            raise UserInputError(f"{where}: master and slave must differ (got {master!r} twice)")
        link = item.get("link", f"{master}-{slave}")
        if not isinstance(link, str) or not link:
            raise UserInputError(f"{where}.link must be a non-empty string (got {link!r})")
        pairs.append(SaePair(master, slave, link))
    seen = set()
    for pair in pairs:
        if (pair.master, pair.slave) in seen:
            raise UserInputError(f"{source}: pair {pair.master} -> {pair.slave} is listed twice")
        seen.add((pair.master, pair.slave))
    return tuple(pairs)


def parse_pair(text: str) -> dict[str, str]:
    """``MASTER:SLAVE`` from the command line as a ``pairs`` entry."""
    master, sep, slave = text.partition(":")
    if not sep:
        raise UserInputError(f"--pair must be MASTER:SLAVE (got {text!r})")
    return {"master": master, "slave": slave}


# --------------------------------------------------------------------------------------- key store
@dataclass
class LinkCounters:
    """Per-pair feeder figures (no key material)."""

    blocks: int = 0
    blocks_accepted: int = 0
    blocks_discarded: int = 0
    last_qber: float = math.nan


@dataclass(frozen=True)
class BlockOutcome:
    """What one feeder block showed (the Q-IDS inputs) and gave (keys added); no key material."""

    qber: float
    h_q: float
    secret_bits: int
    accepted: bool
    keys_added: int


class KeyStore:
    """The KME's pools, one per SAE pair, behind one lock (pools are not thread-safe), and the feeder."""

    def __init__(self, config: KmeConfig, rng: np.random.Generator) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._channel = CHANNEL_PRESETS[config.channel]
        self._pools: dict[tuple[str, str], KeyPool] = {}
        self._qkd_rngs: dict[tuple[str, str], np.random.Generator] = {}
        self.counters: dict[tuple[str, str], LinkCounters] = {}
        for pair, pair_rng in zip(config.pairs, rng.spawn(len(config.pairs)), strict=True):
            qkd_rng, id_rng = pair_rng.spawn(2)
            key = (pair.master, pair.slave)
            self._pools[key] = KeyPool(
                link=pair.link,
                source_kme_id=f"KME-{pair.master}",
                target_kme_id=f"KME-{pair.slave}",
                master_sae_id=pair.master,
                slave_sae_id=pair.slave,
                rng=id_rng,
                key_size=config.key_size,
                max_key_count=config.max_key_count,
                max_key_per_request=config.max_key_per_request,
                key_lifetime_s=config.key_lifetime_s,
            )
            self._qkd_rngs[key] = qkd_rng
            self.counters[key] = LinkCounters()
        self.sae_ids = frozenset(sae for pair in config.pairs for sae in (pair.master, pair.slave))

    def now(self) -> float:
        """Seconds since the KME started (the pools' clock for expiry)."""
        return time.monotonic() - self._start

    def _pool(self, master: str, slave: str, addressed: str) -> KeyPool:
        """The pool of pair (master, slave); ``addressed`` is the SAE ID the URL named."""
        pool = self._pools.get((master, slave))
        if pool is not None:
            return pool
        if addressed in self.sae_ids:
            raise KeyDeliveryError(401, f"SAE {master!r} -> {slave!r} is not a key pair of this KME")
        raise KeyDeliveryError(400, f"SAE ID {addressed!r} is not known to this KME")

    def status(self, caller: str, slave: str) -> dict[str, Any]:
        with self._lock:
            return self._pool(caller, slave, slave).status(slave, caller=caller, now=self.now())

    def enc_keys(self, caller: str, slave: str, number: int, size: int | None) -> dict[str, Any]:
        with self._lock:
            pool = self._pool(caller, slave, slave)
            return pool.enc_keys(slave, caller=caller, now=self.now(), number=number, size=size)

    def dec_keys(self, caller: str, master: str, key_ids: list[str]) -> dict[str, Any]:
        with self._lock:
            return self._pool(master, caller, master).dec_keys(master, key_ids, caller=caller, now=self.now())

    def feed_once(self) -> int:
        """Run one QKD block per pair on the KME's channel; Algorithm 1 gates each block's key. Returns keys
        added."""
        return sum(self.feed_pair(pair, self._channel).keys_added for pair in self._pools)

    def feed_pair(self, pair: tuple[str, str], channel: ChannelParams) -> BlockOutcome:
        """One QKD block of pair (master, slave) on ``channel`` (a caller may switch an attacker on for one
        pair, as the testbed does); Algorithm 1's verdict decides whether its key enters the pool."""
        pool = self._pools[pair]
        # Reconcile as much of the block as the pool has room for (docs/qkd.md, sub-frame reconciliation).
        room = max(0, pool.max_key_count - pool.stored_key_count) * pool.key_size
        block = run_block(
            channel,
            self.config.pulses_per_block,
            self._qkd_rngs[pair],
            self.config.protocol,
            min_key_bits=room,
        )
        slot = SlotObservation(h_q=block.h_q, theta=block.qber, loss=block.loss_fraction, key=block.alice_key)
        decision = generate_key(pool.link, [slot], gamma=1.0)
        counters = self.counters[pair]
        index = counters.blocks
        counters.blocks += 1
        counters.last_qber = block.qber
        accepted = decision.accepted and block.keys_match
        new_keys = 0
        if accepted:
            counters.blocks_accepted += 1
            if decision.key_bits:
                with self._lock:
                    new_keys = pool.add_block(
                        decision.key, block=index, qber=block.qber, epsilon=block.epsilon, now=self.now()
                    )
        else:
            counters.blocks_discarded += 1
        logger.info(
            "link %s block %d: qber %.4f, secret bits %d, %s, +%d keys, stored %d",
            pool.link, index, block.qber, block.secret_bits,
            "accepted" if accepted else "discarded", new_keys, pool.stored_key_count,
        )  # fmt: skip
        return BlockOutcome(block.qber, block.h_q, block.secret_bits, accepted, new_keys)


# --------------------------------------------------------------------------------------- HTTP
class _RequestError(Exception):
    """A request refused before it reached a pool (HTTP status, message, whether to drop the connection)."""

    def __init__(self, status: int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


@dataclass
class _Connection:
    """Bookkeeping of one client connection (no request data)."""

    address: str
    since: float  # time.monotonic() of the accept
    deadline: float  # of the handshake, then of each request (math.inf while one is being answered)
    sae_id: str | None = None  # finished TLS with the certificate of this SAE of this KME

    @property
    def authenticated(self) -> bool:
        return self.sae_id is not None


def sae_id_of(cert: Mapping[str, Any] | None, sae_ids: frozenset[str]) -> str | None:
    """The SAE ID a verified client certificate names (its CN, else its first DNS/URI SAN), if it is one of
    ``sae_ids``."""
    if not cert:
        return None
    names = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
    names += [value for kind, value in cert.get("subjectAltName", ()) if kind in ("DNS", "URI")]
    return names[0] if names and names[0] in sae_ids else None


class _KmeHttpServer(ThreadingHTTPServer):
    """HTTPS with admission control that clients without a finished handshake cannot defeat.

    One thread accepts connections and runs every TLS handshake without blocking (a selector), so a
    handshake in progress costs a socket, not a thread or a worker slot. Pending handshakes are bounded
    (``max_handshakes`` in all, ``max_connections_per_address`` with the address's open connections) and
    must finish within ``handshake_timeout_s``; a new connection over a bound evicts the oldest pending
    handshake (of its address, for the per-address bound), so clients that trickle handshake bytes cannot
    keep a new one out. Only a finished handshake gets a worker thread: one of ``max_connections`` when
    the client certificate names an SAE of this KME (at most ``max_connections_per_sae`` per SAE), one of
    ``MAX_UNAUTHENTICATED`` (oldest evicted)
    otherwise (such clients only ever get 401). Each request (headers and body) must have arrived within
    ``request_timeout_s`` of the handshake or of the previous response on the connection, or the loop
    closes the connection; so neither a client trickling bytes nor an idle keep-alive connection holds a
    slot longer than that. A request that arrived in time is answered whatever the clock says after.
    """

    daemon_threads = False  # tracked, so that server_close() can join them
    block_on_close = True  # server_close() joins the connection threads (after close_connections())
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, config: KmeConfig, store: KeyStore, tls: ssl.SSLContext) -> None:
        self.config = config
        self.store = store
        self.tls = tls
        self._pending: dict[ssl.SSLSocket, _Connection] = {}  # handshakes, only touched by the loop thread
        self._open: dict[socket.socket, _Connection] = {}  # handshake done: a worker thread serves it
        self._open_lock = threading.Lock()
        self._stop_serving = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        self.address_family = family
        super().__init__((config.host, config.port), _Handler)

    # ------------------------------------------------------------------ the accept and handshake loop
    def serve_forever(self, poll_interval: float = 0.1) -> None:
        self._stopped.clear()
        self.socket.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(self.socket, selectors.EVENT_READ, None)
        try:
            while not self._stop_serving.is_set():
                for key, _ in selector.select(poll_interval):
                    if key.data is None:
                        self._accept(selector)
                    else:
                        self._step(selector, key.fileobj)
                self._expire(selector)
        finally:
            for connection in list(self._pending):
                self._drop_pending(selector, connection)
            selector.close()
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop the loop and wait for it (connections already handed to workers are left to them)."""
        self._stop_serving.set()
        self._stopped.wait()

    def _accept(self, selector: selectors.BaseSelector) -> None:
        try:
            request, client_address = self.socket.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            logger.warning("accept failed: %s", type(exc).__name__)
            return
        address = str(client_address[0])
        if not self._admit(selector, address):
            logger.warning(
                "connection from %s refused: its %d connections are all established",
                address,
                self.config.max_connections_per_address,
            )
            self._close(request)
            return
        try:
            request.setblocking(False)
            connection = self.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        except (ssl.SSLError, OSError) as exc:
            logger.info("TLS set-up with %s failed: %s", address, type(exc).__name__)
            self._close(request)
            return
        now = time.monotonic()
        self._pending[connection] = _Connection(address, now, now + self.config.handshake_timeout_s)
        selector.register(connection, selectors.EVENT_READ, client_address)
        self._step(selector, connection)

    def _admit(self, selector: selectors.BaseSelector, address: str) -> bool:
        """Room for a new connection from ``address``, evicting the oldest pending handshakes if needed."""
        with self._open_lock:
            established = sum(1 for c in self._open.values() if c.address == address)
        mine = [s for s, c in self._pending.items() if c.address == address]
        if established + len(mine) >= self.config.max_connections_per_address:
            if not mine:
                return False
            self._evict(selector, min(mine, key=lambda s: self._pending[s].since), "per-address limit")
        if len(self._pending) >= self.config.max_handshakes:
            self._evict(selector, min(self._pending, key=lambda s: self._pending[s].since), "handshake limit")
        return True

    def _evict(self, selector: selectors.BaseSelector, connection: ssl.SSLSocket, why: str) -> None:
        logger.info("pending handshake of %s evicted (%s)", self._pending[connection].address, why)
        self._drop_pending(selector, connection)

    def _step(self, selector: selectors.BaseSelector, connection: ssl.SSLSocket) -> None:
        """Advance one handshake; a finished one goes to a worker thread."""
        try:
            connection.do_handshake()
        except ssl.SSLWantReadError:
            selector.modify(connection, selectors.EVENT_READ, selector.get_key(connection).data)
            return
        except ssl.SSLWantWriteError:
            selector.modify(connection, selectors.EVENT_WRITE, selector.get_key(connection).data)
            return
        except (ssl.SSLError, OSError) as exc:
            logger.info(
                "TLS handshake with %s failed: %s", self._pending[connection].address, type(exc).__name__
            )
            self._drop_pending(selector, connection)
            return
        client_address = selector.get_key(connection).data
        record = self._pending.pop(connection)
        selector.unregister(connection)
        connection.setblocking(True)
        if not self._open_worker(connection, record):
            self._close(connection)
            return
        try:
            super().process_request(connection, client_address)  # ThreadingMixIn: a worker thread
        except Exception:
            self._forget(connection)
            self._close(connection)
            raise

    def _open_worker(self, connection: ssl.SSLSocket, record: _Connection) -> bool:
        """Count a connection whose handshake finished; False when it must be closed (SAE slots full)."""
        record.sae_id = sae_id_of(connection.getpeercert(), self.store.sae_ids)
        record.deadline = time.monotonic() + self.config.request_timeout_s
        with self._open_lock:
            same_kind = [s for s, c in self._open.items() if c.authenticated == record.authenticated]
            same_sae = sum(1 for c in self._open.values() if record.sae_id and c.sae_id == record.sae_id)
            if record.authenticated and (
                len(same_kind) >= self.config.max_connections
                or same_sae >= self.config.max_connections_per_sae
            ):
                logger.warning(
                    "connection of SAE %s from %s refused: %d SAE connections open, %d of its own",
                    record.sae_id,
                    record.address,
                    len(same_kind),
                    same_sae,
                )
                return False
            if not record.authenticated and len(same_kind) >= MAX_UNAUTHENTICATED:
                oldest = min(same_kind, key=lambda s: self._open[s].since)
                self._open.pop(oldest)
                self._shut(oldest)
            self._open[connection] = record
        return True

    def _expire(self, selector: selectors.BaseSelector) -> None:
        """End handshakes and requests past their deadline."""
        now = time.monotonic()
        for connection in [s for s, c in self._pending.items() if c.deadline < now]:
            logger.info("TLS handshake with %s cut off at its deadline", self._pending[connection].address)
            self._drop_pending(selector, connection)
        with self._open_lock:  # the same lock as begin_request: a request is either begun or cut, never both
            overdue = [s for s, c in self._open.items() if c.deadline < now]
        for connection in overdue:
            logger.info("connection closed: request deadline passed")
            self._shut(connection)

    def _drop_pending(self, selector: selectors.BaseSelector, connection: ssl.SSLSocket) -> None:
        self._pending.pop(connection, None)
        try:
            selector.unregister(connection)
        except (KeyError, ValueError):
            pass
        self._close(connection)

    # ------------------------------------------------------------------ workers
    def finish_request(self, request, client_address) -> None:
        try:
            self.RequestHandlerClass(request, client_address, self)
        finally:
            self._forget(request)

    def begin_request(self, connection: socket.socket) -> bool:
        """Whether the request just read on ``connection`` arrived before its deadline; if so, the loop no
        longer cuts the connection until the answer is sent (:meth:`renew_deadline`), so a request that
        reached a pool is never cut off half-answered."""
        with self._open_lock:
            record = self._open.get(connection)
            if record is None or record.deadline < time.monotonic():
                return False
            record.deadline = math.inf
            return True

    def renew_deadline(self, connection: socket.socket) -> None:
        """Give ``connection`` a fresh deadline for its next request (idle keep-alive included)."""
        deadline = time.monotonic() + self.config.request_timeout_s
        with self._open_lock:
            if connection in self._open:
                self._open[connection].deadline = deadline

    def _forget(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open.pop(connection, None)

    def close_connections(self) -> None:
        """End open connections so that their threads finish now, not at their timeout."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            self._shut(connection)

    @staticmethod
    def _shut(connection: socket.socket) -> None:
        try:
            connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    @staticmethod
    def _close(connection: socket.socket) -> None:
        try:
            connection.close()
        except OSError:
            pass

    def handle_error(self, request, client_address) -> None:
        """A fault in a handler closes its connection without an answer; logged by type only (its message
        could quote request data)."""
        logger.error("connection from %s ended by %s", client_address[0], type(sys.exc_info()[1]).__name__)


class _Handler(BaseHTTPRequestHandler):
    server: _KmeHttpServer
    protocol_version = "HTTP/1.1"
    server_version = "qesif-kme"
    sys_version = ""
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid the delayed-ACK stall

    def setup(self) -> None:
        self.timeout = self.server.config.request_timeout_s
        self.sae_id = "-"
        super().setup()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (TimeoutError, ssl.SSLError, ConnectionError):
            self.close_connection = True

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.request_version not in ("HTTP/1.0", "HTTP/1.1"):
            self.send_error(HTTPStatus.BAD_REQUEST, f"unsupported HTTP version {self.request_version[:16]!r}")
            return False
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Every refusal is an ETSI Error object; http.server's own 5xx (unknown method, HTTP/2.0 request
        line) are client mistakes here and become 405/400."""
        if code == HTTPStatus.NOT_IMPLEMENTED:
            code = HTTPStatus.METHOD_NOT_ALLOWED
        elif code >= 500:
            code = HTTPStatus.BAD_REQUEST
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # always answer with a status line
        self._send_json(code, {"message": message or HTTPStatus(code).phrase}, close=True)

    def log_message(self, format: str, *args: Any) -> None:
        text = format % args
        logger.info(
            "%s %s %s",
            self.client_address[0],
            self.sae_id,
            text[:MAX_LOGGED_CHARS].encode("unicode_escape").decode("ascii"),
        )

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        line = getattr(self, "requestline", "")
        self.log_message("%r %s", line[:MAX_LOGGED_CHARS], int(code) if isinstance(code, int) else code)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # ------------------------------------------------------------------ request handling
    def _dispatch(self, method: str) -> None:
        try:
            body = self._read_body(required=method == "POST")
        except _RequestError as exc:
            self._send_json(exc.status, {"message": exc.message}, close=exc.close)
            return
        if not self.server.begin_request(self.connection):
            logger.info("request of %s arrived after its deadline: closed unanswered", self.client_address[0])
            self.close_connection = True
            return
        try:
            self.sae_id = self._authenticate()
            target = urlsplit(self.path)
            route = API_ROUTE.fullmatch(target.path)
            if route is None:
                raise _RequestError(
                    404, "no such resource (expected /api/v1/keys/{SAE_ID}/status|enc_keys|dec_keys)"
                )
            addressed = unquote(route[1])
            if not _valid_sae_id(addressed):
                raise _RequestError(400, "the SAE ID in the path is not a valid SAE ID")
            action = route[2]
            if method == "POST" and action == "status":
                raise _RequestError(405, "status takes GET only")
            store = self.server.store
            if action == "status":
                _query(target.query, frozenset())
                result = store.status(self.sae_id, addressed)
            elif action == "enc_keys":
                number, size = self._enc_request(method, target.query, body)
                result = store.enc_keys(self.sae_id, addressed, number, size)
            else:
                key_ids = self._dec_request(method, target.query, body)
                result = store.dec_keys(self.sae_id, addressed, key_ids)
        except KeyDeliveryError as exc:
            self._send_json(exc.status, exc.as_error_object())
        except _RequestError as exc:
            self._send_json(exc.status, {"message": exc.message}, close=exc.close)
        else:
            self._send_json(200, result)

    def _authenticate(self) -> str:
        """The SAE ID in the client certificate (already verified against the CA by TLS)."""
        cert = self.connection.getpeercert()
        if not cert:
            raise KeyDeliveryError(401, "a client certificate is required (mutual TLS)")
        sae_id = sae_id_of(cert, self.server.store.sae_ids)
        if sae_id is None:
            raise KeyDeliveryError(401, "the client certificate does not name an SAE of this KME")
        return sae_id

    def _read_body(self, *, required: bool) -> bytes:
        if self.headers.get("Transfer-Encoding") is not None:
            raise _RequestError(411, "Transfer-Encoding is not supported; send Content-Length", close=True)
        declared = self.headers.get_all("Content-Length") or []
        if not declared:
            if required:
                raise _RequestError(411, "POST needs a Content-Length and a JSON body", close=True)
            return b""
        if len(declared) > 1 or not re.fullmatch(r"[0-9]{1,12}", declared[0].strip()):
            raise _RequestError(400, "bad Content-Length", close=True)
        length = int(declared[0])
        if length > self.server.config.max_body_bytes:
            raise _RequestError(
                413, f"body larger than {self.server.config.max_body_bytes} bytes", close=True
            )
        body = self.rfile.read(length)
        if len(body) != length:
            raise _RequestError(400, "body shorter than Content-Length", close=True)
        return body

    def _json_body(self, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise _RequestError(400, "body is not valid UTF-8 JSON") from None
        if not isinstance(data, dict):
            raise _RequestError(400, "body must be a JSON object")
        return data

    def _enc_request(self, method: str, query: str, body: bytes) -> tuple[int, int | None]:
        """``number`` and ``size`` of a Get key request; multicast and mandatory extensions are refused."""
        if method == "GET":
            params = _query(query, ENC_QUERY)
            number = _query_int(params, "number")
            size = _query_int(params, "size")
            return (1 if number is None else number), size
        _query(query, frozenset())
        data = self._json_body(body)
        _no_unknown(data, ENC_BODY, "Key request")
        number = _json_int(data, "number")
        size = _json_int(data, "size")
        extra_slaves = _json_list(data, "additional_slave_SAE_IDs")
        if any(not isinstance(s, str) for s in extra_slaves):
            raise _RequestError(400, "additional_slave_SAE_IDs must be a list of SAE ID strings")
        if extra_slaves:
            raise KeyDeliveryError(400, "additional_slave_SAE_IDs is not supported (max_SAE_ID_count is 0)")
        mandatory = _json_list(data, "extension_mandatory")
        optional = _json_list(data, "extension_optional")
        if any(not isinstance(item, dict) for item in (*mandatory, *optional)):
            raise _RequestError(400, "extension_mandatory and extension_optional must be lists of objects")
        names = sorted({str(name)[:64] for item in mandatory for name in item})
        if names:
            raise KeyDeliveryError(
                400, "mandatory extensions are not supported", [f"unsupported: {n}" for n in names]
            )
        return (1 if number is None else number), size

    def _dec_request(self, method: str, query: str, body: bytes) -> list[str]:
        if method == "GET":
            params = _query(query, frozenset({"key_ID"}))
            if "key_ID" not in params:
                raise _RequestError(400, "dec_keys by GET needs the key_ID parameter")
            key_ids = [params["key_ID"]]
        else:
            _query(query, frozenset())
            data = self._json_body(body)
            _no_unknown(data, DEC_BODY, "Key IDs")
            entries = data.get("key_IDs")
            if not isinstance(entries, list) or not entries:
                raise _RequestError(400, 'key_IDs must be a non-empty list of {"key_ID": ...} objects')
            if data.get("key_IDs_extension") is not None and not isinstance(data["key_IDs_extension"], dict):
                raise _RequestError(400, "key_IDs_extension must be an object")
            key_ids = []
            for entry in entries:
                if not isinstance(entry, dict) or "key_ID" not in entry or set(entry) - KEY_ID_ENTRY:
                    raise _RequestError(
                        400, 'each key_IDs entry must be {"key_ID": ...} (key_ID_extension optional)'
                    )
                key_ids.append(entry["key_ID"])
        for key_id in key_ids:
            if not isinstance(key_id, str) or not KEY_ID_PATTERN.fullmatch(key_id):
                raise _RequestError(400, "key_ID must be a UUID string")
        return [str(uuid.UUID(k)) for k in key_ids]

    def _send_json(self, status: int, payload: Mapping[str, Any], *, close: bool = False) -> None:
        body = json.dumps(payload).encode("utf-8")
        if close:
            self.close_connection = True
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except (OSError, ssl.SSLError):
            self.close_connection = True
        self.server.renew_deadline(self.connection)  # the next request on this connection starts now


def _valid_sae_id(text: str) -> bool:
    try:
        check_sae_id(text, "SAE ID")
    except UserInputError:
        return False
    return True


def _query(query: str, allowed: frozenset[str]) -> dict[str, str]:
    """Query parameters: only ``allowed`` names, each at most once."""
    if not query:
        return {}
    try:
        parsed = parse_qs(query, keep_blank_values=True, strict_parsing=True, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        raise _RequestError(400, "malformed query string") from None
    unknown = sorted(set(parsed) - allowed)
    if unknown:
        raise _RequestError(400, f"unknown query parameter(s): {', '.join(n[:32] for n in unknown)[:200]}")
    if any(len(values) != 1 for values in parsed.values()):
        raise _RequestError(400, "a query parameter is given more than once")
    return {name: values[0] for name, values in parsed.items()}


def _query_int(params: Mapping[str, str], name: str) -> int | None:
    if name not in params:
        return None
    if not re.fullmatch(r"[0-9]{1,9}", params[name]):
        raise _RequestError(400, f"{name} must be a non-negative integer")
    return int(params[name])


def _json_int(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**9:
        raise _RequestError(400, f"{name} must be a non-negative integer")
    return value


def _json_list(data: Mapping[str, Any], name: str) -> list[Any]:
    value = data.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _RequestError(400, f"{name} must be a list")
    return value


def _no_unknown(data: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise _RequestError(400, f"{what}: unknown field(s) {', '.join(n[:32] for n in unknown)[:200]}")


def server_tls_context(paths: CertPaths) -> ssl.SSLContext:
    """TLS 1.2+ server context: the KME's certificate, client certificates verified against the CA.

    Client certificates are optional at the TLS layer so that a client without one gets the spec's 401
    instead of a bare handshake failure; a certificate that does not verify still fails the handshake.
    """
    for path in (paths.ca_cert, paths.server_cert, paths.server_key):
        if not path.is_file():
            raise UserInputError(f"certs: {path} is missing (make it with `qesif kme certs`)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(paths.server_cert, paths.server_key)
        context.load_verify_locations(cafile=paths.ca_cert)
    except (ssl.SSLError, ValueError) as exc:
        raise UserInputError(f"certs: {paths.root} holds no usable CA/server certificate ({exc})") from None
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


class KmeServer:
    """The KME: HTTPS server thread plus QKD feeder thread. Use as a context manager or start()/stop()."""

    def __init__(self, config: KmeConfig, store: KeyStore | None = None) -> None:
        """``store``: the key store to serve (default: a ``KeyStore`` of the config's SAE pairs; a QKD
        network's store is ``bridge.qnet.kme.NetworkKeyStore``)."""
        self.config = config
        self.store = store or KeyStore(config, np.random.default_rng(config.seed))
        tls = server_tls_context(config.cert_paths())
        try:
            self._httpd = _KmeHttpServer(config, self.store, tls)
        except OSError as exc:
            raise UserInputError(
                f"host/port {config.host}:{config.port}: cannot listen there ({exc.strerror or exc})"
            ) from None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> KmeServer:
        """Run the initial blocks, then serve and feed in background threads."""
        for _ in range(self.config.initial_blocks):
            self.store.feed_once()
        self._threads = [
            threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="kme-http"
            ),
            threading.Thread(target=self._feed, name="kme-feeder"),
        ]
        for thread in self._threads:
            thread.start()
        logger.info("KME listening on https://%s:%d", *self.address)
        if not _is_loopback(self.config.host):
            logger.warning("KME bound to %s: reachable beyond this machine", self.config.host)
        return self

    def _feed(self) -> None:
        while not self._stop.wait(self.config.block_interval_s):
            try:
                self.store.feed_once()
            except Exception as exc:  # a feeder fault must not kill the server; it is reported
                logger.error("QKD feeder: %s", type(exc).__name__)

    def stop(self) -> None:
        """Stop serving and feeding; returns once both threads have ended."""
        self._stop.set()
        if self._threads:
            self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=max(10.0, 2 * self.config.request_timeout_s))
        self._threads = []

    def __enter__(self) -> KmeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_config(path: Path, overrides: Mapping[str, Any]) -> KmeConfig:
    """A YAML config file (relative ``certs`` resolved against the file's folder) with CLI overrides."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserInputError(f"--config {path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise UserInputError(f"--config {path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise UserInputError(f"--config {path}: must be a mapping of KME settings")
    if isinstance(data.get("certs"), str) and not Path(data["certs"]).is_absolute():
        data["certs"] = str(path.parent / data["certs"])
    data.update(overrides)
    return KmeConfig.from_mapping(data, str(path))
