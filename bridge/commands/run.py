"""``qesif run FILE``: execute a scenario's runs into a results directory (resumable)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from bridge.commands import LazyChoices

if TYPE_CHECKING:
    from bridge.scenario import Run


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run a scenario's batch (skips runs already stored)")
    parser.add_argument("file", help="scenario YAML")
    parser.add_argument(
        "--backend",
        choices=LazyChoices("bridge.scenario", "BACKENDS"),
        metavar="NAME",
        default=None,
        help="network backend: %(choices)s (default: the file's)",
    )
    parser.add_argument("--jobs", type=_positive_int, default=1, help="local worker processes (default 1)")
    parser.add_argument(
        "--scheduler", metavar="tcp://HOST:PORT", help="run on this Dask distributed scheduler"
    )
    parser.add_argument("--out", default="results", help="results directory (default: results)")
    parser.add_argument(
        "--bridge",
        choices=LazyChoices("bridge.batch", "BRIDGES"),
        metavar="NAME",
        default="inprocess",
        help="orchestrator-backend coupling: %(choices)s (default: inprocess)",
    )
    parser.add_argument(
        "--scheme-file", action="append", default=[], metavar="PY", help="Python file defining extra schemes"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--peer",
        metavar="'CMD ... {endpoint}'",
        help="run each run's network in this program instead of the built-in backend (no shell; "
        "placeholders {endpoint}, {spec}, {schedule}, {topology}: docs/protocol.md)",
    )
    parser.add_argument(
        "--peer-endpoint",
        choices=LazyChoices("bridge.cosim.external", "TRANSPORTS"),
        metavar="TRANSPORT",
        default="ipc",
        help="how --peer reaches the orchestrator: ipc:// socket (default) or tcp://127.0.0.1:<free port>",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="compute everything in every run (default: runs share QKD blocks, flow tables and trained "
        "classifiers through OUT/cache; same results)",
    )
    parser.set_defaults(func=main)


def external_runs(runs: list[Run], command: str | None, transport: str) -> list[Run]:
    """The runs with an external peer as their network (their own keys: never mixed with built-in runs)."""
    from bridge.cosim.external import external_spec, parse_peer_command
    from bridge.scenario import Run, run_key

    if command is not None:
        parse_peer_command(command)
    out = []
    for run in runs:
        spec = external_spec(run.spec, command, transport)
        out.append(Run(key=run_key(spec), spec=spec, itervars=run.itervars))
    return out


def main(args: argparse.Namespace) -> int:
    from bridge.batch import run_batch
    from bridge.scenario import load_runs
    from bridge.store import ResultStore
    from qesif_core.schemes import load_scheme_file

    for path in args.scheme_file:
        load_scheme_file(path)
    scenario, runs = load_runs(args.file, backend=args.backend)
    if args.peer is not None:
        runs = external_runs(runs, args.peer, args.peer_endpoint)
    store = ResultStore(args.out)
    store.save_manifest(scenario.name, [run.key for run in runs])
    summary = run_batch(
        runs,
        store,
        jobs=args.jobs,
        scheduler=args.scheduler,
        bridge=args.bridge,
        scheme_files=args.scheme_file,
        progress=not args.no_progress,
        description=scenario.name,
        cache=not args.no_cache,
    )
    print(
        f"{scenario.name}: {summary.total} runs: {summary.succeeded} run now, "
        f"{summary.skipped} already stored, {summary.failed} failed (see {store.failed_dir}); "
        f"results in {store.root}",
        file=sys.stderr,
    )
    if summary.user_error:
        print(f"qesif run: error: {summary.user_error}", file=sys.stderr)
    return summary.exit_code
