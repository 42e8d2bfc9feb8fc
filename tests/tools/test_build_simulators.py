"""tools/build_simulators.sh's prerequisite checks: every missing piece is named, with its Debian package,
and the script stops with exit code 2 before building anything. Needs bash only, no simulator."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "build_simulators.sh"
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="bash is not on PATH")


def run_script(tmp_path: Path, *stages: str, path: str | None = None, **env: str):
    base = {"HOME": str(tmp_path), "PATH": path if path is not None else os.environ["PATH"]}
    base["SIM_PREFIX"] = str(tmp_path / "sim")
    return subprocess.run(
        [BASH, str(SCRIPT), *stages], env={**base, **env}, capture_output=True, text=True, timeout=60
    )


def fake_omnetpp_source(tmp_path: Path) -> Path:
    src = tmp_path / "omnetpp-src"
    (src / "src" / "common").mkdir(parents=True)
    (src / "configure.user.dist").write_text("WITH_QTENV=yes\n", encoding="utf-8")
    (src / "src" / "common" / "sqlite3.c").write_text("/* bundled amalgamation */\n", encoding="utf-8")
    return src


def test_missing_source_folder_is_named_and_nothing_is_built(tmp_path):
    result = run_script(tmp_path, "omnetpp", OMNETPP_SRC=str(tmp_path / "no-such-omnetpp"))
    assert result.returncode == 2
    assert f"OMNETPP_SRC={tmp_path / 'no-such-omnetpp'}: no such folder or archive" in result.stderr
    assert not (tmp_path / "sim").exists()


def test_unset_source_and_a_folder_that_is_not_the_source_are_named(tmp_path):
    unset = run_script(tmp_path, "omnetpp")
    assert unset.returncode == 2 and "OMNETPP_SRC is not set" in unset.stderr
    wrong = run_script(tmp_path, "inet", "omnetpp", INET_SRC=str(tmp_path), OMNETPP_SRC=str(tmp_path))
    assert wrong.returncode == 2
    inet = f"INET_SRC={tmp_path} does not look like INET 4.5.4's sources (tag v4.5.4): no .oppfeatures in it"
    assert inet in wrong.stderr
    assert f"OMNETPP_SRC={tmp_path} does not look like" in wrong.stderr
    assert "no configure.user.dist in it" in wrong.stderr


def test_missing_command_names_its_debian_package(tmp_path):
    """A PATH with every tool of the OMNeT++ stage except bison."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("make", "g++", "tar", "pkg-config", "flex", "perl", "python3", "sed", "nproc"):
        found = shutil.which(name)
        if found is None:
            pytest.skip(f"{name} is not on PATH, so the test cannot build a PATH lacking only bison")
        (tools / name).symlink_to(found)
    src = fake_omnetpp_source(tmp_path)
    result = run_script(tmp_path, "omnetpp", path=str(tools), OMNETPP_SRC=str(src))
    assert result.returncode == 2
    assert "command 'bison' (Debian package: bison)" in result.stderr
    assert "flex" not in result.stderr
    assert not (tmp_path / "sim").exists()


def test_later_stages_need_omnetpp_built_first(tmp_path):
    result = run_script(tmp_path, "quisp", QUISP_SRC=str(tmp_path / "quisp"))
    assert result.returncode == 2
    assert "run the omnetpp stage first" in result.stderr
    assert f"QUISP_SRC={tmp_path / 'quisp'}: no such folder or archive" in result.stderr


def test_unknown_stage_is_a_usage_error(tmp_path):
    result = run_script(tmp_path, "omnet")
    assert result.returncode == 2 and "unknown argument 'omnet'" in result.stderr
