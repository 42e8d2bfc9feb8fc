"""Launching OMNeT++ simulations (opp_run, a model executable, INET's ``inet``) and importing their results.

Settings reach the simulation through a generated wrapper ini, not through per-object command-line options:
OMNeT++ sorts command-line per-object options before matching them, while in an ini section the first
matching line wins (see ``../shared/fixtures/README.md``). The wrapper ``include``s the user's ini and
derives ``[Config qesif_run]`` from the chosen config, with ``seed-set``, ``sim-time-limit``,
``cpu-time-limit`` and the caller's overrides (for example the QESIF bridge module's endpoint, once
``omnet_models/`` defines that parameter); a derived section is searched before its base, so these win.

The process runs with an argument list (no shell) in the run directory and its own process group, stdout and
stderr going to files; on timeout it gets SIGTERM, then SIGKILL after a grace period. Results are read with
the pure-Python reader :func:`bridge.results.scave.read_result_files` (no OMNeT++ needed afterwards).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bridge.results import scave
from qesif_core.errors import UserInputError

RUN_CONFIG = "qesif_run"


def find_opp_run() -> Path | None:
    """``opp_run`` on PATH (after sourcing OMNeT++'s ``setenv``), or None."""
    found = shutil.which("opp_run")
    return Path(found) if found else None


def write_wrapper_ini(template: Path, config: str, run_dir: Path, lines: Sequence[str]) -> Path:
    """``run_dir/qesif_run.ini``: includes ``template`` and derives ``[Config qesif_run]`` from ``config``
    with ``lines`` (ini lines such as ``seed-set = 3`` or ``**.app.endpoint = "..."``) in front."""
    template = template.resolve()
    if not template.is_file():
        raise UserInputError(f"ini file not found: {template}")
    text = template.read_text(encoding="utf-8")
    # OMNeT++ 6 accepts both "[Config Name]" and "[Name]" section headings
    if config != "General" and not re.search(rf"^\[(Config )?{re.escape(config)}\]\s*$", text, re.M):
        raise UserInputError(f"ini {template} has no [Config {config}]")
    body = [f"include {template}", "", f"[Config {RUN_CONFIG}]"]
    if config != "General":
        body.append(f"extends = {config}")
    body.extend(lines)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"{RUN_CONFIG}.ini"
    path.write_text("\n".join(body) + "\n", encoding="utf-8")
    return path


def run_supervised(
    argv: Sequence[str],
    *,
    cwd: Path,
    stdout_path: Path,
    stderr_path: Path,
    timeout_s: float,
    grace_s: float = 10.0,
) -> tuple[int, float]:
    """Run ``argv`` in ``cwd`` with output to files; (return code, wall seconds).

    On timeout: SIGTERM to the child's process group, wait ``grace_s``, SIGKILL, then ``TimeoutError``.
    """
    start = time.monotonic()
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        try:
            proc = subprocess.Popen(list(argv), cwd=cwd, stdout=out, stderr=err, start_new_session=True)
        except OSError as exc:
            raise UserInputError(f"cannot start {argv[0]}: {exc.strerror}") from None
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop(proc, grace_s)
            raise TimeoutError(
                f"{Path(argv[0]).name} in {cwd} exceeded {timeout_s} s and was stopped"
            ) from None
    return returncode, time.monotonic() - start


def _stop(proc: subprocess.Popen, grace_s: float) -> None:
    """terminate -> wait -> kill, addressed to the child's own process group only."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def tail(path: Path, chars: int = 800) -> str:
    """The end of a text file, for error messages."""
    return path.read_text(encoding="utf-8", errors="replace")[-chars:].strip()


@dataclass(frozen=True)
class OmnetLaunch:
    """One OMNeT++ run: ``executable`` (opp_run, a model binary or INET's ``inet`` launcher) runs ``config``
    of ``ini``; ``libraries`` are passed with ``-l`` (opp_run needs the model's shared libraries)."""

    executable: Path
    ini: Path
    config: str
    run_dir: Path
    seed: int
    sim_time_limit_s: float
    cpu_time_limit_s: float | None = None
    ned_paths: Sequence[Path] = ()
    libraries: Sequence[Path] = ()
    overrides: Mapping[str, str] = field(default_factory=dict)

    @property
    def result_dir(self) -> Path:
        return self.run_dir / "results"

    def ini_lines(self) -> list[str]:
        lines = [f"seed-set = {int(self.seed)}", f"sim-time-limit = {self.sim_time_limit_s}s"]
        if self.cpu_time_limit_s is not None:
            lines.append(f"cpu-time-limit = {self.cpu_time_limit_s}s")
        lines.extend(f"{key} = {value}" for key, value in self.overrides.items())
        return lines


def opp_run_argv(launch: OmnetLaunch, run_ini: Path) -> list[str]:
    """Argument list: Cmdenv in express mode, NED path, libraries, the wrapper ini, run 0 of qesif_run."""
    argv = [str(launch.executable), "-u", "Cmdenv", "--cmdenv-express-mode=true"]
    ned = [str(p) for p in launch.ned_paths]
    if ned:
        argv += ["-n", os.pathsep.join(ned)]
    for lib in launch.libraries:
        argv += ["-l", str(lib)]
    argv += ["-f", str(run_ini), "-c", RUN_CONFIG, "-r", "0", f"--result-dir={launch.result_dir}"]
    return argv


@dataclass(frozen=True)
class OmnetOutcome:
    returncode: int
    wall_time_s: float
    stdout: Path
    stderr: Path
    result_files: list[Path]


def run_omnetpp(launch: OmnetLaunch, *, timeout_s: float, grace_s: float = 10.0) -> OmnetOutcome:
    """Run one simulation and wait. A non-zero exit raises :class:`UserInputError` quoting stderr; a
    timeout raises ``TimeoutError``. Result files of an earlier run in the same directory are removed."""
    run_ini = write_wrapper_ini(launch.ini, launch.config, launch.run_dir, launch.ini_lines())
    launch.result_dir.mkdir(parents=True, exist_ok=True)
    for stale in [
        *launch.result_dir.glob("*.sca"),
        *launch.result_dir.glob("*.vec"),
        *launch.result_dir.glob("*.vci"),
    ]:
        stale.unlink()
    stdout_path, stderr_path = launch.run_dir / "stdout.txt", launch.run_dir / "stderr.txt"
    returncode, wall = run_supervised(
        opp_run_argv(launch, run_ini),
        cwd=launch.run_dir,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
        timeout_s=timeout_s,
        grace_s=grace_s,
    )
    if returncode != 0:
        raise UserInputError(
            f"{launch.executable.name} exited with {returncode} (config {launch.config}, {launch.run_dir}): "
            f"{tail(stderr_path) or tail(stdout_path)}"
        )
    files = sorted([*launch.result_dir.glob("*.sca"), *launch.result_dir.glob("*.vec")])
    return OmnetOutcome(returncode, wall, stdout_path, stderr_path, files)


def import_results(outcome: OmnetOutcome) -> pd.DataFrame:
    """The run's .sca and .vec files as one CSV-R table (``bridge.results.scave`` layout)."""
    if not outcome.result_files:
        raise UserInputError(f"the run wrote no .sca/.vec files (see {outcome.stdout})")
    return scave.read_result_files(outcome.result_files)
