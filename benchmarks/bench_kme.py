"""ETSI GS QKD 014 key delivery over mutual TLS on loopback: enc_keys (master) + dec_keys (slave) round
trips per second.

Three ways, measured in the same run (medians of REPEATS batches):
- ``keepalive``: each SAE keeps one HTTPS connection open (the normal 014 client);
- ``new_connection``: a fresh TLS handshake per request (a client that does not keep connections);
- ``in_process``: the same two calls on the KME's key store without HTTP or TLS (the baseline: the cost
  of the pools themselves). Ratios are to it.
"""

from __future__ import annotations

import http.client
import json
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path

from timing import median_seconds

from bridge.services import kme_certs
from bridge.services.kme import KmeConfig, KmeServer

REPEATS = 5
BATCH = 100
BATCH_NEW_CONNECTION = 20


def _median_seconds(operation: Callable[[], object], batch: int) -> float:
    return median_seconds(operation, REPEATS, batch)


def _context(paths: kme_certs.CertPaths, sae: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(paths.ca_cert))
    context.load_cert_chain(paths.sae_cert(sae), paths.sae_key(sae))
    return context


def _get(connection: http.client.HTTPSConnection, path: str) -> dict:
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"{path}: HTTP {response.status}")
    return json.loads(body)


def run() -> dict:
    with tempfile.TemporaryDirectory() as folder:
        paths = kme_certs.generate(Path(folder), ["master", "slave"])
        config = KmeConfig.from_mapping(
            {
                "certs": str(paths.root),
                "pairs": [{"master": "master", "slave": "slave"}],
                "port": 0,
                "initial_blocks": 12,  # ~170 keys of 256 bits per block of 1e7 pulses
                "max_key_count": 100_000,
                "block_interval_s": 3600.0,
            },
            "bench_kme",
        )
        with KmeServer(config) as server:
            port = server.address[1]
            contexts = {sae: _context(paths, sae) for sae in ("master", "slave")}

            def connect(sae: str) -> http.client.HTTPSConnection:
                return http.client.HTTPSConnection("localhost", port, context=contexts[sae], timeout=10)

            master, slave = connect("master"), connect("slave")

            def keepalive() -> None:
                key_id = _get(master, "/api/v1/keys/slave/enc_keys")["keys"][0]["key_ID"]
                _get(slave, f"/api/v1/keys/master/dec_keys?key_ID={key_id}")

            def new_connection() -> None:
                first, second = connect("master"), connect("slave")
                key_id = _get(first, "/api/v1/keys/slave/enc_keys")["keys"][0]["key_ID"]
                _get(second, f"/api/v1/keys/master/dec_keys?key_ID={key_id}")
                first.close()
                second.close()

            store = server.store

            def in_process() -> None:
                key_id = store.enc_keys("master", "slave", 1, None)["keys"][0]["key_ID"]
                store.dec_keys("slave", "master", [key_id])

            seconds = {
                "in_process": _median_seconds(in_process, BATCH),
                "keepalive": _median_seconds(keepalive, BATCH),
                "new_connection": _median_seconds(new_connection, BATCH_NEW_CONNECTION),
            }
            master.close()
            slave.close()
    figures: dict[str, float | int] = {"repeats": REPEATS, "batch": BATCH, "key_size_bits": config.key_size}
    for name, s in seconds.items():
        figures[f"{name}_round_trips_per_s"] = round(1.0 / s, 1)
        figures[f"{name}_round_trip_ms"] = round(1000.0 * s, 3)
    for name in ("keepalive", "new_connection"):
        figures[f"{name}_vs_in_process"] = round(seconds["in_process"] / seconds[name], 5)
    return figures


if __name__ == "__main__":
    print(json.dumps(run()))
