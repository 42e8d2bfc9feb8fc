"""CoAP devices protected by OSCORE with QKD keys: a real aiocoap server on 127.0.0.1 (UDP) and devices
posting confirmable requests; wrong, revoked and missing keys are refused. Skips without aiocoap[oscore]."""

from __future__ import annotations

import logging
import threading
import uuid

import pytest

from bridge.services import kme_certs
from bridge.services.coap import CoapTestbed, device_id, missing_coap, oscore_context
from bridge.services.kme import KmeConfig, KmeServer
from bridge.services.testbed import KmeKeyClient

MISSING = missing_coap()
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"CoAP testbed needs: {', '.join(MISSING)}")

CC, DEVICES = "SAE-cc", ["SAE-coap0", "SAE-coap1"]


@pytest.fixture
def kme_keys(tmp_path):
    """A function giving (key_ID, control centre's key, device's key) from a live KME over mutual TLS."""
    certs = kme_certs.generate(tmp_path / "certs", [CC, *DEVICES])
    config = KmeConfig.from_mapping(
        {
            "certs": str(certs.root),
            "pairs": [{"master": CC, "slave": sae} for sae in DEVICES],
            "port": 0,
            "block_interval_s": 3600.0,
            "initial_blocks": 1,
        },
        "test",
    )
    with KmeServer(config) as kme:
        master = KmeKeyClient(certs, CC, kme.address)
        slaves = {sae: KmeKeyClient(certs, sae, kme.address) for sae in DEVICES}

        def fetch(sae: str) -> tuple[str, bytes, bytes]:
            key_id, server_key = master.enc_key(sae)
            return key_id, server_key, slaves[sae].dec_key(CC, key_id)

        yield fetch


def coap_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "coap-loop"]


@pytest.mark.testbed
def test_oscore_posts_with_kme_keys_and_refuses_wrong_revoked_and_plain(kme_keys, rng):
    testbed = CoapTestbed(DEVICES, timeout_s=5.0)
    with testbed:
        first = {sae: kme_keys(sae) for sae in DEVICES}
        assert all(server == device and len(server) == 32 for _id, server, device in first.values())
        testbed.set_keys(first)
        codes = testbed.post_all({sae: [(seq, 64 + 100 * seq) for seq in range(5)] for sae in DEVICES})
        assert codes == {sae: ["2.04 Changed"] * 5 for sae in DEVICES}
        assert sorted(testbed.latency_ns) == [(sae, seq) for sae in DEVICES for seq in range(5)]

        key_id, _server, _device = first["SAE-coap0"]
        testbed.set_device_key(0, key_id, rng.bytes(32))  # the current ID context with a wrong key
        assert testbed.post("SAE-coap0", 5, 32) == "4.00 Bad Request"
        testbed.set_device_key(0, *first["SAE-coap1"][::2])  # another device's key
        assert testbed.post("SAE-coap0", 5, 32).startswith("4.0")

        testbed.set_keys({"SAE-coap0": kme_keys("SAE-coap0")})  # rekey: the first key is revoked
        testbed.set_device_key(0, key_id, first["SAE-coap0"][2])
        assert testbed.post("SAE-coap0", 5, 32) == "4.01 Unauthorized"

        testbed.drop_device_key(1)  # no OSCORE at all
        assert testbed.post("SAE-coap1", 5, 32) == "4.01 Unauthorized"
        assert testbed.refusals == 4 and testbed.failures == 0
        assert (("SAE-coap0", 5) not in testbed.latency_ns) and (("SAE-coap1", 5) not in testbed.latency_ns)
    assert not coap_threads()


def test_oscore_context_derivation_and_repr(rng):
    key, key_id = rng.bytes(32), str(uuid.UUID(bytes=rng.bytes(16)))
    context = oscore_context(key, key_id, b"d\x00\x01", b"cc")
    assert key.hex() not in repr(context) and context.sender_key.hex() not in repr(context)
    server = oscore_context(key, key_id, b"cc", b"d\x00\x01")
    assert server.recipient_key == context.sender_key and server.sender_key == context.recipient_key
    other_id = oscore_context(key, str(uuid.UUID(bytes=rng.bytes(16))), b"cc", b"d\x00\x01")
    assert other_id.recipient_key != context.sender_key  # the key_ID (ID context) enters the derivation


@pytest.mark.testbed
def test_key_bytes_never_reach_the_logs(caplog, rng):
    caplog.set_level(logging.DEBUG)
    key, key_id = rng.bytes(32), str(uuid.UUID(bytes=rng.bytes(16)))
    with CoapTestbed(DEVICES[:1], timeout_s=5.0) as testbed:
        testbed.set_keys({DEVICES[0]: (key_id, key, key)})
        assert testbed.post(DEVICES[0], 0, 64) == "2.04 Changed"
    context = oscore_context(key, key_id, b"cc", device_id(0))
    assert caplog.records, "aiocoap logged nothing at DEBUG: the check would be empty"
    for secret in (key, context.sender_key, context.recipient_key):
        assert secret.hex() not in caplog.text


@pytest.mark.testbed
def test_classical_mode_runs_edhoc_and_quantum_mode_withdraws_it(rng):
    key_id = str(uuid.UUID(bytes=rng.bytes(16)))
    key = rng.bytes(32)
    with CoapTestbed(DEVICES, timeout_s=5.0) as testbed:
        testbed.set_classical(0)
        assert [testbed.post(DEVICES[0], seq, 40) for seq in range(3)] == ["2.04 Changed"] * 3
        assert testbed.edhoc_sessions == 1
        assert sorted(testbed.latency_ns) == [(DEVICES[0], seq) for seq in range(3)]  # identified by EDHOC

        testbed.set_server_key(0, key_id, key)  # back to quantum on the server only
        assert testbed.post(DEVICES[0], 3, 40).startswith("4.")  # no EDHOC context, no permission for one
        testbed.set_device_key(0, key_id, key)
        assert testbed.post(DEVICES[0], 4, 40) == "2.04 Changed"

        testbed.set_classical(1)
        testbed.set_server_key(1, key_id, rng.bytes(32))  # permission withdrawn before the device's EDHOC
        assert testbed.post(DEVICES[1], 0, 40).startswith("4.")
        assert (DEVICES[1], 0) not in testbed.latency_ns and (DEVICES[0], 3) not in testbed.latency_ns
    assert not coap_threads()
