"""The MQTT testbed: a real Mosquitto broker with a TLS-PSK listener keyed from the ETSI GS QKD 014 KME and a
classical TLS 1.3 certificate listener, paho-mqtt clients over TLS 1.2 PSK (sslpsk3), rekeying by psk_file +
SIGHUP, Q-IDS-driven fallback. Every process a test starts is stopped by pid in a finally/fixture; tests
needing mosquitto or the Python clients skip when absent."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bridge.cli import main
from bridge.services import kme_certs
from bridge.services.coap import missing_coap
from bridge.services.kme import KmeConfig, KmeServer
from bridge.services.testbed import (
    BROKER_SAE,
    CSVR_COLUMNS,
    HandshakeRefused,
    KmeKeyClient,
    MosquittoBroker,
    MqttPskClient,
    PskRefused,
    TestbedConfig,
    missing_requirements,
    run_testbed,
)
from bridge.store import ResultStore
from qesif_core.errors import UserInputError

MISSING = missing_requirements()
needs_testbed = pytest.mark.skipif(bool(MISSING), reason=f"testbed needs: {', '.join(MISSING)}")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def mosquitto_children() -> list[int]:
    """Pids of mosquitto processes (zombies included) whose parent is this test process."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        if name == "mosquitto" and parent == os.getpid():
            found.append(int(entry))
    return found


def test_config_rejects_unknown_and_bad_fields():
    with pytest.raises(UserInputError, match="unknown field"):
        TestbedConfig.from_mapping({"devcies": 2})
    with pytest.raises(UserInputError, match="devices"):
        TestbedConfig.from_mapping({"devices": 0})
    with pytest.raises(UserInputError, match="rekeys"):
        TestbedConfig.from_mapping({"messages_per_device": 2, "rekeys": 2})
    with pytest.raises(UserInputError, match="publish_interval_s"):
        TestbedConfig.from_mapping({"publish_interval_s": -1})
    assert TestbedConfig.from_mapping({"devices": 2, "rekeys": 0}).device_saes == ["SAE-dev0", "SAE-dev1"]


def test_config_checks_eavesdrop_and_qids_fields():
    base = {"devices": 2, "messages_per_device": 10, "rekeys": 3}
    for bad, field in (
        ({"start_epoch": 2, "end_epoch": 2}, "start_epoch"),
        ({"start_epoch": 0, "end_epoch": 5}, "end_epoch"),  # 4 epochs
        ({"start_epoch": 0, "end_epoch": 1, "devices": [2]}, "devices"),
        ({"start_epoch": 0, "end_epoch": 1, "when": 3}, "when"),
        ({"start_epoch": 0, "end_epoch": 1, "coap_devices": [0]}, "coap_devices"),  # no CoAP device
    ):
        with pytest.raises(UserInputError, match=field):
            TestbedConfig.from_mapping({**base, "eavesdrop": bad})
    with pytest.raises(UserInputError, match="qids"):
        TestbedConfig.from_mapping({**base, "qids": {"key_drop_widow": 2}})
    with pytest.raises(UserInputError, match="key_drop_window"):
        TestbedConfig.from_mapping({**base, "qids": {"key_drop_window": 0}})
    with pytest.raises(UserInputError, match="channel"):
        TestbedConfig.from_mapping({**base, "channel": "foggy"})
    config = TestbedConfig.from_mapping(
        {
            **base,
            "eavesdrop": {"start_epoch": 1, "end_epoch": 3, "devices": [1]},
            "qids": {"key_drop_window": 2},
        }
    )
    assert [config.eavesdrop.attacks(1, epoch) for epoch in range(4)] == [False, True, True, False]
    assert not config.eavesdrop.attacks(0, 1)
    assert config.qids_params().key_drop_window == 2


def test_missing_mosquitto_is_named_and_cli_exits_2(tmp_path, monkeypatch, capsys):
    from bridge.services import testbed

    monkeypatch.setattr(testbed.shutil, "which", lambda _name: None)
    monkeypatch.setattr(testbed, "MOSQUITTO_SBIN", tmp_path / "no-mosquitto")
    assert any("mosquitto" in item for item in missing_requirements())
    with pytest.raises(testbed.TestbedUnavailable, match="mosquitto"):
        run_testbed(TestbedConfig(), workdir=tmp_path)
    scenario = tmp_path / "tb.yaml"
    scenario.write_text("testbed: {devices: 1}\n")
    assert main(["testbed", "run", str(scenario)]) == 2
    assert "mosquitto" in capsys.readouterr().err


def test_cli_bad_scenario_field_exits_2(tmp_path, capsys):
    scenario = tmp_path / "tb.yaml"
    scenario.write_text("testbed:\n  devices: many\n")
    assert main(["testbed", "run", str(scenario)]) == 2
    assert "devices" in capsys.readouterr().err


@pytest.fixture
def kme_and_keys(tmp_path):
    """A KME with pairs broker->dev0 and broker->dev1, and the SAE clients of all three."""
    certs = kme_certs.generate(tmp_path / "certs", [BROKER_SAE, "SAE-dev0", "SAE-dev1"])
    config = KmeConfig.from_mapping(
        {
            "certs": str(certs.root),
            "pairs": [
                {"master": BROKER_SAE, "slave": "SAE-dev0"},
                {"master": BROKER_SAE, "slave": "SAE-dev1"},
            ],
            "port": 0,
            "block_interval_s": 3600.0,
            "initial_blocks": 1,
        },
        "test",
    )
    with KmeServer(config) as kme:
        saes = {sae: KmeKeyClient(certs, sae, kme.address) for sae in (BROKER_SAE, "SAE-dev0", "SAE-dev1")}
        yield saes


def fetch(saes, slave):
    key_id, broker_key = saes[BROKER_SAE].enc_key(slave)
    return broker_key, saes[slave].dec_key(BROKER_SAE, key_id)


def connect_or_refused(client: MqttPskClient, key: bytes) -> bool:
    try:
        client.connect(key, timeout_s=5.0)
    except PskRefused:
        return False
    client.disconnect()
    return True


@pytest.mark.testbed
@needs_testbed
def test_broker_refuses_wrong_and_revoked_keys(tmp_path, kme_and_keys, rng):
    broker_key, device_key = fetch(kme_and_keys, "SAE-dev0")
    assert broker_key == device_key and len(device_key) == 32
    other_key = fetch(kme_and_keys, "SAE-dev1")[1]
    broker = MosquittoBroker(tmp_path, {"SAE-dev0": broker_key, "SAE-dev1": other_key})
    try:
        broker.start()
        assert broker.psk_file.stat().st_mode & 0o777 == 0o600
        client = MqttPskClient("SAE-dev0", broker.port)
        assert connect_or_refused(client, device_key)
        assert not connect_or_refused(client, rng.bytes(32)), "a random key was accepted"
        assert not connect_or_refused(client, other_key), "another device's key was accepted"

        new_broker_key, new_device_key = fetch(kme_and_keys, "SAE-dev0")
        broker.write_psks({"SAE-dev0": new_broker_key, "SAE-dev1": other_key})
        broker.reload()
        deadline = time.monotonic() + 10.0
        while not connect_or_refused(client, new_device_key):
            assert time.monotonic() < deadline, "the new key was not accepted after SIGHUP"
            time.sleep(0.02)
        assert not connect_or_refused(client, device_key), "the revoked key was still accepted"
        pid = broker.pid
    finally:
        broker.stop()
    assert not process_alive(pid)
    log = broker.log_file.read_text()
    for key in (device_key, new_device_key):
        assert key.hex() not in log


@pytest.mark.testbed
@needs_testbed
def test_run_delivers_every_qos1_message_across_rekeys(tmp_path):
    config = TestbedConfig.from_mapping({"devices": 2, "messages_per_device": 30, "rekeys": 2, "seed": 3})
    table = run_testbed(config, workdir=tmp_path)
    assert list(table.columns) == CSVR_COLUMNS
    values = {f"{r.module}/{r.name}": r.value for r in table[table["type"] == "scalar"].itertuples()}
    assert values["network/messages_sent"] == 60
    assert values["network/messages_delivered"] == 60
    assert values["network/messages_lost"] == 0
    assert values["testbed/rekeys"] == 2
    assert values["testbed/handshakes"] == 3 * 3  # two devices and the control centre, three key epochs
    assert values["keys/keys_used"] == 3 * 3
    assert 0 < values["network/latency_median_ms"] <= values["network/latency_p95_ms"]
    assert np.isfinite(values["testbed/rekey_median_ms"]) and values["testbed/rekey_median_ms"] > 0
    assert values["network/messages_per_s"] > 0
    attrs = dict(zip(table["attrname"], table["attrvalue"], strict=False))
    assert attrs["backend"] == "testbed" and attrs["synthetic"] == "true"
    assert not list(tmp_path.iterdir()), "the run left its working folder behind"
    leftover = mosquitto_children()
    assert not leftover, f"mosquitto left running: {leftover}"


def scalars(table: pd.DataFrame) -> dict[str, float]:
    return {f"{r.module}/{r.name}": r.value for r in table[table["type"] == "scalar"].itertuples()}


@pytest.mark.testbed
@needs_testbed
def test_classical_listener_is_tls13_with_certificates_only(tmp_path, rng):
    certs = kme_certs.generate(tmp_path / "certs", ["SAE-dev0"])
    stranger = kme_certs.generate(tmp_path / "other-ca", ["SAE-dev0"])  # same name, another CA
    key = rng.bytes(32)
    broker = MosquittoBroker(tmp_path, {"SAE-dev0": key}, certs=certs)
    try:
        broker.start()
        client = MqttPskClient("SAE-dev0", broker.port, classical_port=broker.classical_port)
        assert client.connect_classical(certs, timeout_s=5.0) > 0
        assert client.tls_socket.version() == "TLSv1.3"
        client.disconnect()
        with pytest.raises(HandshakeRefused):
            client.connect_classical(stranger, timeout_s=5.0)
        wrong_port = MqttPskClient("SAE-dev0", broker.classical_port)
        assert not connect_or_refused(wrong_port, key), "the certificate listener accepted a PSK"
        assert connect_or_refused(client, key)
    finally:
        broker.stop()
    assert not mosquitto_children()


@pytest.mark.testbed
@needs_testbed
def test_eavesdropped_interval_moves_device_to_classical_and_back_without_loss(tmp_path):
    config = TestbedConfig.from_mapping(
        {
            "devices": 2,
            "messages_per_device": 80,
            "rekeys": 7,
            "seed": 3,
            "pulses_per_block": 10**6,
            "eavesdrop": {"start_epoch": 2, "end_epoch": 4, "devices": [1]},
            "qids": {"key_drop_window": 2},
        }
    )
    values = scalars(run_testbed(config, workdir=tmp_path))
    assert values["network/messages_sent"] == 160
    assert values["network/messages_delivered"] == 160, "a QoS 1 message was lost"
    assert values["network/messages_lost"] == 0
    assert values["ids/quantum_detection_rate"] == 1.0  # both attacked blocks flagged
    # one device moves away and back (the control centre and device 0 stay on QKD keys)
    assert values["hybrid/mode_switches"] == 2
    assert values["hybrid/classical_sessions"] == 1
    # device 1 spends the two attacked epochs, and at most the Q-IDS window after them, in classical mode
    assert values["hybrid/messages_classical"] in (20, 30, 40)
    assert values["hybrid/delivered_classical"] == values["hybrid/messages_classical"]
    assert values["hybrid/messages_quantum"] + values["hybrid/messages_classical"] == 160
    # a QKD key per quantum session; none while classical
    assert values["keys/keys_used"] == values["hybrid/quantum_sessions"] == values["testbed/handshakes"]
    assert values["keys/keys_used"] < 3 * 8
    assert values["network/duplicates"] <= values["testbed/republished"]
    assert not list(tmp_path.iterdir())
    assert not mosquitto_children()


@pytest.mark.testbed
@needs_testbed
def test_eavesdropped_channel_runs_classical_without_keys(tmp_path):
    config = TestbedConfig.from_mapping(
        {
            "devices": 1,
            "messages_per_device": 6,
            "rekeys": 1,
            "channel": "eavesdropped",
            "pulses_per_block": 10**6,
        }
    )
    values = scalars(run_testbed(config, workdir=tmp_path))
    assert values["network/messages_delivered"] == 6
    assert values["hybrid/messages_classical"] == 6
    assert values["keys/keys_used"] == 0 and values["testbed/handshakes"] == 0
    assert values["ids/quantum_detection_rate"] == 1.0
    assert not mosquitto_children()


@pytest.mark.testbed
@needs_testbed
def test_short_key_supply_falls_back_to_classical(tmp_path):
    # 10^5 pulses leave no secret bits: the KME answers 503, the link is not flagged (calibrated alike)
    config = TestbedConfig.from_mapping(
        {"devices": 1, "messages_per_device": 4, "rekeys": 1, "pulses_per_block": 10**5}
    )
    values = scalars(run_testbed(config, workdir=tmp_path))
    assert values["network/messages_delivered"] == 4
    assert values["hybrid/supply_fallbacks"] == 4  # device and control centre ask in both epochs
    assert values["hybrid/messages_classical"] == 4 and values["keys/keys_used"] == 0
    assert not mosquitto_children()


@pytest.mark.testbed
@needs_testbed
def test_cli_run_writes_csvr_rows(tmp_path, capsys):
    scenario = tmp_path / "tb.yaml"
    scenario.write_text("testbed:\n  devices: 1\n  messages_per_device: 5\n  rekeys: 0\n")
    out = tmp_path / "out" / "tb.csv"
    store_dir = tmp_path / "results"
    assert main(["testbed", "run", str(scenario), "--out", str(out), "--store", str(store_dir)]) == 0
    assert "network/messages_delivered: 5" in capsys.readouterr().out
    table = pd.read_csv(out)
    assert list(table.columns) == CSVR_COLUMNS
    delivered = table[(table["type"] == "scalar") & (table["name"] == "messages_delivered")]["value"]
    assert delivered.tolist() == [5.0]
    latency = table[(table["type"] == "vector") & (table["name"] == "latency_ms")]
    assert latency["vectime"].tolist() == [1] and float(latency["vecvalue"].iloc[0]) > 0
    assert not mosquitto_children()

    store = ResultStore(store_dir)
    (key,) = store.finished_keys()
    assert key.startswith("testbed-1-") and store.manifest_keys() == [key]
    stored = store.load()
    attrs = dict(zip(stored["attrname"], stored["attrvalue"], strict=False))
    assert attrs["backend"] == "testbed" and set(stored["run"]) == {key}
    assert store.spec(key)["testbed"]["devices"] == 1
    assert main(["results", "export", str(store_dir)]) == 0
    exported = pd.read_csv(store_dir / "results.csv")
    assert (exported[exported["name"] == "messages_delivered"]["value"] == 5.0).all()


@pytest.mark.testbed
@needs_testbed
@pytest.mark.skipif(bool(missing_coap()), reason=f"CoAP testbed needs: {', '.join(missing_coap())}")
def test_coap_devices_rekey_per_epoch_and_go_classical_while_flagged(tmp_path):
    config = TestbedConfig.from_mapping(
        {
            "devices": 1,
            "coap_devices": 2,
            "messages_per_device": 24,
            "rekeys": 5,
            "seed": 4,
            "pulses_per_block": 10**6,
            "eavesdrop": {"start_epoch": 1, "end_epoch": 3, "devices": [0], "coap_devices": [1]},
            "qids": {"key_drop_window": 2},
        }
    )
    values = scalars(run_testbed(config, workdir=tmp_path))
    assert values["coap/messages_sent"] == 48
    assert values["coap/messages_delivered"] == 48 and values["coap/messages_lost"] == 0
    assert values["coap/refusals"] == 0 and values["coap/failures"] == 0
    # CoAP device 1 is classical (one EDHOC session) in the attacked epochs, at most one epoch more
    classical_epochs = values["coap/messages_classical"] / 4
    assert classical_epochs in (2, 3) and values["coap/edhoc_sessions"] == 1
    assert values["coap/mode_switches"] == 2
    assert values["coap/keys_used"] == 2 * 6 - classical_epochs
    assert values["keys/keys_used"] == values["testbed/handshakes"] + values["coap/keys_used"]
    assert values["network/messages_lost"] == 0
    assert not mosquitto_children()
    assert not [t for t in threading.enumerate() if t.name == "coap-loop"]
