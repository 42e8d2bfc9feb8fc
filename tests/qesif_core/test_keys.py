"""Key pools: ETSI GS QKD 014 shapes, one-time delivery in long runs, expiry, U_K (Eq. 6), and that key
bytes never reach logs, reprs, results or error messages."""

from __future__ import annotations

import base64
import logging
import uuid

import numpy as np
import pytest

from qesif_core import crypto
from qesif_core.keys import (
    DeferredBits,
    DeviceKeyService,
    KeyDeliveryError,
    KeyPool,
    RekeyPolicy,
    decode_key,
)

ETSI_STATUS_FIELDS = {
    "source_KME_ID",
    "target_KME_ID",
    "master_SAE_ID",
    "slave_SAE_ID",
    "key_size",
    "stored_key_count",
    "max_key_count",
    "max_key_per_request",
    "max_key_size",
    "min_key_size",
    "max_SAE_ID_count",
}


def make_pool(rng: np.random.Generator, **kwargs) -> KeyPool:
    return KeyPool(
        link="gw0-cc",
        source_kme_id="KME-gw0",
        target_kme_id="KME-cc",
        master_sae_id="SAE-gw0",
        slave_sae_id="SAE-cc",
        rng=rng,
        **kwargs,
    )


def feed(pool: KeyPool, rng: np.random.Generator, n_bits: int, block: int, now: float) -> int:
    return pool.add_block(
        rng.integers(0, 2, n_bits, dtype=np.uint8), block=block, qber=0.01, epsilon=1e-10, now=now
    )


def test_status_has_exactly_the_etsi_fields(rng):
    pool = make_pool(rng)
    feed(pool, rng, 256 * 5 + 100, block=0, now=0.0)
    status = pool.status("SAE-cc", caller="SAE-gw0")
    assert set(status) == ETSI_STATUS_FIELDS
    assert status["stored_key_count"] == 5
    assert status["key_size"] == 256


def test_key_container_shape_and_both_ends_get_the_same_key(rng):
    pool = make_pool(rng)
    feed(pool, rng, 256 * 4, block=0, now=0.0)
    master = pool.enc_keys("SAE-cc", caller="SAE-gw0", now=1.0, number=3)
    assert set(master) == {"keys"} and len(master["keys"]) == 3
    for entry in master["keys"]:
        assert set(entry) == {"key_ID", "key"}
        assert uuid.UUID(entry["key_ID"]).version == 4
        assert len(base64.b64decode(entry["key"], validate=True)) == 32
    ids = [e["key_ID"] for e in master["keys"]]
    slave = pool.dec_keys("SAE-gw0", ids, caller="SAE-cc", now=1.0)
    assert [decode_key(e) for e in slave["keys"]] == [decode_key(e) for e in master["keys"]]


def test_leftover_bits_carry_over_with_the_worse_provenance(rng):
    pool = make_pool(rng, key_size=256)
    assert pool.add_block(np.ones(200, dtype=np.uint8), block=0, qber=0.02, epsilon=1e-9, now=0.0) == 0
    assert pool.add_block(np.zeros(100, dtype=np.uint8), block=1, qber=0.01, epsilon=1e-10, now=1.0) == 1
    key = next(iter(pool._available.values()))
    assert key.key == bytes([0xFF] * 25) + bytes(7)
    assert key.provenance.epsilon == 1e-9 and key.provenance.qber == 0.02


def test_no_key_id_is_delivered_twice_in_a_long_run(rng):
    pool = make_pool(rng, key_size=128, max_key_count=400, key_lifetime_s=20.0)
    to_master: list[str] = []
    to_slave: list[str] = []
    outstanding: list[str] = []
    now = 0.0
    for block in range(3000):
        now += 1.0
        feed(pool, rng, int(rng.integers(0, 700)), block=block, now=now)
        if pool.stored_key_count and rng.random() < 0.4:
            number = int(rng.integers(1, min(pool.stored_key_count, pool.max_key_per_request) + 1))
            got = pool.enc_keys("SAE-cc", caller="SAE-gw0", now=now, number=number)
            ids = [e["key_ID"] for e in got["keys"]]
            to_master += ids
            outstanding += ids
        if outstanding and rng.random() < 0.5:
            take = outstanding[: int(rng.integers(1, min(len(outstanding), 16) + 1))]
            try:
                pool.dec_keys("SAE-gw0", take, caller="SAE-cc", now=now)
                to_slave += take
            except KeyDeliveryError as exc:  # some expired while waiting: nothing is delivered then
                assert exc.status == 400 and set(exc.details) <= set(take)
            del outstanding[: len(take)]
        if to_slave and rng.random() < 0.05:  # replaying a delivered key_ID must fail
            with pytest.raises(KeyDeliveryError) as info:
                pool.dec_keys(
                    "SAE-gw0", [to_slave[int(rng.integers(len(to_slave)))]], caller="SAE-cc", now=now
                )
            assert info.value.status == 400
    assert len(to_master) > 2000 and len(to_slave) > 500
    assert len(set(to_master)) == len(to_master)
    assert len(set(to_slave)) == len(to_slave)
    assert pool.keys_delivered == len(to_slave)
    assert pool.keys_expired > 0  # the run exercised expiry too


def test_requests_are_checked(rng):
    pool = make_pool(rng)
    feed(pool, rng, 256 * 2, block=0, now=0.0)
    with pytest.raises(KeyDeliveryError) as info:
        pool.enc_keys("SAE-cc", caller="SAE-intruder", now=0.0)
    assert info.value.status == 401
    with pytest.raises(KeyDeliveryError) as info:
        pool.enc_keys("SAE-cc", caller="SAE-gw0", now=0.0, number=3)
    assert info.value.status == 503
    with pytest.raises(KeyDeliveryError) as info:
        pool.enc_keys("SAE-cc", caller="SAE-gw0", now=0.0, size=512)
    assert info.value.status == 400
    with pytest.raises(KeyDeliveryError):
        pool.dec_keys("SAE-gw0", ["not-a-key"], caller="SAE-cc", now=0.0)
    assert pool.stored_key_count == 2  # refused requests consume nothing


def test_expiry_erases_keys(rng):
    pool = make_pool(rng, key_lifetime_s=10.0)
    feed(pool, rng, 256 * 3, block=0, now=0.0)
    assert pool.status("SAE-cc", caller="SAE-gw0", now=9.9)["stored_key_count"] == 3
    assert pool.status("SAE-cc", caller="SAE-gw0", now=10.0)["stored_key_count"] == 0
    assert pool.keys_expired == 3


def test_expires_at_follows_a_key_until_the_slave_has_it(rng):
    pool = make_pool(rng, key_lifetime_s=10.0)
    feed(pool, rng, 256 * 2, block=0, now=5.0)
    key_id = pool.enc_keys("SAE-cc", caller="SAE-gw0", now=6.0)["keys"][0]["key_ID"]
    assert pool.expires_at(key_id) == 15.0  # owed to the slave, still held
    pool.dec_keys("SAE-gw0", [key_id], caller="SAE-cc", now=14.9)
    with pytest.raises(KeyError, match="holds no key_ID"):
        pool.expires_at(key_id)  # delivered to both ends: erased


def test_utilisation_eq6_counts_keys_generated_in_the_window(rng):
    pool = make_pool(rng, key_size=64, max_key_count=100, utilisation_window_s=10.0)
    for t in range(20):
        feed(pool, rng, 64 * 3, block=t, now=float(t))
    assert pool.utilisation(19.0) == pytest.approx(30 / 100)  # blocks at t = 10..19
    assert pool.utilisation(100.0) == 0.0


def test_full_store_drops_new_keys(rng):
    pool = make_pool(rng, key_size=64, max_key_count=5)
    feed(pool, rng, 64 * 8, block=0, now=0.0)
    assert pool.stored_key_count == 5 and pool.keys_dropped_full == 3


def test_rekey_policy():
    policy = RekeyPolicy(max_records=10, max_bytes=1000, max_age_s=60.0)
    assert not policy.needs_rekey(records=9, payload_bytes=999, age_s=59.0, link_flagged=False)
    assert policy.needs_rekey(records=10, payload_bytes=0, age_s=0.0, link_flagged=False)
    assert policy.needs_rekey(records=0, payload_bytes=1000, age_s=0.0, link_flagged=False)
    assert policy.needs_rekey(records=0, payload_bytes=0, age_s=60.0, link_flagged=False)
    assert policy.needs_rekey(records=0, payload_bytes=0, age_s=0.0, link_flagged=True)


def test_device_service_consumes_one_key_per_session(rng):
    pool = make_pool(rng)
    feed(pool, rng, 256 * 3, block=0, now=0.0)
    service = DeviceKeyService(pool, rng)
    key_id, handshake = service.session_key_for("dev-7", now=1.0)
    assert pool.stored_key_count == 2 and pool.keys_delivered == 1
    assert len(handshake.session_key) == 16
    channel = crypto.AeadChannel(handshake.responder_key)
    assert (
        crypto.AeadChannel(handshake.initiator_key).open(channel.seal(b"reading=21.5C")) == b"reading=21.5C"
    )
    with pytest.raises(KeyDeliveryError):
        pool.dec_keys("SAE-gw0", [key_id], caller="SAE-cc", now=1.0)


def _forms(secret: bytes) -> list[str]:
    """Every textual form a key might leak in: hex (both cases), base64, urlsafe base64, bytes repr."""
    forms = [secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode(), repr(secret)[2:-1]]
    forms.append(base64.urlsafe_b64encode(secret).decode())
    return forms


def test_key_bytes_never_reach_logs_reprs_results_or_errors(rng, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    pool = make_pool(rng, key_size=256, key_lifetime_s=5.0)
    service = DeviceKeyService(pool, rng)
    secrets: list[bytes] = []
    texts: list[str] = []
    results: list[dict] = []
    for block in range(40):
        now = float(block)
        feed(pool, rng, 600, block=block, now=now)
        secrets += [k.key for k in pool._available.values()]
        texts += [repr(pool), repr(service), repr(list(pool._available.values()))]
        key_id, handshake = service.session_key_for(f"dev-{block % 7}", now=now)
        secrets += [handshake.session_key]
        channel = crypto.AeadChannel(handshake.responder_key)
        texts += [repr(handshake), repr(channel)]
        results.append(
            {"key_ID": key_id, "kind": handshake.kind, "bytes": handshake.bytes_responder_to_initiator}
        )
        errors = []
        try:
            pool.dec_keys("SAE-gw0", [key_id], caller="SAE-cc", now=now)
        except KeyDeliveryError as exc:
            errors.append(exc)
        try:
            crypto.AeadChannel(rng.bytes(16)).open(channel.seal(b"payload"))
        except ValueError as exc:
            errors.append(exc)
        try:
            pool.enc_keys("SAE-cc", caller="SAE-gw0", now=now, number=16)
        except KeyDeliveryError as exc:
            errors.append(exc)
        for exc in errors:
            texts += [str(exc), repr(exc), repr(getattr(exc, "details", ""))]
            if isinstance(exc, KeyDeliveryError):
                texts.append(repr(exc.as_error_object()))
        print(pool.status("SAE-cc", caller="SAE-gw0", now=now), results[-1])
        logging.getLogger("qesif_core").info("session %s", results[-1])
    captured = capsys.readouterr()
    texts += [captured.out, captured.err, caplog.text, repr(results)]
    assert any("enc_keys" in r.getMessage() for r in caplog.records)  # the pool does log deliveries
    everything = "\n".join(texts)
    assert len(secrets) > 80
    for secret in secrets:
        for form in _forms(secret):
            assert form not in everything


def _one_draw_per_key(rng: np.random.Generator, n: int) -> list[str]:
    """key_IDs as drawn one ``rng.bytes(16)`` per key (how a pool named its keys before batching)."""
    return [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)]


def test_deferred_bits_give_the_same_keys_and_ids_and_are_derived_only_when_delivered():
    blocks = [
        np.random.default_rng(i).integers(0, 2, size=n, dtype=np.uint8) for i, n in enumerate((600, 300, 900))
    ]
    loads: list[int] = []

    def deferred(index: int) -> DeferredBits:
        return DeferredBits(blocks[index].size, lambda: loads.append(index) or blocks[index])

    eager, lazy = make_pool(np.random.default_rng(3)), make_pool(np.random.default_rng(3))
    for index in range(3):
        eager.add_block(blocks[index], block=index, qber=0.01, epsilon=1e-10, now=float(index))
        lazy.add_block(
            blocks[index] if index == 1 else deferred(index),
            block=index,
            qber=0.01,
            epsilon=1e-10,
            now=float(index),
        )
    assert lazy.stored_key_count == eager.stored_key_count == 1800 // 256
    assert loads == []  # nothing derived before a key is delivered
    first = lazy.enc_keys("SAE-cc", caller="SAE-gw0", now=3.0, number=2)  # both cut from block 0 only
    assert loads == [0]
    rest = lazy.enc_keys("SAE-cc", caller="SAE-gw0", now=3.0, number=5)  # one straddles blocks 0-1-2
    assert loads == [0, 2]
    expected = eager.enc_keys("SAE-cc", caller="SAE-gw0", now=3.0, number=7)["keys"]
    assert first["keys"] + rest["keys"] == expected


def test_deferred_bits_that_come_back_different_are_refused():
    pool = make_pool(np.random.default_rng(1))
    pool.add_block(
        DeferredBits(512, lambda: np.zeros(500, dtype=np.uint8)), block=0, qber=0.0, epsilon=0.0, now=0.0
    )
    with pytest.raises(RuntimeError, match="500 bits, not 512"):
        pool.enc_keys("SAE-cc", caller="SAE-gw0", now=0.0, number=1)


def test_key_ids_are_the_draws_of_one_uuid_per_key():
    pool = make_pool(np.random.default_rng(11), key_size=64)
    bits = np.random.default_rng(3).integers(0, 2, 64 * 5 + 17, dtype=np.uint8)
    assert pool.add_block(bits, block=0, qber=0.01, epsilon=0.0, now=0.0) == 5
    pool.add_block(bits[:111], block=1, qber=0.01, epsilon=0.0, now=0.0)  # 17 + 111 bits: 2 keys
    reference = np.random.default_rng(11)
    assert list(pool._available) == _one_draw_per_key(reference, 7)
    assert pool._rng.bytes(16) == reference.bytes(16)  # and nothing more was drawn


def test_a_colliding_key_id_is_redrawn_from_the_same_stream():
    expected = _one_draw_per_key(np.random.default_rng(12), 4)
    pool = make_pool(np.random.default_rng(12), key_size=64)
    pool._issued_ids.add(expected[0])  # the first draw collides: the next draws name the three keys
    pool.add_block(np.ones(64 * 3, dtype=np.uint8), block=0, qber=0.0, epsilon=0.0, now=0.0)
    assert list(pool._available) == expected[1:]
    reference = np.random.default_rng(12)
    reference.bytes(16 * 4)
    assert pool._rng.bytes(16) == reference.bytes(16)
