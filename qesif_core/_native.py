"""Choice between a compiled (Cython) module and its pure-Python twin.

``QESIF_IMPL`` selects the implementation: ``auto`` (compiled when built, else the twin with a warning),
``python`` (always the twin) or ``cython`` (compiled, or an error saying how to build it). Both twins
implement the same functions and tests check that they agree exactly.
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType

IMPL_ENV = "QESIF_IMPL"
IMPLEMENTATIONS = ("auto", "python", "cython")
BUILD_HINT = "build it with `make build` (or `pip install -e .`), or set QESIF_IMPL=python"


class NativeExtensionMissing(ImportError):
    """QESIF_IMPL=cython was asked for but the compiled extension is not built."""


def implementation() -> str:
    """The implementation asked for in the environment (default ``auto``)."""
    value = os.environ.get(IMPL_ENV, "auto").strip().lower()
    if value not in IMPLEMENTATIONS:
        raise ValueError(f"{IMPL_ENV}={value!r} is not one of {', '.join(IMPLEMENTATIONS)}")
    return value


def load(compiled: str, pure: str, impl: str | None = None) -> ModuleType:
    """Import ``compiled`` or ``pure`` (dotted module names) according to ``impl`` or ``QESIF_IMPL``."""
    impl = implementation() if impl is None else impl
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"implementation {impl!r} is not one of {', '.join(IMPLEMENTATIONS)}")
    if impl == "python":
        return importlib.import_module(pure)
    try:
        return importlib.import_module(compiled)
    except ImportError as exc:
        if impl == "cython":
            raise NativeExtensionMissing(f"compiled module {compiled} is not built: {BUILD_HINT}") from exc
        warnings.warn(
            f"compiled module {compiled} is not built; using the slower pure-Python {pure} ({BUILD_HINT})",
            RuntimeWarning,
            stacklevel=2,
        )
        return importlib.import_module(pure)
