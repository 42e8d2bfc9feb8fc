"""``qesif kme certs``: a local CA, the KME's server certificate and SAE client certificates;
``qesif kme serve``: the ETSI GS QKD 014 key management entity (HTTPS, mutual TLS) fed by the QKD engine."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("kme", help="ETSI GS QKD 014 key management entity (certificates, server)")
    sub = parser.add_subparsers(dest="kme_command", metavar="ACTION", required=True)

    certs = sub.add_parser("certs", help="make a local CA, a server certificate and SAE client certificates")
    certs.add_argument("--out", required=True, type=Path, help="folder for ca.pem, server.pem, sae/NAME.pem")
    certs.add_argument("--sae", required=True, nargs="+", metavar="NAME", help="SAE IDs (certificate CNs)")
    certs.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    certs.set_defaults(func=run_certs)

    serve = sub.add_parser("serve", help="serve ETSI GS QKD 014 over HTTPS with mutual TLS")
    serve.add_argument(
        "--config", type=Path, help="YAML file with the KmeConfig fields (options override it)"
    )
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 8443; 0 picks a free one)")
    serve.add_argument("--certs", help="folder made by `qesif kme certs`")
    serve.add_argument(
        "--pair", action="append", metavar="MASTER:SLAVE", help="an SAE pair served by this KME (repeatable)"
    )
    serve.add_argument("--seed", type=int, help="seed of the QKD engine and key IDs (default 1)")
    serve.add_argument("--channel", help="QKD channel preset: clean, noisy, eavesdropped (default clean)")
    serve.add_argument(
        "--pulses", dest="pulses_per_block", type=int, help="pulses per QKD block (default 1e7)"
    )
    serve.add_argument("--block-interval", dest="block_interval_s", type=float, help="seconds between blocks")
    serve.add_argument("--initial-blocks", type=int, help="blocks run before serving (default 1)")
    serve.add_argument(
        "--network", metavar="SCENARIO", help="serve end-to-end keys of this scenario's quantum_network"
    )
    serve.add_argument(
        "--attach", action="append", default=[], metavar="SAE:NODE", help="with --network: an SAE's node"
    )
    serve.add_argument("-v", "--verbose", action="store_true", help="log requests and QKD blocks to stderr")
    serve.set_defaults(func=run_serve)


def run_certs(args: argparse.Namespace) -> int:
    from bridge.services import kme_certs

    paths = kme_certs.generate(args.out, list(args.sae), days=args.days)
    print(f"CA {paths.ca_cert}; server {paths.server_cert}; SAEs: " + ", ".join(
        str(paths.sae_cert(name)) for name in args.sae
    ))  # fmt: skip
    return 0


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = (
        "host",
        "port",
        "certs",
        "seed",
        "channel",
        "pulses_per_block",
        "block_interval_s",
        "initial_blocks",
    )
    from bridge.services.kme import parse_pair

    values: dict[str, Any] = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.pair:
        values["pairs"] = [parse_pair(text) for text in args.pair]
    return values


def run_serve(args: argparse.Namespace) -> int:
    from bridge.services.kme import KmeConfig, KmeServer, load_config

    overrides = _overrides(args)
    if args.config is not None:
        config = load_config(args.config, overrides)
    else:
        config = KmeConfig.from_mapping(overrides, "options (--certs, --pair, ...)")
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    store = None
    if args.network:  # end-to-end keys relayed across a QKD network (docs/qkd-network.md)
        from bridge.qnet.kme import network_store

        store = network_store(config, args.network, args.attach)
    server = KmeServer(config, store=store)
    try:
        server.start()
        host, port = server.address
        print(f"KME listening on https://{host}:{port}", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
    return 0
