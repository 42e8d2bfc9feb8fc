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


def test_a_users_scheme_file_runs_end_to_end_through_qesif_run(registry, repo_root, tmp_path, capsys):
    """The docs' example scheme, outside the package, through ``qesif run --scheme-file``."""
    yaml = pytest.importorskip("yaml")
    pd = pytest.importorskip("pandas")
    scenario = yaml.safe_load((repo_root / "scenarios" / "smoke.yaml").read_text())
    scenario.update(rounds=2, channels=["clean"], schemes=["KeyRateGate"])
    scenario["datasets"] = [{"name": "ton_iot", "max_rows": 1000}]
    path = tmp_path / "user_scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    example = repo_root / "docs" / "examples" / "my_baseline.py"
    out = tmp_path / "results"
    args = ["run", str(path), "--scheme-file", str(example), "--out", str(out), "--no-progress"]
    assert main(args) == 0, capsys.readouterr().err
    (run_file,) = (out / "runs").glob("*.parquet")
    table = pd.read_parquet(run_file)
    attrs = dict(zip(table["attrname"], table["attrvalue"], strict=False))
    assert attrs["scheme"] == "KeyRateGate"
    scalars = table[table["type"] == "scalar"].set_index(["module", "name"])["value"]
    hybrid = scalars.loc["hybrid"]
    assert hybrid[[n for n in hybrid.index if n.endswith("_sessions")]].sum() > 0
