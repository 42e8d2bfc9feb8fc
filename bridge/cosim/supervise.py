"""Supervision of a peer process (a network backend or simulator talking to the orchestrator).

Lessons from ns3-gym and veins-gym: start the peer from an argv list (no shell), or fork it, in its own
process group with its output in a log file; never wait on it without a timeout; end it with terminate, a
grace period, then kill, of the whole group, and reap it so no zombie remains; end every peer still running
when the interpreter exits (atexit). A failed peer is reported with the tail of its log.
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
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

LOG_TAIL_LINES = 40
TERMINATE_GRACE_S = 5.0

_LIVE: weakref.WeakSet[PeerProcess] = weakref.WeakSet()


class PeerFailure(RuntimeError):
    """The peer crashed, hung or broke the protocol; ``log_tail`` holds the end of its log."""

    def __init__(self, reason: str, log_tail: str, pid: int | None = None) -> None:
        super().__init__(f"{reason}\n--- peer log tail ---\n{log_tail}" if log_tail else reason)
        self.reason = reason
        self.log_tail = log_tail
        self.pid = pid


class _ForkedChild:
    """The ``poll``/``wait`` part of ``subprocess.Popen`` for a child made with ``os.fork``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.01)
        return self.returncode


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
        self._proc: subprocess.Popen[bytes] | _ForkedChild | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    def start(self) -> None:
        if self.target is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _run_forked(self.target, self.cwd, self.log_path)
            self._proc = _ForkedChild(pid)
            _LIVE.add(self)
            return
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # its own process group, so stop() reaches its children too
            )
        _LIVE.add(self)

    def exited(self) -> bool:
        return self._proc is not None and self._proc.poll() is not None

    def wait(self, timeout_s: float) -> int | None:
        """Wait at most ``timeout_s`` for the peer to exit; its return code, or None if still running."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace_s: float = TERMINATE_GRACE_S) -> None:
        """Terminate the peer's process group, wait ``grace_s``, kill it, and reap the peer."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                proc.wait()
        _LIVE.discard(self)

    def _signal_group(self, sig: signal.Signals) -> None:
        """Signal the group while its leader is unreaped (so the group id cannot name another group)."""
        assert self._proc is not None
        try:
            os.killpg(self._proc.pid, sig)
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
