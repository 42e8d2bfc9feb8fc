"""Shared fixtures: a seeded generator, the shared data folder (``../shared`` or ``$QESIF_SHARED``), and the
C++ bridge client built once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def _shared_path(*parts: str) -> Path:
    root = Path(os.environ.get("QESIF_SHARED", REPO.parent / "shared"))
    path = root.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


@pytest.fixture
def shared_path():
    """``shared_path("datasets", "bot_iot", "data_t.csv")``: a path under the shared data folder;
    the test skips when it is absent."""
    return _shared_path


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
