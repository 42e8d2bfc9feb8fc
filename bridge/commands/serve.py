"""``qesif serve FILE --endpoint tcp://127.0.0.1:PORT``: serve a scenario's runs, one at a time, to a network
peer started by someone else (docs/protocol.md, "External peers"); results go to the same store as
``qesif run``'s (resumable)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bridge.commands.run import external_runs
from qesif_core.errors import UserInputError


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve a scenario's runs, one at a time, to a network peer started by someone else"
    )
    parser.add_argument("file", help="scenario YAML")
    parser.add_argument(
        "--endpoint",
        default="tcp://127.0.0.1:5555",
        help="where to listen: loopback tcp://127.0.0.1:PORT (PORT * for any free one) or ipc://PATH "
        "(default: tcp://127.0.0.1:5555)",
    )
    parser.add_argument("--out", default="results", help="results directory (default: results)")
    parser.add_argument(
        "--files",
        metavar="DIR",
        help="folder for each run's spec, schedule and topology files (default: temporary)",
    )
    parser.add_argument(
        "--timeout", type=_positive_float, default=60.0, help="seconds a started peer may stay silent (60)"
    )
    parser.add_argument(
        "--wait",
        type=_positive_float,
        default=None,
        help="seconds to wait for a peer to start (default: for ever)",
    )
    parser.add_argument(
        "--scheme-file", action="append", default=[], metavar="PY", help="Python file defining extra schemes"
    )
    parser.set_defaults(func=main)


def _announce(label: str, key: str, index: int, total: int):
    def announce(endpoint: str, files: dict[str, str]) -> None:
        listed = " ".join(f"--{name} {path}" for name, path in files.items())
        print(f"run {index}/{total} {label} [{key}]: serving on {endpoint} ({listed})", flush=True)

    return announce


def main(args: argparse.Namespace) -> int:
    from bridge.cosim.external import serve_external
    from bridge.cosim.orchestrator import bind_router, finished_table
    from bridge.cosim.supervise import PeerFailure
    from bridge.scenario import load_runs
    from bridge.store import ResultStore, encode
    from qesif_core.schemes import load_scheme_file

    for path in args.scheme_file:
        load_scheme_file(path)
    scenario, runs = load_runs(args.file)
    transport = "ipc" if args.endpoint.startswith("ipc://") else "tcp"
    runs = external_runs(runs, None, transport)
    store = ResultStore(args.out)
    store.save_manifest(scenario.name, [run.key for run in runs])
    todo = [run for run in runs if not store.is_finished(run.key)]
    socket = bind_router(args.endpoint)
    failed = 0
    try:
        for index, run in enumerate(todo, 1):
            started = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="qesif-serve-") as scratch:
                folder = Path(args.files) / run.key if args.files else Path(scratch)
                folder.mkdir(parents=True, exist_ok=True)
                try:
                    orchestrator = serve_external(
                        run.spec,
                        socket,
                        folder,
                        timeout_s=args.timeout,
                        wait_s=args.wait,
                        announce=_announce(run.label, run.key, index, len(todo)),
                    )
                    table = finished_table(orchestrator, "external")
                except (PeerFailure, UserInputError) as exc:
                    failed += 1
                    print(f"run {index}/{len(todo)} failed: {exc}", file=sys.stderr, flush=True)
                    store.save_failure(
                        run.key,
                        {
                            "key": run.key,
                            "label": run.label,
                            "reason": f"{type(exc).__name__}: {exc}",
                            "log_tail": "",
                            "elapsed_s": round(time.perf_counter() - started, 3),
                            "spec": run.spec,
                        },
                    )
                    continue
            store.save_run(run.key, encode(table, run.key, run.spec, run.itervars))
            print(f"run {index}/{len(todo)} stored", flush=True)
    finally:
        socket.close()
    print(
        f"{scenario.name}: {len(runs)} runs: {len(todo) - failed} served now, "
        f"{len(runs) - len(todo)} already stored, {failed} failed; results in {store.root}",
        file=sys.stderr,
    )
    return 1 if failed else 0
