"""The ETSI GS QKD 014 KME in front of a QKD network, over real HTTPS with mutual TLS: SAEs in different
zones get the same end-to-end key (relayed through trusted nodes), a key is delivered once, and a
partitioned network answers 503 without spending a link key or serving a stale key."""

from __future__ import annotations

import base64
import http.client
import json
import select
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bridge import cli
from bridge.qnet.kme import NetworkKeyStore
from bridge.scenario import expand, parse_scenario
from bridge.services import kme_certs
from bridge.services.kme import KmeConfig, KmeServer
from qesif_core.qnet.links import AttackWindow

SAES = {"SAE-north": "gw1", "SAE-south": "gw2"}
SMALL_NETWORK = Path(__file__).resolve().parent / "data" / "small_network.yaml"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return kme_certs.generate(tmp_path_factory.mktemp("qnet-kme"), list(SAES))


def network_section(scenario) -> dict:
    (run,) = expand(parse_scenario(scenario, "t.yaml"), "t.yaml")
    return run.spec["quantum_network"]


def call(server, certs, sae, path):
    context = ssl.create_default_context(cafile=str(certs.ca_cert))
    context.load_cert_chain(certs.sae_cert(sae), certs.sae_key(sae))
    connection = http.client.HTTPSConnection("localhost", server.address[1], context=context, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    return response.status, body


@pytest.fixture
def served(certs, scenario):
    config = KmeConfig.from_mapping(
        {
            "certs": str(certs.root),
            "pairs": [{"master": "SAE-north", "slave": "SAE-south", "link": "north-south"}],
            "port": 0,
            "block_interval_s": 3600.0,  # blocks only when the test feeds them
            "initial_blocks": 2,
            "max_key_per_request": 4,
        },
        "test",
    )
    store = NetworkKeyStore(
        config, network_section(scenario), SAES, np.random.default_rng(9), calibration_blocks=4
    )
    with KmeServer(config, store=store) as server:
        yield server, store


def test_keys_across_zones_arrive_equal_and_once(served, certs):
    server, store = served
    status, body = call(server, certs, "SAE-north", "/api/v1/keys/SAE-south/status")
    assert status == 200 and body["stored_key_count"] > 0
    status, body = call(server, certs, "SAE-north", "/api/v1/keys/SAE-south/enc_keys?number=3")
    assert status == 200 and len(body["keys"]) == 3
    ids = ",".join(k["key_ID"] for k in body["keys"][:1])
    status, peer = call(server, certs, "SAE-south", f"/api/v1/keys/SAE-north/dec_keys?key_ID={ids}")
    assert status == 200
    assert base64.b64decode(peer["keys"][0]["key"]) == base64.b64decode(body["keys"][0]["key"])
    status, _again = call(server, certs, "SAE-south", f"/api/v1/keys/SAE-north/dec_keys?key_ID={ids}")
    assert status == 400  # delivered once, then erased
    # relayed gw1 -> (r1 or r2) -> cc -> gw2: two relays saw each key, the end points are not counted
    topo = store.topology
    seen = {topo.nodes[i].name: int(store.network.seen[i]) for i in range(topo.n_nodes)}
    assert seen["cc"] == 3 and seen["r1"] + seen["r2"] == 3 and seen["gw1"] == seen["gw2"] == 0


def test_partition_answers_503_and_spends_nothing(served, certs):
    server, store = served
    # attackers on both of gw1's links to the centre from now on: Algorithm 2 flags them, gw1 is cut off
    for name in ("gw1--r1", "gw1--r2"):
        store.replace_link(name, attack=AttackWindow("intercept-resend", 0.56, 0.0, 1e9))
    store.feed_once()
    assert store.network.flagged[
        [store.topology.link_index["gw1--r1"], store.topology.link_index["gw1--r2"]]
    ].all()
    stored = [pool.stored for pool in store.network.pools]
    status, body = call(server, certs, "SAE-north", "/api/v1/keys/SAE-south/enc_keys?number=1")
    assert status == 503 and "no route" in body["message"]
    status, body = call(server, certs, "SAE-north", "/api/v1/keys/SAE-south/status")
    assert status == 200 and body["stored_key_count"] == 0
    assert [pool.stored for pool in store.network.pools] == stored  # no link key spent
    assert store._pools[("SAE-north", "SAE-south")].stored_key_count == 0  # nothing stale left to serve


def serve_argv(certs, *extra: str) -> list[str]:
    return [
        "kme", "serve", "--certs", str(certs.root), "--pair", "SAE-north:SAE-south", "--port", "0",
        "--network", str(SMALL_NETWORK), *extra,
    ]  # fmt: skip


def test_cli_mistakes_name_the_option(certs, tmp_path, capsys):
    assert cli.main(serve_argv(certs, "--attach", "SAE-north")) == 2
    assert "--attach must be SAE:NODE" in capsys.readouterr().err
    assert cli.main(serve_argv(certs, "--attach", "SAE-north:gw1", "--attach", "SAE-south:gw9")) == 2
    assert "SAE 'SAE-south': not attached to a node" in capsys.readouterr().err
    plain = tmp_path / "plain.yaml"
    plain.write_text("name: p\ndatasets: [ton_iot]\nchannels: [clean]\n")
    argv = serve_argv(certs, "--attach", "SAE-north:gw1")
    argv[argv.index("--network") + 1] = str(plain)
    assert cli.main(argv) == 2
    assert "has no quantum_network section" in capsys.readouterr().err


def test_cli_serves_end_to_end_keys_across_zones(certs):
    argv = serve_argv(certs, "--attach", "SAE-north:gw1", "--attach", "SAE-south:gw2")
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 120)
        assert ready, "the KME did not report its address within 120 s"
        line = process.stdout.readline()
        assert line.startswith("KME listening on https://127.0.0.1:"), line

        class Server:
            address = ("127.0.0.1", int(line.rsplit(":", 1)[1]))

        status, body = call(Server, certs, "SAE-north", "/api/v1/keys/SAE-south/enc_keys?number=2")
        assert status == 200 and len(body["keys"]) == 2
        key_id = body["keys"][1]["key_ID"]
        status, peer = call(Server, certs, "SAE-south", f"/api/v1/keys/SAE-north/dec_keys?key_ID={key_id}")
        assert status == 200 and peer["keys"][0]["key"] == body["keys"][1]["key"]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == 0
