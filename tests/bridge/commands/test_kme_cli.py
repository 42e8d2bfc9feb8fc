"""``qesif kme certs`` and ``qesif kme serve``: bad input exits 2 naming the field; the served KME answers
over mutual TLS and stops on SIGTERM (a subprocess stopped by its pid)."""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import ssl
import subprocess
import sys
import time

import pytest

from bridge import cli
from bridge.services import kme_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return kme_certs.generate(tmp_path_factory.mktemp("kme-cli-certs"), ["A", "B"])


def test_certs_writes_the_files(tmp_path, capsys):
    assert cli.main(["kme", "certs", "--out", str(tmp_path), "--sae", "A", "B"]) == 0
    assert (tmp_path / "ca.pem").is_file() and (tmp_path / "sae" / "B.key").is_file()
    assert "sae/B.pem" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["kme", "certs", "--out", "{tmp}", "--sae", "no spaces"], "--sae"),
        (["kme", "serve", "--certs", "{certs}"], "pairs"),
        (["kme", "serve", "--pair", "A:B"], "certs"),
        (["kme", "serve", "--certs", "{certs}", "--pair", "AB"], "--pair"),
        (["kme", "serve", "--certs", "{certs}", "--pair", "A:A"], "pairs[0]"),
        (["kme", "serve", "--certs", "{certs}", "--pair", "A:B", "--port", "70000"], "port"),
        (["kme", "serve", "--certs", "{certs}", "--pair", "A:B", "--channel", "foggy"], "channel"),
        (["kme", "serve", "--certs", "{certs}", "--pair", "A:B", "--pulses", "0"], "pulses_per_block"),
        (
            ["kme", "serve", "--certs", "{certs}", "--pair", "A:B", "--block-interval", "0"],
            "block_interval_s",
        ),
        (["kme", "serve", "--certs", "{tmp}", "--pair", "A:B"], "ca.pem"),
        (["kme", "serve", "--certs", "{certs}", "--pair", "A:B", "--seed", "-1"], "seed"),
        (["kme", "serve", "--certs", "{certs}", "--pair", "A:B", "--host", "256.1.1.1"], "host/port"),
        (["kme", "serve", "--config", "{tmp}/missing.yaml"], "missing.yaml"),
    ],
)
def test_bad_input_exits_2_naming_the_field(certs, tmp_path, capsys, argv, named):
    argv = [a.format(certs=certs.root, tmp=tmp_path) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_config_file_fields_are_checked(certs, tmp_path, capsys):
    config = tmp_path / "kme.yaml"
    config.write_text(f"certs: {certs.root}\npairs: [{{master: A, slave: B}}]\nmax_key_count: many\n")
    assert cli.main(["kme", "serve", "--config", str(config)]) == 2
    assert "max_key_count" in capsys.readouterr().err
    config.write_text(f"certs: {certs.root}\npairs: [{{master: A, slave: B}}]\nlistn: 1\n")
    assert cli.main(["kme", "serve", "--config", str(config)]) == 2
    assert "listn" in capsys.readouterr().err


def test_serve_answers_over_mtls_and_stops_on_sigterm(certs, tmp_path):
    config = tmp_path / "kme.yaml"
    config.write_text(
        f"certs: {certs.root}\npairs: [{{master: A, slave: B}}]\nport: 0\npulses_per_block: 1000000\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "kme", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "the KME did not report its address within 60 s"
        line = process.stdout.readline()
        assert line.startswith("KME listening on https://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        context = ssl.create_default_context(cafile=str(certs.ca_cert))
        context.load_cert_chain(certs.sae_cert("A"), certs.sae_key("A"))
        connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=5)
        connection.request("GET", "/api/v1/keys/B/status")
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["stored_key_count"] > 0
        connection.close()
    finally:
        os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == 0
