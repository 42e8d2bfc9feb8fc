"""Sub-commands of ``qesif``: each module defines ``register(subparsers)``; ``bridge.cli`` lists them.

Building the parser imports every command module, so a module imports at its top only what ``register``
needs (the standard library, light constants); numerical and I/O libraries (pandas, scikit-learn, SciPy,
matplotlib, ZeroMQ) are imported inside the functions that run a command. ``qesif --help`` then starts
in a fraction of a second (``tests/bridge/test_cli.py`` checks what it imports).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterator


class LazyChoices:
    """argparse ``choices`` read from ``module.attribute`` only when a value is checked or a command's help
    is shown, so that registering the argument imports nothing. Give the argument a ``metavar`` (argparse
    lists the choices in the usage line otherwise, which reads them at registration)."""

    def __init__(self, module: str, attribute: str) -> None:
        self.module = module
        self.attribute = attribute

    def _names(self) -> list[str]:
        return list(getattr(importlib.import_module(self.module), self.attribute))

    def __contains__(self, value: object) -> bool:
        return value in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


def add_dataset_option(parser: argparse.ArgumentParser) -> None:
    """The required ``--dataset NAME`` of the dataset commands (one of ``bridge.datasets.DATASETS``)."""
    parser.add_argument(
        "--dataset",
        required=True,
        choices=LazyChoices("bridge.datasets", "DATASETS"),
        metavar="NAME",
        help="%(choices)s",
    )
