import subprocess
import sys
from pathlib import Path

import pytest

from bridge import cli

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
SMOKE = SCENARIOS / "smoke.yaml"


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "usage: qesif" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error():
    proc = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "no-such-command"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr
    assert "Traceback" not in proc.stderr


HEAVY_MODULES = ("pandas", "sklearn", "scipy", "matplotlib", "zmq", "pyarrow")


def _imported_after(arguments: list[str]) -> set[str]:
    """Top-level packages imported by ``qesif ARGUMENTS`` in a fresh interpreter."""
    code = (
        "import sys, contextlib, io\n"
        "from bridge import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        cli.main({arguments!r})\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(proc.stdout.split())


def test_help_imports_no_heavy_library():
    imported = _imported_after(["--help"])
    assert "bridge" in imported  # the probe works: it sees what was imported
    assert imported.isdisjoint(HEAVY_MODULES), sorted(imported & set(HEAVY_MODULES))
    assert "numpy" not in imported


@pytest.mark.parametrize("scenario", ["smoke.yaml", "paper.yaml"])
def test_validate_imports_no_heavy_library(scenario):
    """Validation reads parameter declarations only: numpy (about 50 ms) and cryptography (about 20 ms)
    would take `qesif validate` past its 0.3 s budget (issue 14; benchmarks/bench_cli.py times it)."""
    imported = _imported_after(["validate", str(SCENARIOS / scenario)])
    assert "pydantic" in imported
    assert imported.isdisjoint(HEAVY_MODULES), sorted(imported & set(HEAVY_MODULES))
    assert imported.isdisjoint({"numpy", "cryptography"}), sorted(imported & {"numpy", "cryptography"})


def test_validating_a_quantum_network_imports_no_scipy():
    """A network section is checked for connectivity without SciPy (about 0.3 s to import); numpy stays."""
    imported = _imported_after(["validate", str(SCENARIOS / "city_network.yaml")])
    assert imported.isdisjoint(HEAVY_MODULES), sorted(imported & set(HEAVY_MODULES))


def test_every_command_help_lists_its_choices(capsys):
    for arguments in (["run"], ["qkd"], ["ids", "evaluate"]):
        try:
            cli.main([*arguments, "--help"])
        except SystemExit as exc:
            assert exc.code == 0
    out = capsys.readouterr().out
    assert "inprocess, zmq" in out  # run --bridge
    assert "original, yanetal" in out  # qkd --cascade
    assert "random_forest" in out and "link-baseline, noise-free" in out  # ids evaluate


def test_a_value_outside_lazy_choices_is_a_usage_error():
    proc = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "qkd", "--cascade", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "invalid choice: 'nope'" in proc.stderr and "yanetal" in proc.stderr
