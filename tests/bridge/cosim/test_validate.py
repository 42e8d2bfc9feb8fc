"""The frame validator: every frame a peer can send gets ERROR or a valid reply, the run goes on, and nothing
inconsistent reaches the results. Explicit cases (each a finding of an independent fuzzer), then
property-based tests (hypothesis) over the real ZeroMQ serving loop."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.cosim import protocol
from bridge.cosim.client import ZmqClient
from bridge.cosim.orchestrator import Orchestrator, serve
from bridge.cosim.validate import MAX_COUNT

HELLO = {"version": 1, "peer": "validator-test", "devices": 20, "gateways": 2}
PEER_CODES = {protocol.E_MALFORMED, protocol.E_VERSION, protocol.E_TYPE, protocol.E_FIELD, protocol.E_STATE}


# ------------------------------------------------------------------ valid bodies for the current state
def key_request(orch: Orchestrator, rng: np.random.Generator) -> dict[str, Any]:
    """A valid KEY_REQUEST of the current round: some devices, each at its gateway, times in the round."""
    r, duration = orch._round, orch.round_duration_s
    devices = sorted(rng.choice(orch.n_devices, int(rng.integers(0, 6)), replace=False).tolist())
    return {
        "round": r,
        "device": devices,
        "gateway": [orch.validator.gateway_of[d] for d in devices],
        "time": (r * duration + rng.random(len(devices)) * duration).tolist(),
    }


def telemetry(orch: Orchestrator, rng: np.random.Generator) -> dict[str, Any]:
    """A valid TELEMETRY of the current round, consistent with the run's totals so far."""
    v, r = orch.validator, orch._round
    sent = int(rng.integers(0, 30))
    backlog = v.sent + sent - v.finished
    delivered = int(rng.integers(0, backlog + 1)) if v.with_session else 0
    lost = int(rng.integers(0, backlog - delivered + 1))
    devices = sorted(v.with_session)[: int(rng.integers(0, len(v.with_session) + 1))]
    records = sorted(rng.choice(np.flatnonzero(v._carried), int(rng.integers(0, 8)), replace=False).tolist())
    return {
        "round": r,
        "messages_sent": sent,
        "messages_delivered": delivered,
        "messages_lost": lost,
        "queue_drops": 0,
        "in_flight": backlog - delivered - lost,
        "payload_bytes_delivered": 40 * delivered,
        "latency_s": (rng.random(delivered) * orch.round_duration_s).tolist(),
        "session_device": devices,
        "session_energy_j": (rng.random(len(devices)) * 1e-3).tolist(),
        "record": records,
        "record_gateway": rng.integers(0, orch.n_gateways, len(records)).tolist(),
        "frames": 3 * sent,
        "mac_drops": 0,
        "retransmissions": 0,
    }


def next_valid(orch: Orchestrator, rng: np.random.Generator) -> tuple[str, dict[str, Any]]:
    if orch._state == "keys":
        return protocol.KEY_REQUEST, key_request(orch, rng)
    return protocol.TELEMETRY, telemetry(orch, rng)


@pytest.fixture
def joined(small_spec) -> Callable[..., Orchestrator]:
    def make(**overrides: Any) -> Orchestrator:
        orch = Orchestrator(small_spec(**overrides))
        kind, _ = orch.handle(protocol.HELLO, HELLO)
        assert kind == protocol.WELCOME
        return orch

    return make


def _refused(orch: Orchestrator, kind: str, body: dict[str, Any], code: str = protocol.E_FIELD) -> str:
    """``body`` is refused with ``code`` and leaves the orchestrator as it was."""

    def state() -> tuple[Any, ...]:
        v = orch.validator
        return orch._state, orch._round, v.sent, v.finished, len(v.with_session), len(orch.telemetry)

    before = state()
    reply_kind, reply = orch.handle(kind, body)
    assert reply_kind == protocol.ERROR, body
    assert reply["code"] == code, reply
    assert state() == before
    return reply["detail"]


# ------------------------------------------------------------------ syntax
def test_deep_nesting_is_refused_before_parsing():
    frame = b'{"v": 1, "type": "BYE", "body": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    assert len(frame) < 2100
    with pytest.raises(protocol.ProtocolError, match="nested 1001 levels") as info:
        protocol.decode(frame)
    assert info.value.code == protocol.E_MALFORMED
    unbalanced = b"[" * 200_000  # would overflow the parser's recursion before it found the error
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.decode(unbalanced)
    assert info.value.code == protocol.E_MALFORMED


@pytest.mark.parametrize(
    ("text", "depth"),
    [(b"", 0), (b"1", 0), (b"[]", 1), (b'{"a": [1, {"b": []}]}', 4), (b'["[[[[", "]"]', 1),
     (b'["\\"[[", ["\\\\"]]', 2), (b'{"k\\\\\\"[": [[]]}', 3), (b'"\\\\\\"[[["', 0)],
)  # fmt: skip
def test_nesting_depth_skips_brackets_inside_strings(text, depth):
    assert protocol.nesting_depth(text) == depth


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=30,
)


def _true_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_true_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_true_depth, value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans())
def test_nesting_depth_is_the_depth_of_any_json_document(value, ascii_only):
    assert protocol.nesting_depth(json.dumps(value, ensure_ascii=ascii_only).encode()) == _true_depth(value)


def test_duplicate_member_names_are_malformed():
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.decode(b'{"v": 1, "type": "BYE", "type": "HELLO", "body": {"reason": "x"}}')
    assert info.value.code == protocol.E_MALFORMED


# ------------------------------------------------------------------ KEY_REQUEST
@pytest.mark.parametrize("big", [2**63 - 1, 2**63, 2**64, 10**30, -(2**63) - 1])
def test_ids_at_and_beyond_2_to_the_63_are_bad_fields(joined, big):
    orch = joined()
    assert "outside" in _refused(
        orch, protocol.KEY_REQUEST, {"round": 0, "device": [big], "gateway": [0], "time": [0.1]}
    )
    assert "outside" in _refused(
        orch, protocol.KEY_REQUEST, {"round": 0, "device": [0], "gateway": [big], "time": [0.1]}
    )
    orch.handle(protocol.KEY_REQUEST, {"round": 0, "device": [0], "gateway": [0], "time": [0.1]})
    base = {**telemetry(orch, np.random.default_rng(1)), "session_device": [0], "session_energy_j": [0.0]}
    base.update(record=[int(np.flatnonzero(orch.validator._carried)[0])], record_gateway=[0])
    for field in ("record", "session_device", "record_gateway"):
        assert "outside" in _refused(orch, protocol.TELEMETRY, {**base, field: [big]})
    assert orch.handle(protocol.TELEMETRY, base)[0] == protocol.VERDICT


@pytest.mark.parametrize("when", [3600.0, 1e6, 1e300, -0.01, 0.5000001])
def test_session_times_outside_the_round_are_bad_fields(joined, when):
    orch = joined()
    detail = _refused(orch, protocol.KEY_REQUEST, {"round": 0, "device": [0], "gateway": [0], "time": [when]})
    assert "KEY_REQUEST.time (round 0)" in detail


def test_a_device_asks_once_per_round_and_only_at_its_own_gateway(joined):
    orch = joined()  # 20 devices over 2 gateways: devices 0-9 at gateway 0, 10-19 at gateway 1
    assert "listed twice" in _refused(
        orch, protocol.KEY_REQUEST, {"round": 0, "device": [3] * 4, "gateway": [0] * 4, "time": [0.1] * 4}
    )
    assert "belongs to gateway 1, not 0" in _refused(
        orch, protocol.KEY_REQUEST, {"round": 0, "device": [12], "gateway": [0], "time": [0.1]}
    )
    assert orch.pools[0].keys_delivered == 0  # no key spent on a refused request
    kind, grant = orch.handle(
        protocol.KEY_REQUEST, {"round": 0, "device": [3, 12], "gateway": [0, 1], "time": [0.1, 0.2]}
    )
    assert kind == protocol.KEY_GRANT and grant["device"] == [3, 12]


# ------------------------------------------------------------------ TELEMETRY
@pytest.fixture
def granted(joined):
    """An orchestrator in round 0 after a grant for devices 0 and 12."""
    orch = joined()
    orch.handle(protocol.KEY_REQUEST, {"round": 0, "device": [0, 12], "gateway": [0, 1], "time": [0.1, 0.2]})
    return orch


def good_telemetry(orch: Orchestrator) -> dict[str, Any]:
    record = int(np.flatnonzero(orch.validator._carried)[0])
    return {
        "round": 0, "messages_sent": 5, "messages_delivered": 3, "messages_lost": 1, "queue_drops": 0,
        "in_flight": 1, "payload_bytes_delivered": 120, "latency_s": [0.01, 0.02, 0.4],
        "session_device": [0, 12], "session_energy_j": [0.001, 0.002], "record": [record],
        "record_gateway": [0], "frames": 9, "mac_drops": 1, "retransmissions": 0,
    }  # fmt: skip


@pytest.mark.parametrize(
    "field",
    ["messages_sent", "messages_delivered", "messages_lost", "queue_drops", "in_flight",
     "payload_bytes_delivered", "frames", "mac_drops", "retransmissions"],
)  # fmt: skip
@pytest.mark.parametrize("value", [-1, -3000, MAX_COUNT + 1, 2**64])
def test_counts_must_be_non_negative_and_bounded(granted, field, value):
    assert "outside 0.." in _refused(granted, protocol.TELEMETRY, {**good_telemetry(granted), field: value})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"messages_sent": 2}, "so far, but only 2 sent"),  # delivered 3 + lost 1 > sent 2
        ({"messages_lost": 3}, "so far, but only 5 sent"),
        ({"in_flight": 2}, "2 messages in flight"),
        ({"latency_s": [0.01, 0.02]}, "2 latencies for 3 delivered"),
        ({"latency_s": [0.01, 0.02, -5.0]}, "latency_s: -5.0 s outside"),
        ({"latency_s": [0.01, 0.02, 0.6]}, "latency_s: 0.6 s outside"),  # longer than the run so far
        ({"payload_bytes_delivered": 10**9}, "cannot carry"),
        ({"session_device": [0, 0]}, "listed twice"),
        ({"session_device": [0, 5]}, "device 5 was never granted a session"),
        ({"session_energy_j": [-0.001, 0.0]}, "session_energy_j: -0.001 J outside"),
        ({"session_energy_j": [1e300, 0.0]}, "session_energy_j: 1e+300 J outside"),
        ({"record_gateway": [2]}, "gateway 2 outside 0..1"),
    ],
)
def test_inconsistent_telemetry_is_refused_and_the_round_goes_on(granted, change, message):
    assert message in _refused(granted, protocol.TELEMETRY, {**good_telemetry(granted), **change})
    assert granted.handle(protocol.TELEMETRY, good_telemetry(granted))[0] == protocol.VERDICT


def test_records_are_held_out_records_reported_once(granted):
    good = good_telemetry(granted)
    trained = int(np.flatnonzero(~granted.validator._carried)[0])
    assert "not a held-out record" in _refused(granted, protocol.TELEMETRY, {**good, "record": [trained]})
    twice = {**good, "record": good["record"] * 2, "record_gateway": [0, 0]}
    assert "listed twice" in _refused(granted, protocol.TELEMETRY, twice)


def test_a_delivery_may_complete_a_message_of_an_earlier_round(granted):
    orch = granted
    first = {**good_telemetry(orch), "messages_delivered": 0, "latency_s": [], "payload_bytes_delivered": 0,
             "messages_lost": 0, "in_flight": 5}  # fmt: skip
    assert orch.handle(protocol.TELEMETRY, first)[0] == protocol.VERDICT
    orch.handle(protocol.KEY_REQUEST, {"round": 1, "device": [], "gateway": [], "time": []})
    second = {**first, "round": 1, "messages_sent": 0, "messages_delivered": 5, "in_flight": 0,
              "latency_s": [0.9] * 5, "payload_bytes_delivered": 200}  # fmt: skip
    assert orch.handle(protocol.TELEMETRY, second)[0] == protocol.VERDICT
    orch.handle(protocol.KEY_REQUEST, {"round": 2, "device": [], "gateway": [], "time": []})
    third = {**second, "round": 2, "messages_delivered": 1, "latency_s": [1.2], "payload_bytes_delivered": 40}
    assert "6 messages delivered, lost or dropped so far, but only 5 sent" in _refused(
        orch, protocol.TELEMETRY, third
    )


def test_hello_names_are_short_printable_text(small_spec):
    orch = Orchestrator(small_spec())
    assert orch.handle(protocol.HELLO, {**HELLO, "peer": "x\n" * 10})[0] == protocol.ERROR
    assert orch.handle(protocol.HELLO, {**HELLO, "peer": "p" * 201})[0] == protocol.ERROR
    assert orch.handle(protocol.HELLO, HELLO)[0] == protocol.WELCOME


# ------------------------------------------------------------------ property-based, over ZeroMQ
ADVERSARIAL_INTS = (
    st.sampled_from([-1, -3000, 0, 1, 19, 20, 2**31, 2**53, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**300])
    | st.integers()
)
ADVERSARIAL_FLOATS = st.sampled_from([-0.0, -1e-9, 1e-300, 0.5, 3600.0, 1e6, 1e300, -1e300]) | st.floats(
    allow_nan=False, allow_infinity=False
)
ADVERSARIAL_VALUES = (
    ADVERSARIAL_INTS
    | ADVERSARIAL_FLOATS
    | st.none()
    | st.booleans()
    | st.text(max_size=20)
    | st.lists(ADVERSARIAL_INTS | ADVERSARIAL_FLOATS, max_size=6)
    | json_values
)
TYPES = [*protocol.SCHEMAS, "LAUNCH", ""]


FUZZ_PLANS = st.fixed_dictionaries(
    {
        "choice": st.integers(0, 10),
        "seed": st.integers(0, 2**32 - 1),
        "raw": st.binary(max_size=300),
        "junk": json_values,
        "every_field": st.lists(ADVERSARIAL_VALUES, min_size=15, max_size=15),
        "field": st.integers(0, 63),
        "position": st.integers(0, 63),
        "value": ADVERSARIAL_VALUES,
        "extension": st.lists(ADVERSARIAL_INTS | ADVERSARIAL_FLOATS, min_size=1, max_size=3),
        "name": st.text(max_size=8),
        "type": st.sampled_from(TYPES),
        "version": st.sampled_from([0, 2, -1, 2**64, "1", None, 1.0, True]),
    }
)


def fuzz_frame(plan: dict[str, Any], orch: Orchestrator) -> bytes:
    """A frame near the current valid one (drawn independently of the run's state, applied to it): raw
    bytes, junk JSON, every field replaced, one field replaced, a column extended or one entry replaced, a
    field dropped and another added, the wrong type, the wrong round, the valid frame itself, or the wrong
    protocol version."""
    kind, body = next_valid(orch, np.random.default_rng(plan["seed"]))
    choice, names = plan["choice"], sorted(body)
    name = names[plan["field"] % len(names)]
    if choice == 0:
        return plan["raw"]
    if choice == 1:
        return json.dumps(plan["junk"]).encode()
    if choice == 2:
        body = dict(zip(names, plan["every_field"], strict=False))
    elif choice == 3:
        body[name] = plan["value"]
    elif choice == 4 and isinstance(body[name], list):
        body[name] = body[name] + plan["extension"]
    elif choice == 5 and isinstance(body[name], list) and body[name]:
        column = list(body[name])
        column[plan["position"] % len(column)] = plan["value"]
        body[name] = column
    elif choice == 6:
        body.pop(name)
        body[plan["name"]] = plan["value"]
    elif choice == 7:
        kind = plan["type"]
    elif choice == 8:
        body["round"] = plan["value"]
    version = plan["version"] if choice == 10 else 1
    envelope = {"v": version, "type": kind, "body": body}
    return json.dumps(envelope, allow_nan=True).encode()


def _sane_table(table: pd.DataFrame) -> None:
    scalars = table[table["type"] == "scalar"]
    values = dict(zip(scalars["module"] + "/" + scalars["name"], scalars["value"], strict=True))
    counts = [name for name in values if name.startswith(("network/", "keys/", "hybrid/", "crypto/"))]
    assert all(values[name] >= 0 or np.isnan(values[name]) for name in counts), values
    sent = values["network/messages_sent"]
    assert values["network/messages_delivered"] + values["network/messages_lost"] <= sent
    vectors = table[table["type"] == "vector"]
    for values_of_round in vectors["vecvalue"]:
        finite = np.asarray(values_of_round, dtype=float)
        assert (finite[np.isfinite(finite)] >= 0).all()


def fuzz_run(small_spec, tmp_path, examples: int, rounds: int, derandomize: bool = False) -> dict[str, int]:
    """Serve a run on a real socket; hypothesis sends fuzz frames between valid ones; then the run is
    finished with valid frames and its table checked. Returns counts of the replies. ``derandomize``: the
    same frames every time (make test stays reproducible; the slow variant searches afresh)."""
    orch = Orchestrator(small_spec(rounds=rounds))
    socket = zmq.Context.instance().socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    endpoint = f"ipc://{tmp_path}/fuzz.sock"
    socket.bind(endpoint)
    errors: list[BaseException] = []

    def serving() -> None:
        try:
            serve(orch, socket, timeout_s=120)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=serving, daemon=True)
    thread.start()
    replies: dict[str, int] = {}
    rng = np.random.default_rng(5)
    with ZmqClient(endpoint, timeout_s=30) as client:
        assert client.call(protocol.HELLO, HELLO)[0] == protocol.WELCOME

        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            database=None,
            derandomize=derandomize,
        )
        @given(st.data())
        def one_frame(data) -> None:
            plan = data.draw(FUZZ_PLANS)
            if orch._round >= rounds - 1 and orch._state == "keys":
                return  # keep the last round for the valid finish below
            frame = fuzz_frame(plan, orch)
            reply = protocol.decode(client.call_raw(frame))
            assert not errors, errors
            if reply.type == protocol.ERROR:
                assert reply.body["code"] in PEER_CODES, reply.body
                replies[reply.body["code"]] = replies.get(reply.body["code"], 0) + 1
            else:
                assert reply.type in (protocol.KEY_GRANT, protocol.VERDICT, protocol.WELCOME), reply
                replies[reply.type] = replies.get(reply.type, 0) + 1
            if rng.random() < 0.2:  # move the run on now and then, so every state gets fuzzed
                kind, _ = client.call(*next_valid(orch, rng))
                assert kind in (protocol.KEY_GRANT, protocol.VERDICT)

        one_frame()
        while not (orch._round == rounds and orch._state == "keys"):
            kind, _ = client.call(*next_valid(orch, rng))
            assert kind in (protocol.KEY_GRANT, protocol.VERDICT)
        assert client.call(protocol.BYE, {"reason": "fuzzed"})[0] == protocol.BYE
    thread.join(30)
    socket.close()
    assert not thread.is_alive() and not errors, errors
    assert orch.finished
    _sane_table(orch.table())
    return replies


def test_any_frame_gets_error_or_a_valid_reply_and_the_run_goes_on(small_spec, tmp_path):
    replies = fuzz_run(small_spec, tmp_path, examples=300, rounds=40, derandomize=True)
    assert replies.get(protocol.E_FIELD, 0) > 0 and replies.get(protocol.E_MALFORMED, 0) > 0


@pytest.mark.slow
def test_any_frame_gets_error_or_a_valid_reply_long(small_spec, tmp_path):
    fuzz_run(small_spec, tmp_path, examples=5000, rounds=200)
