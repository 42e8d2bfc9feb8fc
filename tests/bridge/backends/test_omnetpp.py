"""OMNeT++ launcher mechanics with a stand-in executable, and a real run when opp_run is installed."""

from __future__ import annotations

import os
import shutil
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
def fake_opp(tmp_path, shared_path):
    src = shared_path("fixtures", "omnetpp", "aloha_purealoha2")
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


@pytest.mark.omnetpp
def test_real_opp_run_aloha(tmp_path):
    """OMNeT++'s aloha sample through the launcher and the pure-Python importer (needs $OMNETPP_ROOT with
    the samples built, as after OMNeT++'s own 'make')."""
    root = os.environ.get("OMNETPP_ROOT")
    aloha = Path(root, "samples", "aloha") if root else None
    if aloha is None or not (aloha / "aloha").exists() or shutil.which("opp_run") is None:
        pytest.skip("OMNeT++ with the built aloha sample not found (source setenv; OMNETPP_ROOT)")
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
