"""Supervision of a peer process (a network backend or simulator talking to the orchestrator).

Lessons from ns3-gym and veins-gym: start the peer from an argv list (no shell), or fork it, in its own
process group with its output in a log file; never wait on it without a timeout; end it with terminate, a
grace period, then kill, of the whole group (also when the peer itself has already exited and only its
children remain), and reap it so no zombie remains; end every peer still running when the interpreter exits
(atexit). A failed peer is reported with the tail of its log.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from qesif_core.errors import UserInputError

LOG_TAIL_LINES = 40
TERMINATE_GRACE_S = 5.0
#: How long to wait for a killed group's members to disappear.
KILL_WAIT_S = 5.0
#: Environment variable marking a program peer's processes (value: one random token per peer).
PEER_MARKER = "QESIF_PEER_PROCESS"

log = logging.getLogger(__name__)

_LIVE: weakref.WeakSet[PeerProcess] = weakref.WeakSet()


class PeerFailure(RuntimeError):
    """The peer crashed, hung or broke the protocol; ``log_tail`` holds the end of its log."""

    def __init__(self, reason: str, log_tail: str, pid: int | None = None) -> None:
        super().__init__(f"{reason}\n--- peer log tail ---\n{log_tail}" if log_tail else reason)
        self.reason = reason
        self.log_tail = log_tail
        self.pid = pid


def _exit_status(pid: int) -> int | None:
    """The exit code of child ``pid`` (negative: killed by that signal) once it has exited, else None; the
    child is NOT reaped (WNOWAIT), so its pid, and with it its process group id, stays reserved."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return None
    if info is None or info.si_pid == 0:
        return None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


def _running(pid: int) -> list[str] | None:
    """The /proc stat fields after the command name of a running process; None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields


def _live_group_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` still running (zombies awaiting their reaper are not counted)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _running(int(entry))
            if fields is not None and int(fields[2]) == pgid:
                members.append(int(entry))
    return members


def _carriers_of(marker: bytes) -> list[int]:
    """Running processes whose environment holds ``marker`` (``NAME=value``): a program peer's whole tree,
    including children that left its process group (``setsid``); not those that exec'd a clean env."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as handle:
                    environ = handle.read()
            except OSError:
                continue
            if marker in environ.split(b"\0") and _running(int(entry)) is not None:
                found.append(int(entry))
    return found


def _run_forked(target: Callable[[], int], cwd: Path, log_path: Path) -> None:
    """In the forked child: own session, output to the log, run ``target``, leave without atexit hooks."""
    code = 1
    try:
        os.setsid()
        os.chdir(cwd)
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        root = logging.getLogger()
        for handler in list(root.handlers):  # the parent's handlers (e.g. a batch's log capture)
            root.removeHandler(handler)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        code = int(target() or 0)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


class PeerProcess:
    """One supervised peer: ``start``, ``exited``, ``wait``, ``stop`` (idempotent), ``log_tail``.

    The peer is a program (``argv``: OMNeT++, the C++ client, ``python -m ...``) or a Python function run in
    a forked child (``target``: the built-in backend, which then starts without re-importing anything);
    ``env`` replaces the environment of a program (OMNeT++ needs its library folders on LD_LIBRARY_PATH).

    The peer leads its own process group. It is not reaped before :meth:`stop`: until then its pid, and so
    the group id, cannot be taken by another process, and :meth:`stop` signals the whole group whatever
    exited first, the peer or the children it started (a child that left the group, e.g. by ``setsid``, is
    out of reach).
    """

    def __init__(
        self,
        argv: Sequence[str] | None = None,
        *,
        cwd: str | Path,
        log_path: str | Path | None = None,
        target: Callable[[], int] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if (argv is None) == (target is None):
            raise ValueError("give either argv (a program) or target (a function to fork)")
        if argv is not None and (isinstance(argv, str) or not argv):
            raise ValueError("argv must be a non-empty list of arguments (no shell command lines)")
        self.argv = [str(a) for a in argv] if argv is not None else None
        self.target = target
        self.env = dict(env) if env is not None else None
        self.cwd = Path(cwd)
        self.log_path = Path(log_path) if log_path else self.cwd / "peer.log"
        self.pid: int | None = None
        self.returncode: int | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._reaped = False
        # Marks a program peer's processes, so stop() finds its children that left the group.
        self._marker_env = {PEER_MARKER: uuid.uuid4().hex}

    def start(self) -> None:
        if self.target is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _run_forked(self.target, self.cwd, self.log_path)
            self.pid = pid
        else:
            with open(self.log_path, "ab") as log:
                try:
                    # Kept referenced until stop() has reaped the peer itself (os.waitpid), so Popen never
                    # does.
                    self._popen = subprocess.Popen(
                        self.argv,
                        cwd=self.cwd,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env={**(self.env if self.env is not None else os.environ), **self._marker_env},
                        start_new_session=True,  # own process group: stop() reaches its children too
                    )
                except OSError as exc:
                    raise UserInputError(
                        f"peer program {self.argv[0]!r}: cannot start it ({exc.strerror or exc})"
                    ) from None
            self.pid = self._popen.pid
        _LIVE.add(self)

    def exited(self) -> bool:
        if self.pid is None:
            return False
        if self.returncode is None:
            self.returncode = _exit_status(self.pid)
        return self.returncode is not None

    def wait(self, timeout_s: float) -> int | None:
        """Wait at most ``timeout_s`` for the peer to exit; its return code, or None if still running."""
        if self.pid is None:
            return None
        deadline = time.monotonic() + timeout_s
        while not self.exited():
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)
        return self.returncode

    def stop(self, grace_s: float = TERMINATE_GRACE_S) -> None:
        """Terminate the peer's process group, wait up to ``grace_s`` for every member to end, kill what
        is left, then reap the peer. Done whether the peer itself is still running or not."""
        if self.pid is None or self._reaped:
            return
        group = self.pid
        if _live_group_members(group):
            self._signal_group(signal.SIGTERM)
            if not self._group_ends_within(grace_s):
                self._signal_group(signal.SIGKILL)
                self._group_ends_within(KILL_WAIT_S)
        _, status = os.waitpid(self.pid, 0)
        self.returncode = os.waitstatus_to_exitcode(status)
        self._reaped = True
        if self._popen is not None:
            self._popen.returncode = self.returncode
            self._end_strays(grace_s)
        _LIVE.discard(self)

    def _end_strays(self, grace_s: float) -> None:
        """End the program peer's processes that left its process group (found by its environment marker):
        SIGTERM, ``grace_s``, SIGKILL."""
        marker = "=".join(next(iter(self._marker_env.items()))).encode()
        strays = _carriers_of(marker)
        if not strays:
            return
        log.warning(
            "peer %s left %d process(es) outside its process group: ending them", self.pid, len(strays)
        )
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, KILL_WAIT_S)):
            for pid in strays:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait_s
            while strays and time.monotonic() < deadline:
                time.sleep(0.02)
                strays = [pid for pid in strays if _running(pid) is not None]
            if not strays:
                return

    def _group_ends_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while _live_group_members(self.pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _signal_group(self, sig: signal.Signals) -> None:
        """Signal the group; its leader is unreaped, so the group id cannot name another group."""
        assert self.pid is not None
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return "".join(collections.deque(handle, maxlen=lines)).rstrip()
        except FileNotFoundError:
            return ""


@atexit.register
def _stop_all() -> None:
    for peer in list(_LIVE):
        peer.stop(grace_s=1.0)
