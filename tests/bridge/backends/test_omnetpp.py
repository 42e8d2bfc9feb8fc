"""OMNeT++ launcher mechanics with a stand-in executable, and a real run when opp_run is installed."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest

from bridge.backends import omnetpp
from bridge.results import scave
from qesif_core.errors import UserInputError

FAKE = """\
#!{python}
# stand-in for an OMNeT++ executable: checks the argv, records the wrapper ini, writes recorded results
import os, shutil, sys, time
args = sys.argv[1:]
assert args[:3] == ["-u", "Cmdenv", "--cmdenv-express-mode=true"], args
ini = open(args[args.index("-f") + 1]).read()
assert args[args.index("-c") + 1] == "qesif_run" and args[args.index("-r") + 1] == "0"
result_dir = [a for a in args if a.startswith("--result-dir=")][0].split("=", 1)[1]
print(ini)
if "fail" in ini:
    sys.stderr.write("<!> Error: network 'Nope' not found\\n")
    sys.exit(1)
if "sleep" in ini:
    time.sleep(60)
src = {src!r}
for name in ("PureAloha2Fixture-#0.sca", "PureAloha2Fixture-#0.vec", "PureAloha2Fixture-#0.vci"):
    shutil.copy(os.path.join(src, name), os.path.join(result_dir, name))
"""


@pytest.fixture
def fake_opp(tmp_path, data_path):
    src = data_path("fixtures", "omnetpp", "aloha_purealoha2")
    exe = tmp_path / "bin" / "opp_run"
    exe.parent.mkdir()
    exe.write_text(FAKE.format(python=sys.executable, src=str(src)), encoding="utf-8")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    ini = tmp_path / "model.ini"
    ini.write_text(
        "[General]\nnetwork = Aloha\n\n[Config PureAloha2]\nAloha.numHosts = 20\n\n"
        "[Slotted]\nAloha.slotTime = 1s\n",
        encoding="utf-8",
    )
    return exe, ini, src


def launch_for(exe: Path, ini: Path, run_dir: Path, **kwargs) -> omnetpp.OmnetLaunch:
    base = {
        "executable": exe,
        "ini": ini,
        "config": "PureAloha2",
        "run_dir": run_dir,
        "seed": 42,
        "sim_time_limit_s": 300.0,
        "cpu_time_limit_s": 120.0,
        "ned_paths": [run_dir / "ned"],
        "libraries": [run_dir / "libmodel.so"],
        "overrides": {"**.bridge.endpoint": '"ipc:///tmp/qesif.sock"'},
    }
    base.update(kwargs)
    return omnetpp.OmnetLaunch(**base)


def test_argv_and_wrapper_ini(fake_opp, tmp_path):
    exe, ini, _ = fake_opp
    launch = launch_for(exe, ini, tmp_path / "run")
    run_ini = omnetpp.write_wrapper_ini(ini, launch.config, launch.run_dir, launch.ini_lines())
    argv = omnetpp.opp_run_argv(launch, run_ini)
    assert argv == [
        str(exe),
        "-u",
        "Cmdenv",
        "--cmdenv-express-mode=true",
        "-n",
        str(tmp_path / "run" / "ned"),
        "-l",
        str(tmp_path / "run" / "libmodel.so"),
        "-f",
        str(run_ini),
        "-c",
        "qesif_run",
        "-r",
        "0",
        f"--result-dir={tmp_path / 'run' / 'results'}",
    ]
    assert run_ini.read_text(encoding="utf-8").splitlines() == [
        f"include {ini.resolve()}",
        "",
        "[Config qesif_run]",
        "extends = PureAloha2",
        "seed-set = 42",
        "sim-time-limit = 300.0s",
        "cpu-time-limit = 120.0s",
        '**.bridge.endpoint = "ipc:///tmp/qesif.sock"',
    ]


def test_run_and_import_results(fake_opp, tmp_path):
    exe, ini, src = fake_opp
    launch = launch_for(exe, ini, tmp_path / "run")
    (launch.result_dir).mkdir(parents=True)
    (launch.result_dir / "old-#0.sca").write_text("stale", encoding="utf-8")  # removed before the run
    outcome = omnetpp.run_omnetpp(launch, timeout_s=60)
    assert outcome.returncode == 0 and outcome.wall_time_s > 0
    assert "seed-set = 42" in outcome.stdout.read_text(encoding="utf-8")
    assert [p.name for p in outcome.result_files] == ["PureAloha2Fixture-#0.sca", "PureAloha2Fixture-#0.vec"]
    table = omnetpp.import_results(outcome)
    expected = scave.read_result_files([src / "PureAloha2Fixture-#0.sca", src / "PureAloha2Fixture-#0.vec"])
    assert scave.write_csvr(table) == scave.write_csvr(expected)


def test_failure_quotes_stderr(fake_opp, tmp_path):
    exe, ini, _ = fake_opp
    launch = launch_for(exe, ini, tmp_path / "run", overrides={"# fail": ""})
    with pytest.raises(UserInputError, match=r"exited with 1 .*network 'Nope' not found"):
        omnetpp.run_omnetpp(launch, timeout_s=60)


def test_timeout_terminates(fake_opp, tmp_path):
    exe, ini, _ = fake_opp
    launch = launch_for(exe, ini, tmp_path / "run", overrides={"# sleep": ""})
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"exceeded 0\.5 s"):
        omnetpp.run_omnetpp(launch, timeout_s=0.5, grace_s=2)
    assert time.monotonic() - start < 10


def test_user_errors(fake_opp, tmp_path):
    exe, ini, _ = fake_opp
    with pytest.raises(UserInputError, match=r"has no \[Config Missing\]"):
        omnetpp.run_omnetpp(launch_for(exe, ini, tmp_path / "a", config="Missing"), timeout_s=5)
    bare = omnetpp.write_wrapper_ini(ini, "Slotted", tmp_path / "d", [])  # "[Name]" headings (OMNeT++ 6)
    assert "extends = Slotted" in bare.read_text(encoding="utf-8")
    with pytest.raises(UserInputError, match="ini file not found"):
        omnetpp.run_omnetpp(launch_for(exe, tmp_path / "none.ini", tmp_path / "b"), timeout_s=5)
    with pytest.raises(UserInputError, match="cannot start"):
        omnetpp.run_omnetpp(launch_for(tmp_path / "no-such-exe", ini, tmp_path / "c"), timeout_s=5)


def fake_omnetpp_tree(root: Path, configfilepath_prints: str | None) -> Path:
    """An OMNeT++ root as discovery sees it: include/omnetpp.h, Makefile.inc, bin/opp_run and, when asked,
    bin/opp_configfilepath printing the given path. Returns the bin folder."""
    (root / "include").mkdir(parents=True)
    (root / "include" / "omnetpp.h").write_text("", encoding="utf-8")
    (root / "Makefile.inc").write_text("", encoding="utf-8")
    scripts = {"opp_run": "exit 0"}
    if configfilepath_prints is not None:
        scripts["opp_configfilepath"] = f"echo {configfilepath_prints}"
    (root / "bin").mkdir()
    for name, body in scripts.items():
        exe = root / "bin" / name
        exe.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
        exe.chmod(0o755)
    return root / "bin"


def test_omnetpp_is_found_from_path_without_omnetpp_root(tmp_path, monkeypatch):
    """OMNeT++'s setenv puts bin/ on PATH but exports no OMNETPP_ROOT: the root comes from
    opp_configfilepath, else from the folder above opp_run, else from $OMNETPP_ROOT."""
    monkeypatch.delenv(omnetpp.OMNETPP_ROOT_ENV, raising=False)
    root = tmp_path / "omnetpp"
    monkeypatch.setenv("PATH", str(fake_omnetpp_tree(root, str(root / "Makefile.inc"))))
    assert omnetpp.find_omnetpp_root() == root and omnetpp.why_no_omnetpp() is None

    other = tmp_path / "other"  # opp_configfilepath naming a folder that is no OMNeT++: opp_run's parent
    monkeypatch.setenv("PATH", str(fake_omnetpp_tree(other, str(tmp_path / "nowhere" / "Makefile.inc"))))
    assert omnetpp.find_omnetpp_root() == other

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert omnetpp.find_omnetpp_root() is None
    assert omnetpp.why_no_omnetpp().startswith("opp_run is not on PATH (source OMNeT++ 6.1's setenv")
    monkeypatch.setenv(omnetpp.OMNETPP_ROOT_ENV, str(root))
    assert omnetpp.find_omnetpp_root() == root


def test_missing_model_pieces_are_named(tmp_path, monkeypatch):
    exe, paths = tmp_path / "qesif", tmp_path / "out" / "paths.env"
    monkeypatch.setattr(omnetpp, "MODEL_EXECUTABLE", exe)
    monkeypatch.setattr(omnetpp, "MODEL_PATHS", paths)
    assert f"{exe} is not built" in omnetpp.why_no_model()
    exe.write_text("", encoding="utf-8")
    paths.parent.mkdir()
    paths.write_text(f"INET_SRC={tmp_path / 'inet'}\n", encoding="utf-8")
    assert f"{paths} lacks OMNETPP_LIB" in omnetpp.why_no_model()
    paths.write_text(f"INET_SRC={tmp_path / 'inet'}\nOMNETPP_LIB={tmp_path}\n", encoding="utf-8")
    assert (
        f"INET's library folder {tmp_path / 'inet'} (recorded in {paths}) does not exist"
        in omnetpp.why_no_model()
    )
    with pytest.raises(UserInputError, match="make omnet INET_ROOT="):
        omnetpp.require_model()
    (tmp_path / "inet").mkdir()
    assert omnetpp.why_no_model() is None and omnetpp.find_model().inet_src == tmp_path / "inet"


def test_a_model_older_than_its_sources_is_named_stale(tmp_path, monkeypatch):
    exe, paths = tmp_path / "qesif", tmp_path / "out" / "paths.env"
    for name, value in (("MODEL_DIR", tmp_path), ("MODEL_EXECUTABLE", exe), ("MODEL_PATHS", paths)):
        monkeypatch.setattr(omnetpp, name, value)
    monkeypatch.setattr(omnetpp, "CLIENT_DIR", tmp_path / "client")
    source = tmp_path / "QesifDeviceApp.cc"
    source.write_text("// model source", encoding="utf-8")
    exe.write_text("", encoding="utf-8")
    paths.parent.mkdir()
    paths.write_text(f"INET_SRC={tmp_path}\nOMNETPP_LIB={tmp_path}\n", encoding="utf-8")
    os.utime(source, (exe.stat().st_mtime - 10,) * 2)
    assert omnetpp.why_no_model() is None
    os.utime(source, (exe.stat().st_mtime + 10,) * 2)
    assert f"{exe} is older than its source {source}" in omnetpp.why_no_model()
    assert omnetpp.find_model() is None


@pytest.mark.omnetpp
def test_real_opp_run_aloha(tmp_path):
    """OMNeT++'s aloha sample through the launcher and the pure-Python importer (needs OMNeT++ found from
    PATH or $OMNETPP_ROOT, with the sample built in release mode, as tools/build_simulators.sh does)."""
    missing = omnetpp.why_no_omnetpp()
    if missing:
        pytest.skip(missing)
    aloha = omnetpp.find_omnetpp_root() / "samples" / "aloha"
    if not (aloha / "aloha").is_file():
        pytest.skip(
            f"OMNeT++'s aloha sample is not built: no {aloha / 'aloha'} "
            f"(cd {aloha} && opp_makemake -f --deep && make MODE=release)"
        )
    launch = omnetpp.OmnetLaunch(
        executable=aloha / "aloha",
        ini=aloha / "omnetpp.ini",
        config="PureAloha2",
        run_dir=tmp_path,
        seed=0,
        sim_time_limit_s=60.0,
        ned_paths=[aloha],
    )
    table = omnetpp.import_results(omnetpp.run_omnetpp(launch, timeout_s=300))
    scalars = table[table["type"] == "scalar"]
    assert "channelUtilization:last" in set(scalars["name"])
