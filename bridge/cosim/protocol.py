"""The orchestrator's ZeroMQ protocol: typed, versioned JSON messages (documented in ``docs/protocol.md``).

Every frame is one UTF-8 JSON object ``{"v": 1, "type": "<TYPE>", "body": {...}}`` of at most
``MAX_FRAME_BYTES``. Bodies are checked field by field against :data:`SCHEMAS` (types, list element types,
equal column lengths); nothing is ever evaluated. Numbers are finite (no NaN/Infinity), so any JSON library
(nlohmann-json on the C++ side) reads them. Key material never travels: grants carry key IDs only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 16 * 1024 * 1024
#: Deepest nesting of arrays and objects a frame may have (the protocol uses three: frame, body, column).
MAX_NESTING = 8

HELLO, WELCOME = "HELLO", "WELCOME"
KEY_REQUEST, KEY_GRANT = "KEY_REQUEST", "KEY_GRANT"
TELEMETRY, VERDICT = "TELEMETRY", "VERDICT"
BYE, ERROR = "BYE", "ERROR"

# Field kinds: "int", "float" (int accepted), "str", "bool", "[int]", "[float]", "[str]", "[str?]", "[bool]".
SCHEMAS: dict[str, dict[str, str]] = {
    HELLO: {"version": "int", "peer": "str", "devices": "int", "gateways": "int"},
    WELCOME: {
        "version": "int",
        "rounds": "int",
        "round_duration_s": "float",
        "devices": "int",
        "gateways": "int",
    },
    KEY_REQUEST: {"round": "int", "device": "[int]", "gateway": "[int]", "time": "[float]"},
    KEY_GRANT: {
        "round": "int",
        "device": "[int]",
        "mode": "[str]",
        "handshake": "[str]",
        "cipher": "[str]",
        "key_id": "[str?]",
        "extra_bytes": "[int]",
        "handshake_up_bytes": "[int]",
        "handshake_down_bytes": "[int]",
        "handshake_device_s": "[float]",
        "handshake_gateway_s": "[float]",
        "cipher_device_s_fixed": "[float]",
        "cipher_device_s_per_block": "[float]",
        "cipher_gateway_s_fixed": "[float]",
        "cipher_gateway_s_per_byte": "[float]",
    },
    TELEMETRY: {
        "round": "int",
        "messages_sent": "int",
        "messages_delivered": "int",
        "messages_lost": "int",
        "queue_drops": "int",
        "in_flight": "int",
        "payload_bytes_delivered": "int",
        "latency_s": "[float]",
        "session_device": "[int]",
        "session_energy_j": "[float]",
        "record": "[int]",
        "record_gateway": "[int]",
        "frames": "int",
        "mac_drops": "int",
        "retransmissions": "int",
    },
    VERDICT: {"round": "int", "link_flagged": "[bool]", "flagged_records": "[int]"},
    BYE: {"reason": "str"},
    ERROR: {"code": "str", "detail": "str"},
}

#: Columns of a message that must have equal lengths (one entry per session / per record).
COLUMN_GROUPS: dict[str, tuple[tuple[str, ...], ...]] = {
    KEY_REQUEST: (("device", "gateway", "time"),),
    KEY_GRANT: (tuple(k for k in SCHEMAS[KEY_GRANT] if k != "round"),),
    TELEMETRY: (("session_device", "session_energy_j"), ("record", "record_gateway")),
}

#: ERROR codes.
E_MALFORMED = "malformed"  # not JSON, not an object, too large, bad envelope
E_VERSION = "version"  # protocol version not supported
E_TYPE = "unknown-type"
E_FIELD = "bad-field"  # body does not match the schema
E_STATE = "out-of-order"  # valid message at the wrong time (e.g. before HELLO)
E_INTERNAL = "internal"  # the orchestrator failed while serving a valid request
E_BUSY = "busy"  # the run is locked to another peer (the one whose HELLO was accepted)


class ProtocolError(ValueError):
    """A frame that cannot be accepted; ``code`` is one of the ``E_*`` codes."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Message:
    type: str
    body: dict[str, Any]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_float(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and value == value and abs(value) != float("inf")


_SCALAR_CHECKS = {
    "int": _is_int,
    "float": _is_float,
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "str?": lambda v: v is None or isinstance(v, str),
}


#: Python types each list element kind admits (``bool`` is not an ``int`` here: ``type`` is compared).
_LIST_TYPES = {
    "int": frozenset({int}),
    "float": frozenset({int, float}),
    "str": frozenset({str}),
    "bool": frozenset({bool}),
    "str?": frozenset({str, type(None)}),
}


def _list_of(element: str, values: list[Any]) -> bool:
    """Every element of ``values`` is of kind ``element`` (floats finite); fast for long columns."""
    if not set(map(type, values)) <= _LIST_TYPES[element]:
        return False
    if element != "float" or not values:
        return True
    try:
        return bool(np.isfinite(np.asarray(values, dtype=np.float64)).all())
    except OverflowError:  # an integer beyond any double
        return False


def check_body(kind: str, body: Any) -> dict[str, Any]:
    """Validate a body against the schema of ``kind``; returns it, raises :class:`ProtocolError`."""
    schema = SCHEMAS.get(kind)
    if schema is None:
        raise ProtocolError(E_TYPE, f"unknown message type {kind!r}; known: {', '.join(SCHEMAS)}")
    if not isinstance(body, dict):
        raise ProtocolError(E_FIELD, f"{kind}: body must be an object")
    missing = [name for name in schema if name not in body]
    extra = [name for name in body if name not in schema]
    if missing or extra:
        raise ProtocolError(E_FIELD, f"{kind}: missing fields {missing}, unexpected fields {extra[:5]}")
    for name, field_kind in schema.items():
        value = body[name]
        if field_kind.startswith("["):
            if not isinstance(value, list) or not _list_of(field_kind[1:-1], value):
                raise ProtocolError(E_FIELD, f"{kind}.{name} must be a list of {field_kind[1:-1]}")
        elif not _SCALAR_CHECKS[field_kind](value):
            raise ProtocolError(E_FIELD, f"{kind}.{name} must be a finite {field_kind}")
    for group in COLUMN_GROUPS.get(kind, ()):
        lengths = {len(body[name]) for name in group}
        if len(lengths) > 1:
            raise ProtocolError(E_FIELD, f"{kind}: columns {', '.join(group)} differ in length")
    return body


def encode(kind: str, body: Mapping[str, Any]) -> bytes:
    """One frame; the body is validated first so a peer never receives what it would have to reject."""
    checked = check_body(kind, dict(body))
    frame = json.dumps(
        {"v": PROTOCOL_VERSION, "type": kind, "body": checked}, separators=(",", ":"), allow_nan=False
    ).encode()
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError(E_MALFORMED, f"{kind} frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
    return frame


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-finite number {name}")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        raise ValueError("an object names a member twice")
    return members


_BRACKET_STEP = np.zeros(256, dtype=np.int8)
_BRACKET_STEP[[ord("["), ord("{")]] = 1
_BRACKET_STEP[[ord("]"), ord("}")]] = -1


def nesting_depth(frame: bytes) -> int:
    """How deeply the arrays and objects of a JSON text nest, brackets inside strings skipped; no parsing,
    linear time (a quote ends a string unless an odd run of backslashes precedes it)."""
    text = np.frombuffer(frame, dtype=np.uint8)
    steps = _BRACKET_STEP[text]
    brackets = np.flatnonzero(steps)
    if brackets.size == 0:
        return 0
    quotes = np.flatnonzero(text == ord('"'))
    backslashes = np.flatnonzero(text == ord("\\"))
    if backslashes.size and quotes.size:
        new_run = np.ones(backslashes.size, dtype=bool)
        new_run[1:] = np.diff(backslashes) != 1
        run_start = backslashes[np.flatnonzero(new_run)][np.cumsum(new_run) - 1]
        at = np.minimum(np.searchsorted(backslashes, quotes - 1), backslashes.size - 1)
        escaped_by = np.where(backslashes[at] == quotes - 1, quotes - run_start[at], 0)
        quotes = quotes[escaped_by % 2 == 0]
    outside = np.searchsorted(quotes, brackets) % 2 == 0
    return int(np.cumsum(steps[brackets[outside]], dtype=np.int64).max(initial=0))


def decode(frame: bytes) -> Message:
    """Parse and validate one frame: size and nesting depth first, then JSON, envelope and body schema."""
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError(E_MALFORMED, f"frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
    depth = nesting_depth(frame)
    if depth > MAX_NESTING:
        raise ProtocolError(E_MALFORMED, f"nested {depth} levels deep; at most {MAX_NESTING} are allowed")
    try:
        data = json.loads(
            frame.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_unique_members
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(E_MALFORMED, f"not a UTF-8 JSON document ({type(exc).__name__})") from None
    if not isinstance(data, dict) or set(data) != {"v", "type", "body"}:
        raise ProtocolError(E_MALFORMED, 'a frame is an object with exactly "v", "type" and "body"')
    if data["v"] != PROTOCOL_VERSION or not _is_int(data["v"]):
        raise ProtocolError(
            E_VERSION, f"protocol version {data['v']!r} not supported (this is {PROTOCOL_VERSION})"
        )
    kind = data["type"]
    if not isinstance(kind, str):
        raise ProtocolError(E_TYPE, "type must be a string")
    return Message(kind, check_body(kind, data["body"]))


def error_frame(code: str, detail: str) -> bytes:
    return encode(ERROR, {"code": code, "detail": detail[:500]})
