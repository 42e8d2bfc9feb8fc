"""The C++ client (omnet_models/client, built by `make cpp-client`) against the real Python orchestrator."""

import subprocess

import pytest

from bridge.cosim.orchestrator import Orchestrator, serve_with_peer
from bridge.cosim.supervise import PeerProcess
from bridge.scenario import resolve_channel


def _spec():
    return {
        "seed": 5,
        "rounds": 2,
        "round_duration_s": 0.5,
        "backend": "builtin",
        "dataset": {"name": "ton_iot", "path": None, "max_rows": 1000},
        "channel": resolve_channel("<test>", "channel", {"name": "clean"}),
        "scheme": "QESIF",
        "network": {"devices": 20, "gateways": 2, "mean_interarrival_s": 0.1, "mqtt_fraction": 0.5,
                    "access": "802.15.4"},
        "qkd": {"protocol": "bb84", "pulses_per_block": 20000},
        "qids": {"calibration_blocks": 5},
        "keys": {},
        "costs": {},
    }  # fmt: skip


@pytest.fixture(scope="module")
def demo(cpp_build):
    return cpp_build / "qesif_bridge_demo"


def test_cpp_client_does_hello_key_request_and_bye(demo, tmp_path):
    orchestrator = Orchestrator(_spec())
    endpoint = f"ipc://{tmp_path}/orchestrator.sock"
    peer = PeerProcess([str(demo), endpoint, "20", "2"], cwd=tmp_path)
    serve_with_peer(orchestrator, endpoint, peer, timeout_s=30)
    log = peer.log_tail()
    assert peer.returncode == 0, log
    assert "WELCOME rounds=2 devices=20" in log
    grants = [line for line in log.splitlines() if line.startswith("KEY_GRANT")]
    assert len(grants) == 4 and all(" mode=" in g and " handshake=" in g for g in grants)
    assert log.rstrip().endswith("BYE")
    assert orchestrator.mode_counts["classical"] + orchestrator.mode_counts["quantum"] == 4


def test_cpp_client_refuses_non_loopback_endpoints(demo):
    proc = subprocess.run(
        [str(demo), "tcp://10.1.2.3:5555", "20", "2"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 1 and "endpoint" in proc.stderr


def test_cpp_client_times_out_without_an_orchestrator(demo, tmp_path):
    proc = subprocess.run(
        [str(demo), f"ipc://{tmp_path}/nobody.sock", "20", "2", "500"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "timeout" in proc.stderr
