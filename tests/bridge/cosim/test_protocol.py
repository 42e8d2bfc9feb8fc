import json

import pytest

from bridge.cosim import protocol


def test_round_trip_of_every_message_type():
    bodies = {
        protocol.HELLO: {"version": 1, "peer": "t", "devices": 2, "gateways": 1},
        protocol.KEY_REQUEST: {"round": 0, "device": [0, 1], "gateway": [0, 0], "time": [0.25, 0.5]},
        protocol.VERDICT: {"round": 0, "link_flagged": [False], "flagged_records": [3]},
        protocol.BYE: {"reason": "done"},
        protocol.ERROR: {"code": "x", "detail": "y"},
    }
    for kind, body in bodies.items():
        message = protocol.decode(protocol.encode(kind, body))
        assert message.type == kind and message.body == body


def test_floats_survive_the_wire_exactly():
    times = [0.1 + 0.2, 1e-300, 123456.789012345678]
    body = {"round": 0, "device": [0, 1, 2], "gateway": [0, 0, 0], "time": times}
    assert protocol.decode(protocol.encode(protocol.KEY_REQUEST, body)).body["time"] == times


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\xff\xfe garbage", protocol.E_MALFORMED),
        (b"[1, 2]", protocol.E_MALFORMED),
        (b'{"v": 1, "type": "HELLO"}', protocol.E_MALFORMED),
        (b'{"v": 2, "type": "HELLO", "body": {}}', protocol.E_VERSION),
        (b'{"v": 1, "type": "LAUNCH", "body": {}}', protocol.E_TYPE),
        (b'{"v": 1, "type": 7, "body": {}}', protocol.E_TYPE),
        (b'{"v": 1, "type": "BYE", "body": {"reason": 5}}', protocol.E_FIELD),
        (b'{"v": 1, "type": "BYE", "body": {"reason": "x", "extra": 1}}', protocol.E_FIELD),
        (b'{"v": 1, "type": "KEY_REQUEST", "body": {"round": 0, "device": [0], "gateway": [], "time": [1]}}',
         protocol.E_FIELD),
        (b'{"v": 1, "type": "KEY_REQUEST", "body": {"round": 0, "device": [true], "gateway": [0], '
         b'"time": [1]}}',
         protocol.E_FIELD),
        (b'{"v": 1, "type": "KEY_REQUEST", "body": {"round": 0, "device": [0], "gateway": [0], '
         b'"time": [NaN]}}',
         protocol.E_MALFORMED),
        (b'{"v": 1, "type": "KEY_REQUEST", "body": {"round": 0, "device": [0], "gateway": [0], '
         b'"time": [1e400]}}',
         protocol.E_FIELD),
        (b'{"v": 1, "type": "KEY_REQUEST", "body": {"round": 0, "device": [0.0], "gateway": [0], '
         b'"time": [1]}}',
         protocol.E_FIELD),
        (b'{"v": 1, "type": "KEY_REQUEST", "body": {"round": 0, "device": [0], "gateway": [0], '
         b'"time": [1' + b'0' * 400 + b']}}',
         protocol.E_FIELD),
        (b'{"v": 1, "type": "HELLO", "body": {"version": "__import__(\'os\')", "peer": "", "devices": 1, '
         b'"gateways": 1}}', protocol.E_FIELD),
    ],
)  # fmt: skip
def test_bad_frames_are_rejected_with_a_code(frame, code):
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.decode(frame)
    assert info.value.code == code


def test_oversized_frames_are_rejected_before_parsing(monkeypatch):
    monkeypatch.setattr(protocol, "MAX_FRAME_BYTES", 1000)
    frame = json.dumps({"v": 1, "type": "BYE", "body": {"reason": "x" * 2000}}).encode()
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.decode(frame)
    assert info.value.code == protocol.E_MALFORMED
    with pytest.raises(protocol.ProtocolError):
        protocol.encode(protocol.BYE, {"reason": "x" * 2000})


def test_encode_refuses_what_a_peer_would_reject():
    with pytest.raises(protocol.ProtocolError):
        protocol.encode(
            protocol.KEY_REQUEST, {"round": 0, "device": [0], "gateway": [0], "time": [float("nan")]}
        )
