"""Shared fixtures: a seeded generator, the data the tests read from the repository itself, and the C++
bridge client built once per session.

``data_path("datasets", "bot_iot", "data_t.csv")`` is ``scenarios/data/bot_iot/data_t.csv`` (the real
sample rows shipped with the project) and ``data_path("fixtures", "quisp", ...)`` is
``tests/fixtures/quisp/...`` (real QuISP and OMNeT++/INET outputs, ``tests/fixtures/README.md``). These
files are part of the repository, so a missing one fails the test instead of skipping it: tests skip
only for an absent external tool.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
#: Where each kind of test data lives in the repository.
DATA_ROOTS = {"datasets": REPO / "scenarios" / "data", "fixtures": REPO / "tests" / "fixtures"}


def _data_path(kind: str, *parts: str) -> Path:
    if kind not in DATA_ROOTS:
        raise ValueError(f"unknown test data kind {kind!r}; known: {', '.join(DATA_ROOTS)}")
    path = DATA_ROOTS[kind].joinpath(*parts)
    if not path.exists():
        pytest.fail(f"test data missing from the repository: {path}")
    return path


@pytest.fixture
def data_path():
    """``data_path("datasets" | "fixtures", *parts)``: a path to test data shipped in the repository."""
    return _data_path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20250116)


@pytest.fixture
def repo_root() -> Path:
    return REPO


CPP_HEADERS = (
    Path("/usr/include/zmq.hpp"),
    Path("/usr/include/nlohmann/json.hpp"),
    Path("/usr/include/zmq.h"),
)


@pytest.fixture(scope="session")
def cpp_build(tmp_path_factory) -> Path:
    """The folder where ``make cpp-client`` put the C++ client's programs; skips without a toolchain."""
    missing = [str(h) for h in CPP_HEADERS if not h.exists()]
    if not shutil.which("g++") or not shutil.which("make") or missing:
        pytest.skip(
            f"C++ toolchain or headers absent (g++, make, {', '.join(missing) or 'headers ok'}); "
            "install with `make sysdeps`"
        )
    build = tmp_path_factory.mktemp("cpp")
    proc = subprocess.run(
        ["make", "-s", "cpp-client", f"CPP_BUILD={build}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return build
