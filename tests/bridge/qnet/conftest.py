"""The network tests' scenario (``data/small_network.yaml``) as a fresh mapping per test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

SMALL_NETWORK = Path(__file__).resolve().parent / "data" / "small_network.yaml"


@pytest.fixture
def scenario() -> dict[str, Any]:
    return yaml.safe_load(SMALL_NETWORK.read_text(encoding="utf-8"))
