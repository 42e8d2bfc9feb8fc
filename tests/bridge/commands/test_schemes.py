"""``qesif schemes``: lists every scheme with its description; ``--file`` adds a user's scheme."""

from __future__ import annotations

import pytest

from bridge.cli import main
from qesif_core.schemes import available_schemes
from qesif_core.schemes.base import _reset_registry_for_tests


@pytest.fixture
def registry():
    restore = _reset_registry_for_tests()
    yield
    restore()


def test_lists_every_scheme_with_its_description(capsys):
    assert main(["schemes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    schemes = available_schemes()
    assert len(lines) == len(schemes)
    for line, (name, cls) in zip(lines, schemes.items(), strict=True):
        assert line.split()[0] == name and cls.description in line


def test_file_adds_a_users_scheme(registry, repo_root, capsys):
    example = repo_root / "docs" / "examples" / "my_baseline.py"
    assert main(["schemes", "--file", str(example)]) == 0
    out = capsys.readouterr().out
    assert "KeyRateGate" in out and "(from --file)" in out


def test_bad_file_exits_2_with_a_message(registry, tmp_path, capsys):
    assert main(["schemes", "--file", str(tmp_path / "missing.py")]) == 2
    err = capsys.readouterr().err
    assert "missing.py" in err and "Traceback" not in err
