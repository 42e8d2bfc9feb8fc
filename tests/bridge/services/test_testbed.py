"""The MQTT testbed: a real Mosquitto broker with a TLS-PSK listener keyed from the ETSI GS QKD 014 KME,
paho-mqtt clients over TLS 1.2 PSK (sslpsk3), rekeying by psk_file + SIGHUP. Every process a test starts is
stopped by pid in a finally/fixture; tests needing mosquitto or the Python clients skip when absent."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bridge.cli import main
from bridge.services import kme_certs
from bridge.services.kme import KmeConfig, KmeServer
from bridge.services.testbed import (
    BROKER_SAE,
    CSVR_COLUMNS,
    KeySupplyError,
    KmeKeyClient,
    MosquittoBroker,
    MqttPskClient,
    PskRefused,
    TestbedConfig,
    missing_requirements,
    run_testbed,
)
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


@pytest.mark.testbed
@needs_testbed
def test_eavesdropped_link_gives_no_key_and_no_broker(tmp_path):
    config = TestbedConfig.from_mapping(
        {"devices": 1, "messages_per_device": 1, "rekeys": 0, "channel": "eavesdropped"}
    )
    with pytest.raises(KeySupplyError, match="503"):
        run_testbed(config, workdir=tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.testbed
@needs_testbed
def test_cli_run_writes_csvr_rows(tmp_path, capsys):
    scenario = tmp_path / "tb.yaml"
    scenario.write_text("testbed:\n  devices: 1\n  messages_per_device: 5\n  rekeys: 0\n")
    out = tmp_path / "out" / "tb.csv"
    assert main(["testbed", "run", str(scenario), "--out", str(out)]) == 0
    assert "network/messages_delivered: 5" in capsys.readouterr().out
    table = pd.read_csv(out)
    assert list(table.columns) == CSVR_COLUMNS
    delivered = table[(table["type"] == "scalar") & (table["name"] == "messages_delivered")]["value"]
    assert delivered.tolist() == [5.0]
    assert not mosquitto_children()
