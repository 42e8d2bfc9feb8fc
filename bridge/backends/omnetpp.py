"""Launching OMNeT++ simulations (opp_run, a model executable, INET's ``inet``) and importing their results,
and the OMNeT++/INET backend of a co-simulation run (:func:`cosim_peer`).

Settings reach the simulation through a generated wrapper ini, not through per-object command-line options:
OMNeT++ sorts command-line per-object options before matching them, while in an ini section the first
matching line wins (see ``tests/fixtures/README.md``). The wrapper ``include``s the user's ini and
derives ``[Config qesif_run]`` from the chosen config, with ``seed-set``, ``sim-time-limit``,
``cpu-time-limit`` and the caller's overrides (for example the QESIF bridge module's endpoint, once
``omnet_models/`` defines that parameter); a derived section is searched before its base, so these win.

The process runs with an argument list (no shell) in the run directory and its own process group, stdout and
stderr going to files; on timeout it gets SIGTERM, then SIGKILL after a grace period. Results are read with
the pure-Python reader :func:`bridge.results.scave.read_result_files` (no OMNeT++ needed afterwards).

Co-simulation: ``qesif run ... --backend omnetpp`` runs the QESIF model of ``omnet_models/qesif`` (built by
``make omnet``) as the orchestrator's peer. The run's offered traffic is drawn in Python
(:class:`bridge.backends.workload.Workload`, as the built-in backend draws it) and written as a schedule
file; the wrapper ini sets the run's sizes, positions, PAN channels, reliability settings, the cost model's
device and gateway figures and the bridge module's endpoint. The model's QesifBridge module then speaks the
protocol of ``docs/protocol.md`` through the C++ client library, and INET carries every frame.
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
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bridge.backends.workload import Workload, run_workload, write_schedule
from bridge.cosim.runsetup import run_streams
from bridge.cosim.supervise import PeerProcess
from bridge.results import scave
from qesif_core.costs import CostModel, load_cost_model
from qesif_core.errors import UserInputError
from qesif_core.network.wifi import ESP32_RADIO_A

if TYPE_CHECKING:
    from bridge.scenario import NetworkSpec, RunSpec

RUN_CONFIG = "qesif_run"


OMNETPP_ROOT_ENV = "OMNETPP_ROOT"
#: Where to get OMNeT++, quoted in every "not found" message.
OMNETPP_HINT = (
    "source OMNeT++ 6.1's setenv, or the env.sh written by tools/build_simulators.sh (docs/simulators.md)"
)


def find_opp_run() -> Path | None:
    """``opp_run`` on PATH (after sourcing OMNeT++'s ``setenv``), or None."""
    found = shutil.which("opp_run")
    return Path(found) if found else None


def _is_omnetpp_root(folder: Path) -> bool:
    return (folder / "include" / "omnetpp.h").is_file() and (folder / "Makefile.inc").is_file()


def find_omnetpp_root() -> Path | None:
    """The root of the OMNeT++ the launcher would run: the folder of ``opp_configfilepath``'s Makefile.inc,
    else the parent of the ``bin`` folder holding ``opp_run`` (both on PATH once ``setenv`` is sourced, which
    does not export ``OMNETPP_ROOT``), else ``$OMNETPP_ROOT``; None when none of them is a built OMNeT++."""
    candidates: list[Path] = []
    configfilepath = shutil.which("opp_configfilepath")
    if configfilepath:
        try:
            out = subprocess.run(
                [configfilepath], capture_output=True, text=True, timeout=30, check=True
            ).stdout.strip()
            candidates.append(Path(out).parent)
        except (OSError, subprocess.SubprocessError):
            pass
    opp_run = find_opp_run()
    if opp_run:
        candidates.append(opp_run.resolve().parent.parent)
    if os.environ.get(OMNETPP_ROOT_ENV):
        candidates.append(Path(os.environ[OMNETPP_ROOT_ENV]))
    return next((c for c in candidates if _is_omnetpp_root(c)), None)


def why_no_omnetpp() -> str | None:
    """None when OMNeT++ is usable (``opp_run`` on PATH, its root found), else what is missing."""
    if find_opp_run() is None:
        return f"opp_run is not on PATH ({OMNETPP_HINT})"
    if find_omnetpp_root() is None:
        return (
            "OMNeT++'s root folder not found: neither opp_configfilepath, the folder above opp_run nor "
            f"${OMNETPP_ROOT_ENV} holds include/omnetpp.h and Makefile.inc ({OMNETPP_HINT})"
        )
    return None


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


def run_logged(
    argv: Sequence[str], *, run_dir: Path, label: str, timeout_s: float, grace_s: float = 10.0
) -> tuple[float, Path, Path]:
    """Run ``argv`` in ``run_dir`` with its output in ``stdout.txt`` / ``stderr.txt`` there; (wall seconds,
    stdout path, stderr path). A non-zero exit raises :class:`UserInputError` quoting the end of stderr
    (or stdout), naming the program as ``label``. On timeout: SIGTERM to the child's process group, wait
    ``grace_s``, SIGKILL, then ``TimeoutError``."""
    stdout_path, stderr_path = run_dir / "stdout.txt", run_dir / "stderr.txt"
    start = time.monotonic()
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        try:
            proc = subprocess.Popen(list(argv), cwd=run_dir, stdout=out, stderr=err, start_new_session=True)
        except OSError as exc:
            raise UserInputError(f"cannot start {argv[0]}: {exc.strerror}") from None
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop(proc, grace_s)
            raise TimeoutError(
                f"{Path(argv[0]).name} in {run_dir} exceeded {timeout_s} s and was stopped"
            ) from None
    if returncode != 0:
        raise UserInputError(
            f"{label} exited with {returncode} ({run_dir}): {tail(stderr_path) or tail(stdout_path)}"
        )
    return time.monotonic() - start, stdout_path, stderr_path


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
    wall, stdout_path, stderr_path = run_logged(
        opp_run_argv(launch, run_ini),
        run_dir=launch.run_dir,
        label=f"{launch.executable.name} (config {launch.config})",
        timeout_s=timeout_s,
        grace_s=grace_s,
    )
    files = sorted([*launch.result_dir.glob("*.sca"), *launch.result_dir.glob("*.vec")])
    return OmnetOutcome(0, wall, stdout_path, stderr_path, files)


def import_results(outcome: OmnetOutcome) -> pd.DataFrame:
    """The run's .sca and .vec files as one CSV-R table (``bridge.results.scave`` layout)."""
    if not outcome.result_files:
        raise UserInputError(f"the run wrote no .sca/.vec files (see {outcome.stdout})")
    return scave.read_result_files(outcome.result_files)


# ----------------------------------------------------------------------------------- co-simulation backend
MODEL_DIR = Path(__file__).resolve().parents[2] / "omnet_models" / "qesif"
MODEL_INI = MODEL_DIR / "omnetpp.ini"
#: Written by ``make omnet``: the model executable, and the INET and OMNeT++ library folders it links.
MODEL_EXECUTABLE = MODEL_DIR / "qesif"
MODEL_PATHS = MODEL_DIR / "out" / "paths.env"
#: The C++ bridge client library the model links (``make cpp-client``).
CLIENT_DIR = MODEL_DIR.parent / "client"
#: Placement: PAN g's gateway at (g * PAN_SPACING_M, 0), its devices on a ring around it; PAN g on
#: 802.15.4 channel 11 + g (2405 + 5 g MHz).
PAN_SPACING_M = 2000.0
DEVICE_RING_M = (5.0, 15.0)
PAN_CHANNELS = 16


@dataclass(frozen=True)
class OmnetModel:
    """The built QESIF model: executable plus the library folders (INET, OMNeT++) it needs at run time."""

    executable: Path
    inet_src: Path
    omnetpp_lib: Path

    def ned_paths(self) -> list[Path]:
        return [MODEL_DIR, self.inet_src]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        libs = [str(self.inet_src), str(self.omnetpp_lib), env.get("LD_LIBRARY_PATH", "")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libs if p)
        return env


def _newer_source(built_at: float) -> Path | None:
    """A C++ source of the model or of its bridge client changed after the model was built, or None."""
    patterns = ((MODEL_DIR, ("*.cc", "*.h", "*.msg")), (CLIENT_DIR, ("*.cpp", "*.hpp")))
    for folder, globs in patterns:
        for pattern in globs:
            for source in sorted(folder.rglob(pattern) if folder == CLIENT_DIR else folder.glob(pattern)):
                if source.stat().st_mtime > built_at:
                    return source
    return None


def _load_model() -> tuple[OmnetModel | None, str]:
    """(the model built by ``make omnet``, "") or (None, the missing piece)."""
    for path in (MODEL_EXECUTABLE, MODEL_PATHS):
        if not path.is_file():
            return None, f"{path} is not built"
    paths = dict(
        line.split("=", 1) for line in MODEL_PATHS.read_text(encoding="utf-8").splitlines() if "=" in line
    )
    missing = [key for key in ("INET_SRC", "OMNETPP_LIB") if key not in paths]
    if missing:
        return None, f"{MODEL_PATHS} lacks {', '.join(missing)}"
    stale = _newer_source(MODEL_EXECUTABLE.stat().st_mtime)
    if stale is not None:
        return None, f"{MODEL_EXECUTABLE} is older than its source {stale} (rebuild it)"
    model = OmnetModel(MODEL_EXECUTABLE, Path(paths["INET_SRC"]), Path(paths["OMNETPP_LIB"]))
    folders = (("INET's library folder", model.inet_src), ("OMNeT++'s lib folder", model.omnetpp_lib))
    for what, folder in folders:
        if not folder.is_dir():
            return None, f"{what} {folder} (recorded in {MODEL_PATHS}) does not exist"
    return model, ""


def find_model() -> OmnetModel | None:
    """The model built by ``make omnet``, or None."""
    return _load_model()[0]


def why_no_model() -> str | None:
    """None when the model is built, else what is missing, with how to build it."""
    model, missing = _load_model()
    if model is not None:
        return None
    return (
        f"the QESIF OMNeT++ model is not usable: {missing}. With OMNeT++ 6.1 (its setenv sourced) and "
        "INET 4.5 built, run `make omnet INET_ROOT=/path/to/inet4.5` (docs/simulators.md)"
    )


def require_model() -> OmnetModel:
    model, _ = _load_model()
    if model is None:
        raise UserInputError(f"backend 'omnetpp': {why_no_model()}")
    return model


def _quantity(value: float, unit: str) -> str:
    return f"{float(value)!r}{unit}"


def cosim_ini_lines(
    network: NetworkSpec,
    workload: Workload,
    endpoint: str,
    schedule: Path,
    timeout_s: float,
    *,
    rounds: int,
    costs: CostModel,
    session_rounds: int,
) -> dict[str, str]:
    """The run's settings as ini lines (key -> value) for the model's [General] config: its ``network``
    section, offered traffic, rounds, cost model and ``keys.session_rounds``."""
    from bridge.backends.builtin import network_params

    access = network.access
    if access not in ("802.15.4", "wifi"):
        raise UserInputError(f"network.access: the OMNeT++ backend models 802.15.4 and wifi; got {access!r}")
    params = network_params(costs, network)
    power, sizes = params.power, params.sizes
    topology = workload.topology
    n_dev, n_gw = workload.n_devices, workload.n_gateways
    lines = {
        "*.numDevices": str(n_dev),
        "*.numGateways": str(n_gw),
        "*.bridge.endpoint": f'"{endpoint}"',
        "*.bridge.timeout": _quantity(timeout_s, "s"),
        "*.bridge.trafficFile": f'"{schedule}"',
        "*.bridge.rounds": str(rounds),
        "*.bridge.roundDuration": _quantity(workload.round_duration_s, "s"),
        "*.bridge.sessionRounds": str(session_rounds),
        "*.device[*].app[0].queueLimit": str(params.device_queue_limit),
        "*.device[*].app[0].mqttQos": str(params.mqtt_qos),
        "*.device[*].app[0].coapConfirmable": str(params.coap_confirmable).lower(),
        "*.device[*].app[0].stackSeconds": _quantity(params.device_stack_cycles / power.cpu_hz, "s"),
        "*.device[*].app[0].mqttRetry": _quantity(params.mqtt_retry_s, "s"),
        "*.device[*].app[0].mqttMaxRetries": str(params.mqtt_max_retries),
        "*.device[*].app[0].coapAckTimeout": _quantity(params.coap_ack_timeout_s, "s"),
        "*.device[*].app[0].coapAckRandomFactor": repr(params.coap_ack_random_factor),
        "*.device[*].app[0].coapMaxRetransmit": str(params.coap_max_retransmit),
        "*.device[*].app[0].dtlsInitialTimeout": _quantity(params.dtls_initial_timeout_s, "s"),
        "*.device[*].app[0].dtlsMaxRetransmit": str(params.dtls_max_retransmit),
        "*.device[*].app[0].mqttPublishOverhead": f"{sizes.mqtt_publish_overhead}B",
        "*.device[*].app[0].mqttConnect": f"{sizes.mqtt_connect}B",
        "*.device[*].app[0].mqttConnack": f"{sizes.mqtt_connack}B",
        "*.device[*].app[0].mqttPuback": f"{sizes.mqtt_puback}B",
        "*.device[*].app[0].coapRequestOverhead": f"{sizes.coap_request_overhead}B",
        "*.device[*].app[0].coapAck": f"{sizes.coap_ack}B",
        "*.device[*].app[0].handshakeRecordOverhead": f"{sizes.handshake_record_overhead}B",
        "*.device[*].app[0].supplyVoltage": _quantity(power.supply_v, "V"),
        "*.device[*].app[0].mcuActiveCurrent": _quantity(power.mcu_active_a, "A"),
        "*.device[*].app[0].mcuSleepCurrent": _quantity(power.mcu_sleep_a, "A"),
        "*.gateway[*].app[0].forwardSeconds": _quantity(
            params.gateway_forward_cycles / params.gateway_hz, "s"
        ),
        "*.controlCentre.app[0].serviceTime": _quantity(params.broker_s, "s"),
    }
    if access == "wifi":
        lines.update(_wifi_lines(power))
    # Positions are fixed by the topology, not drawn: devices spread evenly on their PAN's ring.
    for g in range(n_gw):
        lines[f"*.gateway[{g}].mobility.initialX"] = _quantity(g * PAN_SPACING_M, "m")
        lines[f"*.gateway[{g}].mobility.initialY"] = "0m"
        if access == "802.15.4":
            lines[f"*.gateway[{g}].wlan[0].radio.centerFrequency"] = _pan_frequency(g)
    for g in range(n_gw):
        members = np.flatnonzero(topology.gateway == g)
        for k, d in enumerate(members):
            angle = 2 * np.pi * k / max(len(members), 1)
            radius = DEVICE_RING_M[0] + (DEVICE_RING_M[1] - DEVICE_RING_M[0]) * (k % 3) / 2
            lines[f"*.device[{d}].mobility.initialX"] = _quantity(
                round(g * PAN_SPACING_M + radius * np.cos(angle), 3), "m"
            )
            lines[f"*.device[{d}].mobility.initialY"] = _quantity(round(radius * np.sin(angle), 3), "m")
            if access == "802.15.4":
                lines[f"*.device[{d}].wlan[0].radio.centerFrequency"] = _pan_frequency(g)
            lines[f"*.device[{d}].app[0].gateway"] = str(g)
            protocol = "mqtt" if topology.protocol[d] == 0 else "coap"
            lines[f"*.device[{d}].app[0].protocol"] = f'"{protocol}"'
    return lines


def _wifi_lines(power: Any) -> dict[str, str]:
    """802.11g (ERP-OFDM, 54 Mbit/s data) as the built-in Wi-Fi model: every node's interface becomes
    INET's Ieee80211Interface in ad-hoc mode (DCF without association; the cells are 2 km apart on one
    channel), and the device radio draws the ESP32 currents of ``qesif_core.network.wifi`` at the cost
    model's supply voltage."""
    watts = {name: _quantity(amps * power.supply_v * 1e3, "mW") for name, amps in ESP32_RADIO_A.items()}
    consumer = "*.device[*].wlan[0].radio.energyConsumer."
    return {
        "*.radioMedium.typename": '"Ieee80211ScalarRadioMedium"',
        "*.*.wlan[0].typename": '"Ieee80211Interface"',
        "*.*.wlan[0].opMode": '"g(erp)"',
        "*.*.wlan[0].bitrate": "54Mbps",
        "*.*.wlan[0].mgmt.typename": '"Ieee80211MgmtAdhoc"',
        "*.*.wlan[0].agent.typename": '""',
        consumer + "typename": '"StateBasedEpEnergyConsumer"',
        consumer + "sleepPowerConsumption": watts["radio_sleep_a"],
        consumer + "switchingPowerConsumption": watts["radio_idle_a"],
        consumer + "receiverIdlePowerConsumption": watts["radio_rx_a"],
        consumer + "receiverBusyPowerConsumption": watts["radio_rx_a"],
        consumer + "receiverReceivingPowerConsumption": watts["radio_rx_a"],
        consumer + "transmitterIdlePowerConsumption": watts["radio_idle_a"],
        consumer + "transmitterTransmittingPowerConsumption": watts["radio_tx_a"],
    }


def _pan_frequency(gateway: int) -> str:
    return f"{2405 + 5 * (gateway % PAN_CHANNELS)}MHz"


def cosim_peer(
    spec: RunSpec, model: OmnetModel, workdir: Path, endpoint: str, *, timeout_s: float
) -> tuple[PeerProcess, Path]:
    """The OMNeT++ model as the orchestrator's peer for ``spec``: writes the schedule and the wrapper ini
    into ``workdir``; returns the (not yet started) peer and the folder its result files go to."""
    workload = run_workload(spec, run_streams(spec.seed))
    rounds = spec.rounds
    schedule = workdir / "traffic.csv"
    write_schedule(workload, rounds, schedule)
    launch = OmnetLaunch(
        executable=model.executable,
        ini=MODEL_INI,
        config="General",
        run_dir=workdir,
        seed=spec.seed,
        sim_time_limit_s=(rounds + 1) * workload.round_duration_s,
        # every round must answer within timeout_s anyway (the orchestrator fails a silent peer)
        cpu_time_limit_s=(rounds + 1) * timeout_s,
        ned_paths=model.ned_paths(),
        overrides=cosim_ini_lines(
            spec.network,
            workload,
            endpoint,
            schedule,
            timeout_s,
            rounds=rounds,
            costs=load_cost_model(spec.costs),
            session_rounds=spec.keys.session_rounds,
        ),
    )
    run_ini = write_wrapper_ini(launch.ini, launch.config, workdir, launch.ini_lines())
    peer = PeerProcess(opp_run_argv(launch, run_ini), cwd=workdir, env=model.env())
    return peer, launch.result_dir


def model_scalars(result_dir: Path, run: str, model: OmnetModel) -> pd.DataFrame:
    """The model's recorded scalars (bridge, MACs) as CSV-R rows of ``run``, modules prefixed ``omnetpp.``:
    exported by the built model's OMNeT++ ``opp_scavetool export -F CSV-R``, or read by the pure-Python
    reader where that tool is absent (the same table, to the exporter's 14 significant digits)."""
    files = sorted(result_dir.glob("*.sca"))
    if not files:
        return pd.DataFrame()
    tool = model.omnetpp_lib.parent / "bin" / scave.SCAVETOOL
    if tool.is_file():
        table = scave.scavetool_export(files, scavetool=str(tool))
    else:
        table = scave.read_result_files(files)
    scalars = table[table["type"] == "scalar"].copy()
    scalars["run"] = run
    scalars["module"] = "omnetpp." + scalars["module"].astype(str)
    return scalars
