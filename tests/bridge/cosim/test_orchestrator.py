import json
import sys

import numpy as np
import pandas as pd
import pytest

from bridge.cosim import protocol
from bridge.cosim.orchestrator import Orchestrator, check_endpoint, run_once, serve_with_peer
from bridge.cosim.supervise import PeerProcess
from qesif_core.errors import UserInputError

REQUIRED_SCALARS = {
    "qkd/qber_mean", "qkd/secret_bits", "qkd/keys_accepted", "qkd/keys_discarded", "ids/adr", "ids/fpr",
    "ids/precision", "ids/f1", "network/latency_mean_ms", "network/latency_p95_ms", "network/goodput_kbps",
    "network/energy_per_session_mJ", "network/messages_sent", "network/messages_delivered",
    "hybrid/mode_switches", "hybrid/quantum_sessions", "hybrid/classical_sessions", "keys/keys_used",
    "keys/keys_discarded",
}  # fmt: skip
REQUIRED_VECTORS = {"qkd/qber", "ids/adr", "network/latency_ms", "network/goodput_kbps", "network/energy_mJ"}


def _scalars(table: pd.DataFrame) -> dict[str, float]:
    rows = table[table["type"] == "scalar"]
    return dict(zip(rows["module"] + "/" + rows["name"], rows["value"], strict=True))


def test_a_run_has_the_contract_rows(small_spec):
    spec = small_spec(rounds=3)
    table = run_once(spec)
    scalars = _scalars(table)
    assert REQUIRED_SCALARS <= set(scalars)
    vectors = table[table["type"] == "vector"]
    assert REQUIRED_VECTORS <= set(vectors["module"] + "/" + vectors["name"])
    assert all(len(v) == 3 for v in vectors["vecvalue"])
    attrs = dict(zip(table["attrname"], table["attrvalue"], strict=False))
    assert attrs["scheme"] == "QESIF" and attrs["backend"] == "builtin" and attrs["synthetic"] == "true"
    assert scalars["network/messages_sent"] >= scalars["network/messages_delivered"] > 0
    sessions = scalars["hybrid/quantum_sessions"] + scalars["hybrid/classical_sessions"]
    assert sessions > 0 and 0.0 < scalars["qkd/qber_mean"] < 0.05  # clean channel: about 1% measured


def test_in_process_and_bridged_runs_are_identical_for_three_seeds(small_spec):
    for seed in (1, 2, 3):
        spec = small_spec(seed=seed, rounds=2)
        inprocess, bridged = run_once(spec), run_once(spec, bridge="zmq")
        pd.testing.assert_frame_equal(inprocess, bridged)
    assert not run_once(small_spec(seed=1, rounds=2)).equals(run_once(small_spec(seed=2, rounds=2)))


def test_the_backend_as_a_separate_program_gives_the_same_table(small_spec, tmp_path):
    spec = small_spec(seed=4, rounds=2)
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    endpoint = f"ipc://{tmp_path}/orch.sock"
    argv = [sys.executable, "-m", "bridge.backends.builtin", "--endpoint", endpoint, "--spec", str(spec_path)]
    orchestrator = serve_with_peer(
        Orchestrator(spec), endpoint, PeerProcess(argv, cwd=tmp_path), timeout_s=60
    )
    pd.testing.assert_frame_equal(orchestrator.table(), run_once(spec))


def test_an_eavesdropped_channel_is_flagged_and_raises_qber(small_spec):
    clean = _scalars(run_once(small_spec(rounds=3)))
    tapped = _scalars(run_once(small_spec(rounds=3, channel="eavesdropped")))
    assert tapped["qkd/qber_mean"] > clean["qkd/qber_mean"] + 0.08
    assert tapped["ids/link_flags"] > clean["ids/link_flags"]


def test_messages_out_of_order_get_errors_and_the_run_goes_on(small_spec):
    spec = small_spec(rounds=1)
    orchestrator = Orchestrator(spec)
    kind, body = orchestrator.handle(
        protocol.KEY_REQUEST, {"round": 0, "device": [], "gateway": [], "time": []}
    )
    assert kind == protocol.ERROR and body["code"] == protocol.E_STATE
    kind, _ = orchestrator.handle(protocol.HELLO, {"version": 1, "peer": "t", "devices": 20, "gateways": 2})
    assert kind == protocol.WELCOME
    kind, body = orchestrator.handle(
        protocol.KEY_REQUEST, {"round": 5, "device": [], "gateway": [], "time": []}
    )
    assert kind == protocol.ERROR and body["code"] == protocol.E_STATE
    kind, body = orchestrator.handle(
        protocol.KEY_REQUEST, {"round": 0, "device": [99], "gateway": [0], "time": [0]}
    )
    assert kind == protocol.ERROR and body["code"] == protocol.E_FIELD
    kind, grant = orchestrator.handle(
        protocol.KEY_REQUEST, {"round": 0, "device": [0, 15], "gateway": [0, 1], "time": [0.1, 0.2]}
    )
    assert kind == protocol.KEY_GRANT and grant["device"] == [0, 15]
    assert set(grant["mode"]) <= {"quantum", "classical", "pq-hybrid"}
    assert np.all(np.asarray(grant["handshake_device_s"]) >= 0)


def test_only_loopback_or_ipc_endpoints():
    assert check_endpoint("ipc:///tmp/x.sock")
    assert check_endpoint("tcp://127.0.0.1:5555")
    for bad in ("tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://10.0.0.1:5555"):
        with pytest.raises(UserInputError):
            check_endpoint(bad)


def test_unknown_bridge_is_a_user_error(small_spec):
    with pytest.raises(UserInputError, match="bridge"):
        run_once(small_spec(), bridge="carrier-pigeon")


def test_links_are_commissioned_and_pool_keys_carry_their_security_parameter(small_spec):
    """Default qkd section: blocks of source_rate_hz x round_duration_s pulses (1e9 x 0.5 s), intensities
    optimised for the honest noisy link, keys from every block, each key with the block's epsilon."""
    from bridge.backends.builtin import builtin_network, drive
    from bridge.cosim.orchestrator import _inprocess_call
    from qesif_core.qkd import commissioning

    spec = small_spec(rounds=3, channel="noisy")
    spec["qkd"] = {"protocol": "bb84"}
    orchestrator = Orchestrator(spec)
    drive(builtin_network(orchestrator.spec), _inprocess_call(orchestrator))
    scalars = _scalars(orchestrator.table())
    expected = commissioning.commission(orchestrator.channel, 5 * 10**8)
    assert scalars["qkd/pulses_per_block"] == 5e8
    assert (scalars["qkd/mu_signal"], scalars["qkd/mu_decoy"]) == (expected.mu_signal, expected.mu_decoy)
    assert scalars["qkd/mu_signal"] < 0.5 and scalars["qkd/intensities_optimised"] == 1
    assert scalars["qkd/blocks_with_key"] == scalars["qkd/blocks"] == 6
    assert 0 < scalars["qkd/key_bits"] < scalars["qkd/secret_bits"]
    pool = orchestrator.pools[0]
    container = pool.enc_keys(pool.slave_sae_id, caller=pool.master_sae_id, now=1.5, number=4)
    epsilons = {pool.provenance(entry["key_ID"]).epsilon for entry in container["keys"]}
    assert epsilons == {1e-10 + 2.0**-64 + 8e-10}  # eps_sec + eps_cor + 8 estimation bounds x eps_pe
    fixed = Orchestrator({**spec, "qkd": {"protocol": "bb84", "intensities": "fixed"}})
    assert (fixed.channel.mu_signal, fixed.channel.mu_decoy) == (0.5, 0.1)
