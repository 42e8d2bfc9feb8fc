import os
import sys
import time
from pathlib import Path

import pytest

from bridge.cosim.supervise import PeerProcess


def _live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` still running (dead ones awaiting their reaper are not counted)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry))
    return members


def test_stop_ends_the_whole_process_group_and_reaps_the_leader(tmp_path):
    peer = PeerProcess(["/bin/sh", "-c", "sleep 60 & echo started; exec sleep 60"], cwd=tmp_path)
    peer.start()
    deadline = time.monotonic() + 10
    while "started" not in peer.log_tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not peer.exited()
    started = time.monotonic()
    peer.stop(grace_s=2)
    assert time.monotonic() - started < 3
    assert peer.returncode == -15  # SIGTERM was enough
    deadline = time.monotonic() + 5
    while _live_members(peer.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _live_members(peer.pid) == []  # the background sleep of the group got SIGTERM too
    with pytest.raises(ChildProcessError):
        os.waitpid(peer.pid, os.WNOHANG)
    peer.stop()  # idempotent


def test_a_peer_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path):
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
        "time.sleep(60)"
    )
    peer = PeerProcess([sys.executable, "-c", script], cwd=tmp_path)
    peer.start()
    deadline = time.monotonic() + 10
    while "up" not in peer.log_tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    peer.stop(grace_s=0.5)
    assert peer.returncode == -9


def test_a_forked_function_peer_logs_its_failure(tmp_path):
    def failing() -> int:
        print("working", flush=True)
        raise RuntimeError("backend broke")

    peer = PeerProcess(cwd=tmp_path, target=failing)
    peer.start()
    assert peer.wait(10) == 1
    assert "working" in peer.log_tail() and "RuntimeError: backend broke" in peer.log_tail()
    peer.stop()
    assert peer.returncode == 1
    with pytest.raises(ChildProcessError):
        os.waitpid(peer.pid, os.WNOHANG)


FORKING_PEER = """
import os, sys, time
child = os.fork()
if child == 0:  # the orphan-to-be: stays in the peer's process group
    with open("child.pid.tmp", "w") as f:  # its own file: the peer's log interleaves two writers
        f.write(str(os.getpid()))
    os.rename("child.pid.tmp", "child.pid")
    time.sleep(120)
    os._exit(0)
print("peer", os.getpid(), flush=True)
time.sleep(float(sys.argv[1]))
sys.exit(int(sys.argv[2]))
"""


def _child_pid(peer: PeerProcess, cwd: Path) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (cwd / "child.pid").exists():
            return int((cwd / "child.pid").read_text())
        time.sleep(0.02)
    raise AssertionError(f"the peer's child did not start: {peer.log_tail()!r}")


@pytest.mark.parametrize(("lives_s", "code"), [(0.0, 3), (0.3, 0)])
def test_children_of_a_peer_that_already_exited_are_ended(tmp_path, lives_s, code):
    script = tmp_path / "forking_peer.py"
    script.write_text(FORKING_PEER)
    peer = PeerProcess([sys.executable, str(script), str(lives_s), str(code)], cwd=tmp_path)
    peer.start()
    child = _child_pid(peer, tmp_path)
    assert peer.wait(10) == code  # the peer is gone, its child still runs in its group
    assert _live_members(peer.pid) == [child]
    peer.stop(grace_s=2)
    assert _live_members(peer.pid) == []
    assert (
        not os.path.exists(f"/proc/{child}") or "Z" in open(f"/proc/{child}/stat").read().rsplit(")")[1][:3]
    )
    assert peer.returncode == code
    with pytest.raises(ChildProcessError):
        os.waitpid(peer.pid, os.WNOHANG)


def test_a_peer_killed_while_its_child_runs_leaves_no_orphan(tmp_path):
    script = tmp_path / "forking_peer.py"
    script.write_text(FORKING_PEER)
    peer = PeerProcess([sys.executable, str(script), "60", "0"], cwd=tmp_path)
    peer.start()
    child = _child_pid(peer, tmp_path)
    os.kill(peer.pid, 9)  # the peer dies first, from outside
    assert peer.wait(10) == -9
    assert child in _live_members(peer.pid)
    peer.stop(grace_s=2)
    assert _live_members(peer.pid) == []


def test_argv_must_be_a_list_not_a_command_line(tmp_path):
    with pytest.raises(ValueError, match="argv"):
        PeerProcess("sleep 1", cwd=tmp_path)
    with pytest.raises(ValueError, match="either"):
        PeerProcess(["true"], cwd=tmp_path, target=lambda: 0)


ESCAPING_PEER = """
import os, sys, time
child = os.fork()
if child == 0:  # leaves the peer's process group and session, as a daemon would
    os.setsid()
    with open("child.pid.tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename("child.pid.tmp", "child.pid")
    time.sleep(120)
    os._exit(0)
time.sleep(float(sys.argv[1]))
"""


@pytest.mark.parametrize("lives_s", [0.0, 60.0])
def test_children_that_left_the_peers_process_group_are_ended_too(tmp_path, lives_s):
    script = tmp_path / "escaping_peer.py"
    script.write_text(ESCAPING_PEER)
    peer = PeerProcess([sys.executable, str(script), str(lives_s)], cwd=tmp_path)
    peer.start()
    child = _child_pid(peer, tmp_path)
    assert child not in _live_members(peer.pid)  # out of the group's reach
    if lives_s == 0.0:
        peer.wait(10)
    peer.stop(grace_s=2)
    deadline = time.monotonic() + 5
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)


def _gone(pid: int) -> bool:
    """Not running any more (absent, or a zombie awaiting its reaper)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True
