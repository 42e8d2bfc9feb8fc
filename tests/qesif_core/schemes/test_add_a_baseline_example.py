"""The worked example of docs/add-a-baseline.md: the doc shows exactly the example file, which loads
through the user-file mechanism and plans sessions."""

from __future__ import annotations

import re

import pytest

from qesif_core.schemes import SessionContext, get_scheme, load_scheme_file
from qesif_core.schemes.base import _reset_registry_for_tests


@pytest.fixture
def registry():
    restore = _reset_registry_for_tests()
    yield
    restore()


def test_doc_shows_the_example_file_verbatim(repo_root):
    doc = (repo_root / "docs" / "add-a-baseline.md").read_text()
    example = (repo_root / "docs" / "examples" / "my_baseline.py").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert example in blocks
    assert 20 <= len(example.splitlines()) <= 40


def test_example_loads_and_plans_sessions(registry, repo_root):
    loaded = load_scheme_file(repo_root / "docs" / "examples" / "my_baseline.py")
    assert [cls.name for cls in loaded] == ["KeyRateGate"]
    scheme = get_scheme("KeyRateGate")({"epsilon_min": 2.0})
    quantum = scheme.plan_session(SessionContext(1, 0, 0.0, 3.0, True, False))
    fallback = scheme.plan_session(SessionContext(1, 0, 1.0, 3.0, True, True))
    low = scheme.plan_session(SessionContext(1, 0, 2.0, 1.0, True, False))
    assert (quantum.mode, quantum.consumes_qkd_key) == ("quantum", True)
    assert fallback.handshake == low.handshake == "mlkem768"
