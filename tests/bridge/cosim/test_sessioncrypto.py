"""Real handshakes per started session and real AES-GCM records per delivered message in a run."""

import base64
import logging

import pandas as pd
import pytest

from bridge.cosim import protocol
from bridge.cosim.orchestrator import Orchestrator, run_once
from bridge.cosim.sessioncrypto import HANDSHAKE_KINDS, MAX_MESSAGE_BYTES, SessionCrypto
from qesif_core import crypto
from qesif_core.keys import KeyPool
from qesif_core.schemes.base import SessionPlan


def _scalars(table: pd.DataFrame) -> dict[str, float]:
    rows = table[table["type"] == "scalar"]
    return dict(zip(rows["module"] + "/" + rows["name"], rows["value"], strict=True))


def _spec(small_spec, scheme: str, channel: str = "clean") -> dict:
    """A short run with QKD keys every round and sessions lasting 2 rounds (so some rounds start none); over
    Wi-Fi, where every scheme's handshakes get through (four devices of a saturated 802.15.4 PAN starting
    ML-KEM handshakes of ~11 fragments each at once fail channel access for most of them)."""
    spec = small_spec(
        seed=11, rounds=4, channel=channel, scheme=scheme, devices=8, mean_interarrival_s=0.05, access="wifi"
    )
    spec["qkd"]["pulses_per_block"] = 1_000_000
    spec["keys"] = {"epsilon_min": 0.01, "session_rounds": 2}
    return spec


@pytest.mark.parametrize("scheme", ["QESIF", "QRHE", "HyQuSec", "QLSN"])
def test_counts_match_sessions_started_and_messages_delivered(small_spec, scheme):
    s = _scalars(run_once(_spec(small_spec, scheme)))
    started = s["hybrid/quantum_sessions"] + s["hybrid/classical_sessions"] + s["hybrid/pq_hybrid_sessions"]
    by_kind = {kind: s[f"crypto/handshakes_{kind}"] for kind in HANDSHAKE_KINDS}
    assert started > 0
    assert s["crypto/handshakes"] == sum(by_kind.values()) == started
    assert by_kind["qkd-psk"] == s["hybrid/quantum_sessions"]
    # Every QKD key used went into exactly one handshake (qkd-psk alone or mixed into a PQ exchange).
    assert s["keys/keys_used"] == sum(n for kind, n in by_kind.items() if "qkd-psk" in kind)
    assert s["network/messages_delivered"] > 0
    assert s["crypto/records_sealed"] == s["crypto/records_opened"] == s["network/messages_delivered"]
    assert s["crypto/aead_failures"] == 0


def test_each_scheme_runs_the_handshakes_its_plans_name(small_spec):
    qrhe = _scalars(run_once(_spec(small_spec, "QRHE")))
    assert qrhe["crypto/handshakes_mlkem768"] == qrhe["crypto/handshakes"] > 0
    qlsn = _scalars(run_once(_spec(small_spec, "QLSN")))
    assert qlsn["crypto/handshakes_x25519-mlkem768+qkd-psk"] > 0


def test_no_key_bytes_in_table_logs_or_parquet(small_spec, monkeypatch, caplog, tmp_path):
    granted: list[bytes] = []
    session_keys: list[bytes] = []
    real_enc_keys, real_establish = KeyPool.enc_keys, crypto.establish

    def recording_enc_keys(self, *args, **kwargs):
        container = real_enc_keys(self, *args, **kwargs)
        granted.extend(base64.b64decode(entry["key"]) for entry in container["keys"])
        return container

    def recording_establish(*args, **kwargs):
        handshake = real_establish(*args, **kwargs)
        session_keys.extend((handshake.initiator_key, handshake.responder_key))
        return handshake

    monkeypatch.setattr(KeyPool, "enc_keys", recording_enc_keys)
    monkeypatch.setattr(crypto, "establish", recording_establish)
    caplog.set_level(logging.DEBUG)
    table = run_once(_spec(small_spec, "QESIF"), bridge="zmq")
    parquet = tmp_path / "run.parquet"
    table.to_parquet(parquet)
    assert granted and session_keys
    s = _scalars(table)
    assert s["crypto/handshakes_qkd-psk"] > 0
    text = table.to_csv() + caplog.text + pd.read_parquet(parquet).to_csv()
    raw = parquet.read_bytes()
    for key in granted + session_keys:
        for form in (key.hex(), key.hex().upper(), base64.b64encode(key).decode()):
            assert form not in text
            assert form.encode() not in raw
        assert key not in raw


def test_a_tampered_record_is_counted_as_an_aead_failure(small_spec, monkeypatch, caplog):
    tampered = []

    def flip_every_third(record: bytes) -> bytes:
        tampered.append(len(tampered) % 3 == 0)
        if not tampered[-1]:
            return record
        return record[:-1] + bytes([record[-1] ^ 0x01])  # one bit of the GCM tag

    monkeypatch.setattr(SessionCrypto, "_transmit", staticmethod(flip_every_third))
    caplog.set_level(logging.WARNING)
    s = _scalars(run_once(_spec(small_spec, "QESIF")))
    failures = sum(tampered)
    assert failures > 0
    assert s["crypto/aead_failures"] == failures
    assert s["crypto/records_opened"] == s["crypto/records_sealed"] - failures
    assert "failed AES-GCM authentication" in caplog.text


def test_different_keys_on_the_two_sides_fail_every_record(rng):
    """A handshake whose sides disagree must not pass a record (the control centre opens with its own key)."""
    sessions = SessionCrypto(rng)
    sessions.start_session(3, SessionPlan("classical", "x25519", "aes-128-gcm", consumes_qkd_key=False))
    sessions._centre_side[3] = crypto.AeadChannel(bytes(16))
    sessions.deliver_round([3], messages=4, payload_bytes=70)
    assert (sessions.records_sealed, sessions.records_opened, sessions.aead_failures) == (4, 0, 4)


def test_delivered_payload_is_split_into_records_of_the_round(rng, monkeypatch):
    sessions = SessionCrypto(rng)
    plan = SessionPlan("pq-hybrid", "x25519-mlkem768", "aes-256-gcm", consumes_qkd_key=False)
    for device in (1, 2):
        assert sessions.start_session(device, plan) == "x25519-mlkem768"
    sizes = []
    monkeypatch.setattr(
        SessionCrypto,
        "_transmit",
        staticmethod(lambda record: sizes.append(len(record) - crypto.AEAD_RECORD_OVERHEAD) or record),
    )
    sessions.deliver_round([2, 1, 2], messages=5, payload_bytes=83)
    assert sizes == [17, 17, 17, 16, 16] and sum(sizes) == 83
    assert sessions.records_opened == 5 and sessions.aead_failures == 0
    assert sessions.handshakes["x25519-mlkem768"] == 2


def test_telemetry_claiming_impossible_deliveries_gets_bad_field_and_the_run_goes_on(small_spec):
    telemetry = {
        "round": 0, "messages_sent": 2, "messages_delivered": 2, "messages_lost": 0, "queue_drops": 0,
        "in_flight": 0, "payload_bytes_delivered": 90, "latency_s": [0.01, 0.02],
        "session_device": [4], "session_energy_j": [0.001], "record": [], "record_gateway": [], "frames": 4,
        "mac_drops": 0, "retransmissions": 0,
    }  # fmt: skip
    orchestrator = Orchestrator(small_spec(rounds=2))
    orchestrator.handle(protocol.HELLO, {"version": 1, "peer": "t", "devices": 20, "gateways": 2})
    kind, _ = orchestrator.handle(protocol.KEY_REQUEST, {"round": 0, "device": [], "gateway": [], "time": []})
    assert kind == protocol.KEY_GRANT
    kind, body = orchestrator.handle(protocol.TELEMETRY, telemetry)
    assert kind == protocol.ERROR and body["code"] == protocol.E_FIELD  # deliveries without any session
    kind, _ = orchestrator.handle(
        protocol.TELEMETRY,
        {**telemetry, "messages_delivered": 0, "payload_bytes_delivered": 0, "latency_s": [],
         "session_device": [], "session_energy_j": []},  # device 4 holds no session
    )  # fmt: skip
    assert kind == protocol.VERDICT
    kind, _ = orchestrator.handle(
        protocol.KEY_REQUEST, {"round": 1, "device": [4], "gateway": [0], "time": [0.6]}
    )
    assert kind == protocol.KEY_GRANT
    round_1 = {**telemetry, "round": 1, "payload_bytes_delivered": 2 * MAX_MESSAGE_BYTES + 1}
    kind, body = orchestrator.handle(protocol.TELEMETRY, round_1)
    assert kind == protocol.ERROR and body["code"] == protocol.E_FIELD
    assert orchestrator.session_crypto.records_sealed == 0
    kind, _ = orchestrator.handle(protocol.TELEMETRY, {**round_1, "payload_bytes_delivered": 90})
    assert kind == protocol.VERDICT
    sessions = orchestrator.session_crypto
    assert (sessions.records_sealed, sessions.records_opened, sessions.aead_failures) == (2, 2, 0)
    assert sum(sessions.handshakes.values()) == 1
