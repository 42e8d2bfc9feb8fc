"""``qesif validate FILE``: check a scenario file and say how many runs it expands to."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("validate", help="check a scenario file (exit 2 naming the bad field)")
    parser.add_argument("file", help="scenario YAML")
    parser.add_argument(
        "--scheme-file", action="append", default=[], metavar="PY", help="Python file defining extra schemes"
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from bridge.scenario import load_runs
    from qesif_core.schemes import load_scheme_file

    for path in args.scheme_file:
        load_scheme_file(path)
    scenario, runs = load_runs(args.file)
    sweeps = "".join(f" x {len(v)} {k}" for k, v in scenario.sweeps.items())
    print(
        f"{args.file}: valid scenario {scenario.name!r}: {len(runs)} runs "
        f"({len(scenario.datasets)} datasets x {len(scenario.channels)} channels x "
        f"{len(scenario.schemes)} schemes{sweeps} x {len(scenario.seeds)} seeds, "
        f"{scenario.rounds} rounds each)"
    )
    return 0
