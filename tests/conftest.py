"""Shared fixtures: a seeded generator, and the shared data folder (``../shared`` or ``$QESIF_SHARED``)."""

from __future__ import annotations

import os
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
