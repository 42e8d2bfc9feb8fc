"""The ``qesif`` command line.

Each sub-command lives in ``bridge.commands.<name>`` and exposes ``register(subparsers)``, which adds its
parser and sets ``func(args) -> int``. A :class:`~qesif_core.errors.UserInputError` (or an argparse error)
ends the program with a one-line message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from qesif_core import __version__
from qesif_core.errors import UserInputError

#: Sub-command modules, in the order ``qesif --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "validate",
    "run",
    "serve",
    "results",
    "figures",
    "report",
    "qkd",
    "schemes",
    "datasets",
    "ids",
    "kme",
    "testbed",
)

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qesif", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"qesif {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"bridge.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args.func(args) or 0)
    except UserInputError as exc:
        print(f"qesif {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
