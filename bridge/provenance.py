"""Fingerprint of the simulation code, so that stored results are tied to the code that computed them."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import bridge
import qesif_core

#: Files whose content can change a run's results (the compiled modules follow from the .pyx sources).
CODE_SUFFIXES = (".py", ".pyx", ".pxd", ".yaml")


@functools.cache
def code_fingerprint() -> str:
    """SHA-256 over the paths and contents of qesif_core's and bridge's source files (computed once)."""
    digest = hashlib.sha256()
    for package in (qesif_core, bridge):
        root = Path(package.__file__).resolve().parent
        for path in sorted(p for p in root.rglob("*") if p.suffix in CODE_SUFFIXES and p.is_file()):
            digest.update(path.relative_to(root.parent).as_posix().encode())
            digest.update(b"\0")
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()
