"""``qesif schemes``: list the security schemes (built-in, entry points, and ``--file`` user files)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("schemes", help="list the security schemes with a one-line description")
    parser.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="PY",
        help="also load the schemes defined in this Python file",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from qesif_core.schemes import available_schemes, load_scheme_file

    from_files = {cls.name for path in args.file for cls in load_scheme_file(path)}
    schemes = available_schemes()
    width = max(len(name) for name in schemes)
    for name, cls in schemes.items():
        marker = "  (from --file)" if name in from_files else ""
        print(f"{name:<{width}}  {cls.description}{marker}")
    return 0
