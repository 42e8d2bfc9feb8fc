"""Real key establishment: both sides agree, wire sizes are the documented ones, AES-GCM protects."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap

from qesif_core import crypto

PUBLIC_KEY_PATHS = {
    "x25519": crypto.x25519_handshake,
    "mlkem768": crypto.mlkem768_handshake,
    "x25519-mlkem768": crypto.hybrid_x25519_mlkem768_handshake,
}


@pytest.mark.parametrize("kind", sorted(PUBLIC_KEY_PATHS))
@pytest.mark.parametrize("key_bytes", [16, 32])
def test_public_key_handshakes_agree_and_have_the_documented_sizes(kind, key_bytes, rng):
    handshake = PUBLIC_KEY_PATHS[kind](key_bytes=key_bytes, rng=rng)
    assert handshake.kind == kind
    assert handshake.initiator_key == handshake.responder_key
    assert len(handshake.session_key) == key_bytes
    sizes = (handshake.bytes_initiator_to_responder, handshake.bytes_responder_to_initiator)
    assert sizes == crypto.handshake_wire_bytes(kind, key_bytes)


@pytest.mark.parametrize("key_bytes", [16, 32])
def test_qkd_psk_delivers_the_gateway_key_to_the_device(key_bytes, rng):
    qkd_key, kek = rng.bytes(32), rng.bytes(16)
    handshake = crypto.qkd_psk_handshake(
        qkd_key, key_id=rng.bytes(16), device_id="dev-1", device_kek=kek, key_bytes=key_bytes, rng=rng
    )
    assert handshake.initiator_key == handshake.responder_key and len(handshake.session_key) == key_bytes
    sizes = (handshake.bytes_initiator_to_responder, handshake.bytes_responder_to_initiator)
    assert sizes == crypto.handshake_wire_bytes("qkd-psk", key_bytes)
    assert handshake.session_key != qkd_key[:key_bytes]  # the QKD key itself never leaves the gateway


def test_session_keys_differ_per_device_and_per_salt(rng):
    qkd_key = rng.bytes(32)
    a = crypto.derive_device_session_key(qkd_key, device_id="a", salt=b"s" * 16)
    b = crypto.derive_device_session_key(qkd_key, device_id="b", salt=b"s" * 16)
    c = crypto.derive_device_session_key(qkd_key, device_id="a", salt=b"t" * 16)
    assert len({a, b, c}) == 3


def test_seeded_x25519_is_reproducible():
    one = crypto.x25519_handshake(rng=np.random.default_rng(5)).session_key
    two = crypto.x25519_handshake(rng=np.random.default_rng(5)).session_key
    three = crypto.x25519_handshake(rng=np.random.default_rng(6)).session_key
    assert one == two != three


def test_wrong_kek_cannot_unwrap(rng):
    wrapped = crypto.wrap_key(rng.bytes(16), rng.bytes(16))
    with pytest.raises(InvalidUnwrap):
        crypto.unwrap_key(wrapped, rng.bytes(16))


def test_aead_channel_encrypts_authenticates_and_never_reuses_nonces(rng):
    key = rng.bytes(16)
    sender, receiver = crypto.AeadChannel(key), crypto.AeadChannel(key)
    payload = b'{"temp": 21.5, "device": "dev-3"}'
    records = [sender.seal(payload, aad=b"topic/a") for _ in range(50)]
    assert all(len(r) == len(payload) + crypto.AEAD_RECORD_OVERHEAD for r in records)
    assert all(payload not in r for r in records)  # really encrypted
    assert len({r[: crypto.GCM_NONCE_BYTES] for r in records}) == 50
    assert len({r[crypto.GCM_NONCE_BYTES :] for r in records}) == 50
    assert receiver.open(records[7], aad=b"topic/a") == payload
    tampered = bytearray(records[3])
    tampered[-1] ^= 1
    with pytest.raises(ValueError, match="authentication failed"):
        receiver.open(bytes(tampered), aad=b"topic/a")
    with pytest.raises(ValueError, match="authentication failed"):
        receiver.open(records[3], aad=b"topic/b")


def test_unknown_handshake_kind_is_an_error():
    with pytest.raises(ValueError, match="unknown handshake"):
        crypto.handshake_wire_bytes("rsa-2048")


@pytest.mark.parametrize("handshake", ["qkd-psk", "x25519", "mlkem768", "x25519-mlkem768"])
@pytest.mark.parametrize("with_qkd_key", [True, False])
def test_establish_runs_what_a_plan_names(handshake, with_qkd_key, rng):
    if handshake == "qkd-psk" and not with_qkd_key:
        with pytest.raises(ValueError, match="needs qkd_key"):
            crypto.establish(handshake, rng=rng)
        return
    qkd = (
        {"qkd_key": rng.bytes(32), "key_id": rng.bytes(16), "device_kek": rng.bytes(16)}
        if with_qkd_key
        else {}
    )
    result = crypto.establish(handshake, key_bytes=32, device_id="dev-2", rng=rng, **qkd)
    assert result.initiator_key == result.responder_key and len(result.session_key) == 32
    sizes = crypto.handshake_wire_bytes(handshake, 32)
    if with_qkd_key and handshake != "qkd-psk":
        extra = crypto.handshake_wire_bytes("qkd-psk", 32)
        sizes = (sizes[0] + extra[0], sizes[1] + extra[1])
    assert (result.bytes_initiator_to_responder, result.bytes_responder_to_initiator) == sizes
    channel = crypto.AeadChannel(result.responder_key)
    assert crypto.AeadChannel(result.initiator_key).open(channel.seal(b"telemetry")) == b"telemetry"
