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


# src/common/Makefile's lines that the sqlite switch edits, as in OMNeT++ 6.1
COMMON_MAKEFILE = """IMPLIBS= $(LIBXML_LIBS)

OBJS= $O/lcgrandom.o $O/filelock.o \\
      $O/enumstr.o $O/colorutil.o $O/statistics.o $O/sqlite3.o \\
      $O/formattedprinter.o
"""


def write_script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(0o755)


def fake_omnetpp_source(tmp_path: Path, *, bundled_sqlite: bool = True) -> Path:
    """A stand-in OMNeT++ source tree with the files and commands the omnetpp stage uses: its setenv (which,
    as the real one, refuses to run without configure.user), a configure that fails once, a make target
    `base`, and an opp_makemake whose makefile builds samples/aloha/aloha."""
    src = tmp_path / "omnetpp-src"
    (src / "src" / "common").mkdir(parents=True)
    (src / "samples" / "aloha").mkdir(parents=True)
    dist = "WITH_QTENV=yes\nWITH_OSG=yes\nWITH_OSGEARTH=yes\nWITH_SCAVE_PYTHON_BINDINGS=yes\n"
    (src / "configure.user.dist").write_text(dist, encoding="utf-8")
    (src / "src" / "common" / "Makefile").write_text(COMMON_MAKEFILE, encoding="utf-8")
    if bundled_sqlite:
        (src / "src" / "common" / "sqlite3.c").write_text("/* bundled amalgamation */\n", encoding="utf-8")
    (src / "setenv").write_text(
        'dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)\n'
        '[ -f "$dir/configure.user" ] || { echo "setenv: no configure.user"; return 1; }\n'
        'export PATH="$dir/bin:$PATH"\n',
        encoding="utf-8",
    )
    (src / "fail-once").write_text("", encoding="utf-8")
    write_script(
        src / "configure",
        'if [ -f fail-once ]; then rm fail-once; echo "configure: simulated error"; exit 1; fi',
    )
    (src / "Makefile").write_text("base:\n\ttouch built-base\n", encoding="utf-8")
    write_script(
        src / "bin" / "opp_makemake", "printf 'all:\\n\\ttouch aloha\\n\\tchmod +x aloha\\n' > Makefile"
    )
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


def test_a_failed_step_resumes_where_it_stopped_and_a_rerun_is_idempotent(tmp_path):
    src = fake_omnetpp_source(tmp_path)
    prefix = tmp_path / "sim"
    failed = run_script(tmp_path, "omnetpp", OMNETPP_SRC=str(src))
    assert failed.returncode == 1
    assert "omnetpp: configure FAILED" in failed.stderr and "configure: simulated error" in failed.stderr
    assert (prefix / ".stamps" / "omnetpp.unpack").is_file()
    assert not (prefix / ".stamps" / "omnetpp.configure").exists()

    resumed = run_script(tmp_path, "omnetpp", OMNETPP_SRC=str(src))
    assert resumed.returncode == 0, resumed.stderr
    assert "omnetpp: unpack already done" in resumed.stdout and "omnetpp: aloha done" in resumed.stdout
    root = prefix / "omnetpp"
    user = (root / "configure.user").read_text(encoding="utf-8").split()
    assert {"WITH_QTENV=no", "WITH_OSG=no", "WITH_OSGEARTH=no", "WITH_SCAVE_PYTHON_BINDINGS=no"} <= set(user)
    assert (root / "built-base").is_file() and (root / "samples" / "aloha" / "aloha").is_file()
    assert "$O/sqlite3.o" in (root / "src" / "common" / "Makefile").read_text(
        encoding="utf-8"
    )  # bundled kept
    env = (prefix / "env.sh").read_text(encoding="utf-8")
    assert f"source {root}/setenv -q" in env and f"export OMNETPP_ROOT={root}" in env
    assert "INET_ROOT" not in env and "QUISP" not in env  # only what is built
    assert (src / "fail-once").is_file()  # the user's source tree is untouched

    again = run_script(tmp_path, "omnetpp", OMNETPP_SRC=str(src))
    assert again.returncode == 0
    assert again.stdout.count("already done") == 4 and " done in " not in again.stdout


@pytest.mark.skipif(
    not Path("/usr/include/sqlite3.h").is_file(), reason="sqlite3.h absent (Debian package libsqlite3-dev)"
)
def test_without_the_sqlite_amalgamation_omnetpp_links_debians_sqlite(tmp_path):
    src = fake_omnetpp_source(tmp_path, bundled_sqlite=False)
    (src / "fail-once").unlink()
    assert run_script(tmp_path, "omnetpp", OMNETPP_SRC=str(src)).returncode == 0
    makefile = (tmp_path / "sim" / "omnetpp" / "src" / "common" / "Makefile").read_text(encoding="utf-8")
    assert "IMPLIBS= $(LIBXML_LIBS) -lsqlite3\n" in makefile
    assert "sqlite3.o" not in makefile and "$O/statistics.o \\\n" in makefile
