"""The CoAP half of the testbed: real CoAP devices protected by OSCORE (RFC 8613) keyed from QKD keys.

A CoAP server at the control centre (aiocoap, UDP on 127.0.0.1) serves ``/telemetry``, which accepts only
OSCORE-protected POSTs: a plain request gets 4.01. Each device has its own aiocoap client context (a
connected UDP socket to the server) and sends its messages as confirmable POSTs, one at a time, each
waiting for its 2.04. The OSCORE master secret of a device is the 256-bit QKD key that the control
centre's SAE took with ``enc_keys`` (the device took the same key with ``dec_keys``); OSCORE's own HKDF
(SHA-256, RFC 8613 section 3.2) derives the sender and recipient keys and the common IV from it, and the
ID context is the KME's key_ID, so a context is bound to one QKD key. A rekey replaces both sides'
contexts with ones from a new key: a request under the old (revoked) key names an ID context the server
no longer has (4.01 "Security context not found"); a request under a wrong key with the current ID
context fails to decrypt (4.00 "Decryption failed", aiocoap's answer). Keys live in memory only.

Classical mode (a flagged link, or no QKD key): the device runs EDHOC (RFC 9528, method 3, cipher suite 2:
ephemeral P-256 ECDH, both sides authenticated by static P-256 DH keys known to the other, as a device's
certificate is to a broker) with the server, combined with its first OSCORE request; the OSCORE context
comes from EDHOC's exporter. The server accepts EDHOC only from devices it currently lets use classical
mode; going back to quantum mode removes that permission and the device's EDHOC-derived context.

Everything runs in one event loop on a background thread; the synchronous methods submit to it and wait
with a bound.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

OSCORE_ALGORITHM = "AES-CCM-16-64-128"  # RFC 8613's mandatory-to-implement AEAD
OSCORE_HASH = "sha256"
REPLAY_WINDOW = 32
SERVER_ID = b"cc"
MAX_COAP_PAYLOAD = 1024  # one datagram, no blockwise transfer
TELEMETRY_PATH = "telemetry"
HEADER_BYTES = 16  # sequence number and send time (ns), as in the MQTT payloads
EDHOC_SUITE, EDHOC_METHOD = 2, 3  # P-256 ECDH and AES-CCM-16-64-128; static-DH authentication both ways
EDHOC_PERMISSION = ":edhoc:"  # server credential label prefix: the devices allowed to run EDHOC now


def missing_coap() -> list[str]:
    """What the CoAP testbed needs and this machine lacks (empty when it can run)."""
    try:
        import aiocoap.oscore
        import aiocoap.oscore_sitewrapper  # noqa: F401
    except ImportError:
        return ["aiocoap[oscore] (Python package)"]
    return []


def device_id(index: int) -> bytes:
    """The OSCORE sender ID of device ``index`` (at most 7 bytes with AES-CCM-16-64-128)."""
    return b"d" + index.to_bytes(2, "big")


def oscore_context(master_secret: bytes, key_id: str, sender_id: bytes, recipient_id: bytes) -> Any:
    """An in-memory OSCORE security context: ``master_secret`` (the QKD key) through OSCORE's HKDF, no
    master salt, ID context = the key_ID's 16 bytes. Never persisted: a context lives for one key epoch."""
    from aiocoap import oscore

    class MemoryContext(oscore.CanProtect, oscore.CanUnprotect, oscore.SecurityContextUtils):
        def __init__(self) -> None:
            self.alg_aead = oscore.algorithms[OSCORE_ALGORITHM]
            self.hashfun = oscore.hashfunctions[OSCORE_HASH]
            self.sender_id, self.recipient_id = sender_id, recipient_id
            self.id_context = uuid.UUID(key_id).bytes
            self.derive_keys(b"", master_secret)
            self.sender_sequence_number = 0
            self.recipient_replay_window = oscore.ReplayWindow(REPLAY_WINDOW, lambda: None)
            self.recipient_replay_window.initialize_empty()
            self.echo_recovery = secrets.token_bytes(8)

        def post_seqnoincrease(self) -> None:
            """Nothing to persist: the context is never restored after a restart."""

        def __repr__(self) -> str:
            return f"<OSCORE context sender {self.sender_id.hex()} recipient {self.recipient_id.hex()}>"

    return MemoryContext()


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class CoapTestbed:
    """The control centre's CoAP server and the CoAP devices, in one event loop on a background thread.

    ``latency_ns`` maps (device SAE, sequence) to the one-way time from the device's send call to the
    server's resource (the payload starts with the sequence number and ``perf_counter_ns`` at sending);
    ``refusals`` counts the POSTs the server refused (4.xx), ``failures`` those without any answer.
    Counters are written in the loop thread; read them after ``finish``/``stop``.
    """

    def __init__(self, devices: list[str], timeout_s: float) -> None:
        self.devices = devices
        self.timeout_s = timeout_s
        self.port = 0
        self.latency_ns: dict[tuple[str, int], int] = {}
        self.last_receive_ns = 0
        self.refusals = 0
        self.failures = 0
        self.busy_s = 0.0  # time spent posting (first send to last answer of each post_all)
        self._bound_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="coap-loop", daemon=True)
        self._server: Any = None
        self._server_credentials: Any = None
        self._clients: dict[str, Any] = {}
        self._by_recipient = {device_id(i): sae for i, sae in enumerate(devices)}
        self._static_keys: dict[str, Any] = {}  # EDHOC static keys and credentials (CCS), per party
        self.edhoc_sessions = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> CoapTestbed:
        self._thread.start()
        self._run(self._start(), self.timeout_s)
        return self

    async def _start(self) -> None:
        import aiocoap
        import aiocoap.resource as resource
        from aiocoap import edhoc
        from aiocoap.credentials import CredentialsMap
        from aiocoap.oscore_sitewrapper import OscoreSiteWrapper

        site = resource.Site()
        site.add_resource([TELEMETRY_PATH], _telemetry_resource(self))
        self._server_credentials = CredentialsMap()
        for party, kid in [(SERVER_ID.decode(), SERVER_ID)] + [
            (s, device_id(i)) for i, s in enumerate(self.devices)
        ]:
            key = edhoc.CoseKeyForEdhoc.generate()  # from the OS's CSPRNG: not reproducible from a seed
            self._static_keys[party] = (key, key.as_ccs(kid=kid, subject=party))
        for _attempt in range(5):
            port = _free_udp_port()
            try:
                self._server = await aiocoap.Context.create_server_context(
                    OscoreSiteWrapper(site, self._server_credentials),
                    bind=("127.0.0.1", port),
                    transports=["udp6"],
                )
            except OSError:
                continue
            self.port = port
            break
        else:
            raise RuntimeError("the CoAP server found no free loopback UDP port")
        server_key, server_ccs = self._static_keys[SERVER_ID.decode()]
        self._server_credentials[f"{self.uri_base}/*"] = edhoc.EdhocCredentials(
            suite=EDHOC_SUITE,
            method=EDHOC_METHOD,
            own_cred_style="by-key-id",
            own_cred=server_ccs,
            private_key=server_key.secret_to_map(),
        )
        for sae in self.devices:
            self._clients[sae] = await aiocoap.Context.create_client_context(transports=["oscore", "simple6"])

    def stop(self) -> None:
        """Shut every context down and end the loop thread (bounded)."""
        if self._thread.is_alive():
            try:
                self._run(self._stop(), self.timeout_s)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=self.timeout_s)
        if not self._loop.is_running():
            self._loop.close()

    async def _stop(self) -> None:
        for client in self._clients.values():
            await client.shutdown()
        self._clients = {}
        if self._server is not None:
            await self._server.shutdown()
            self._server = None
        await asyncio.get_running_loop().shutdown_default_executor()  # aiocoap's getaddrinfo threads

    def __enter__(self) -> CoapTestbed:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, coroutine: Any, timeout_s: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout_s)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(f"CoAP step did not finish within {timeout_s} s") from None

    # ------------------------------------------------------------------ keys
    @property
    def uri_base(self) -> str:
        return f"coap://127.0.0.1:{self.port}"

    def set_keys(self, keys: Mapping[str, tuple[str, bytes, bytes]]) -> None:
        """New OSCORE contexts from ``keys``: device SAE -> (key_ID, control centre's key, device's key).
        The server forgets the device's previous context (its key is revoked)."""
        for index, sae in enumerate(self.devices):
            if sae not in keys:
                continue
            key_id, server_key, device_key = keys[sae]
            self.set_server_key(index, key_id, server_key)
            self.set_device_key(index, key_id, device_key)

    def set_server_key(self, index: int, key_id: str, key: bytes) -> None:
        """The server's QKD context for device ``index``; ends the device's permission to run EDHOC."""
        sae = self.devices[index]
        context = oscore_context(key, key_id, SERVER_ID, device_id(index))

        def install() -> None:
            self._end_classical(sae)
            self._server_credentials[f":{sae}"] = context

        self._in_loop(install)

    def set_device_key(self, index: int, key_id: str, key: bytes) -> None:
        credentials = self._clients[self.devices[index]].client_credentials
        context = oscore_context(key, key_id, device_id(index), SERVER_ID)
        self._in_loop(lambda: credentials.__setitem__(f"{self.uri_base}/*", context))

    def set_classical(self, index: int) -> None:
        """Device ``index`` goes classical: its QKD context is revoked on the server, which now accepts
        EDHOC from it; the device runs a fresh EDHOC with its next request."""
        from aiocoap import edhoc

        sae = self.devices[index]
        own_key, own_ccs = self._static_keys[sae]
        _server_key, server_ccs = self._static_keys[SERVER_ID.decode()]
        device_side = edhoc.EdhocCredentials(
            suite=EDHOC_SUITE,
            method=EDHOC_METHOD,
            own_cred_style="by-key-id",
            own_cred=own_ccs,
            private_key=own_key.secret_to_map(),
            peer_cred=server_ccs,
        )
        permission = edhoc.EdhocCredentials(suite=EDHOC_SUITE, method=EDHOC_METHOD, peer_cred=own_ccs)

        def install() -> None:
            self._server_credentials.pop(f":{sae}", None)
            self._server_credentials[f"{EDHOC_PERMISSION}{sae}"] = permission
            self._clients[sae].client_credentials[f"{self.uri_base}/*"] = device_side

        self._in_loop(install)
        self.edhoc_sessions += 1

    def _end_classical(self, sae: str) -> None:
        """Withdraw ``sae``'s EDHOC permission and drop the server's EDHOC-derived contexts of it."""
        from aiocoap import edhoc

        label = f"{EDHOC_PERMISSION}{sae}"
        self._server_credentials.pop(label, None)
        stale = [
            name
            for name, item in self._server_credentials.items()
            if isinstance(item, edhoc.EdhocResponderContext) and item.authenticated_claims == [label]
        ]
        for name in stale:
            del self._server_credentials[name]

    def drop_device_key(self, index: int) -> None:
        """Device ``index`` sends without OSCORE from now on (an unprovisioned device)."""
        credentials = self._clients[self.devices[index]].client_credentials
        self._in_loop(lambda: credentials.pop(f"{self.uri_base}/*", None))

    def _in_loop(self, action: Callable[[], None]) -> None:
        """Run ``action`` in the loop thread (the credentials maps are the loop's)."""

        async def run() -> None:
            action()

        self._run(run(), self.timeout_s)

    # ------------------------------------------------------------------ traffic
    def post(self, sae: str, sequence: int, size: int) -> str:
        """One confirmable POST of ``size`` bytes from ``sae``; the response code (``2.04 Changed``)."""
        return self._run(self._post(sae, sequence, size), self.timeout_s)

    def post_all(self, messages: Mapping[str, list[tuple[int, int]]]) -> dict[str, list[str]]:
        """Every device sends its (sequence, size) messages in order, each waiting for its answer, devices
        concurrently; returns the response codes per device."""
        return self.finish(self.start_posting(messages))

    def start_posting(self, messages: Mapping[str, list[tuple[int, int]]]) -> Future[dict[str, list[str]]]:
        """``post_all`` in the background (the caller publishes MQTT meanwhile); ``finish`` waits for it."""

        async def run() -> dict[str, list[str]]:
            async def device(sae: str, items: list[tuple[int, int]]) -> list[str]:
                return [await self._post(sae, sequence, size) for sequence, size in items]

            started = time.perf_counter()
            results = await asyncio.gather(*(device(sae, items) for sae, items in messages.items()))
            self.busy_s += time.perf_counter() - started
            return dict(zip(messages, results, strict=True))

        self._bound_s = self.timeout_s * max(1, max((len(items) for items in messages.values()), default=0))
        return asyncio.run_coroutine_threadsafe(run(), self._loop)

    def finish(self, future: Future[dict[str, list[str]]]) -> dict[str, list[str]]:
        try:
            return future.result(self._bound_s)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(f"CoAP posts did not finish within {self._bound_s} s") from None

    async def _post(self, sae: str, sequence: int, size: int) -> str:
        import aiocoap
        from aiocoap import oscore

        size = min(max(size, HEADER_BYTES), MAX_COAP_PAYLOAD)
        header = sequence.to_bytes(8, "big") + time.perf_counter_ns().to_bytes(8, "big")
        request = aiocoap.Message(
            code=aiocoap.POST,
            uri=f"{self.uri_base}/{TELEMETRY_PATH}",
            payload=header + bytes(size - HEADER_BYTES),
            transport_tuning=aiocoap.Reliable,
        )
        try:
            response = await asyncio.wait_for(self._clients[sae].request(request).response, self.timeout_s)
        except oscore.NotAProtectedMessage as refused:  # the server answers a refusal unprotected
            self.refusals += 1
            return str(refused.plain_message.code)
        except (TimeoutError, aiocoap.error.Error):
            self.failures += 1
            return "no answer"
        if not response.code.is_successful():
            self.refusals += 1
        return str(response.code)

    def _sender(self, context: Any) -> str | None:
        """The device an OSCORE context authenticates: its QKD context's recipient ID, or the EDHOC
        permission its EDHOC run was verified against."""
        claims = getattr(context, "authenticated_claims", None) or []
        if claims and claims[0].startswith(EDHOC_PERMISSION):
            return claims[0][len(EDHOC_PERMISSION) :]
        return self._by_recipient.get(context.recipient_id)

    def _received(self, sae: str, payload: bytes) -> None:
        now = time.perf_counter_ns()
        sequence = int.from_bytes(payload[:8], "big")
        sent = int.from_bytes(payload[8:16], "big")
        self.latency_ns.setdefault((sae, sequence), now - sent)
        self.last_receive_ns = max(self.last_receive_ns, now)


def _telemetry_resource(testbed: CoapTestbed) -> Any:
    """``/telemetry``: records an OSCORE-protected POST (device = its context's recipient ID); refuses a
    plain one with 4.01."""
    import aiocoap
    import aiocoap.resource as resource
    from aiocoap.transports.oscore import OSCOREAddress

    class TelemetryResource(resource.Resource):
        async def render_post(self, request: Any) -> Any:
            if not isinstance(request.remote, OSCOREAddress) or len(request.payload) < HEADER_BYTES:
                return aiocoap.Message(code=aiocoap.UNAUTHORIZED, payload=b"OSCORE required")
            sender = testbed._sender(request.remote.security_context)
            if sender is None:
                return aiocoap.Message(code=aiocoap.UNAUTHORIZED, payload=b"unknown device")
            testbed._received(sender, request.payload)
            return aiocoap.Message(code=aiocoap.CHANGED)

    return TelemetryResource()
