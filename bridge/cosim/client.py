"""The peer's side of the ZeroMQ protocol in Python: one request, one reply, awaited with a timeout.

A DEALER socket sends ``[b"", frame]`` (the envelope of a REQ socket), so the orchestrator's ROUTER answers
REQ and DEALER peers alike; unlike REQ, a DEALER is not wedged by a lost reply.
"""

from __future__ import annotations

from typing import Any

import zmq

from bridge.cosim import protocol


class BridgeTimeout(TimeoutError):
    """No reply from the orchestrator within the timeout."""


class ZmqClient:
    def __init__(self, endpoint: str, *, timeout_s: float) -> None:
        self.endpoint = endpoint
        self.timeout_ms = int(timeout_s * 1000)
        self._context = zmq.Context.instance()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES + 1024)
        self._socket.connect(endpoint)

    def call_raw(self, frame: bytes) -> bytes:
        self._socket.send_multipart([b"", frame])
        if not self._socket.poll(self.timeout_ms, zmq.POLLIN):
            raise BridgeTimeout(f"no reply from {self.endpoint} within {self.timeout_ms / 1000:g} s")
        parts = self._socket.recv_multipart()
        return parts[-1]

    def call(self, kind: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        reply = protocol.decode(self.call_raw(protocol.encode(kind, body)))
        return reply.type, reply.body

    def close(self) -> None:
        self._socket.close(linger=0)

    def __enter__(self) -> ZmqClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
