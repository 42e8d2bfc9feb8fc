"""External peers: ``qesif run --peer`` and ``qesif serve`` with real programs over real sockets, the peer
files, and the example peers written from docs/protocol.md (Python; C++ where a compiler is present)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bridge import cli
from bridge.backends.builtin import builtin_network, drive
from bridge.commands.run import external_runs
from bridge.cosim import protocol
from bridge.cosim.client import ZmqClient
from bridge.cosim.external import external_spec, parse_peer_command, peer_argv, write_peer_files
from bridge.cosim.orchestrator import run_once
from bridge.scenario import load_runs, run_key, run_spec
from bridge.store import ResultStore, to_arrow
from qesif_core.errors import UserInputError

REPO = Path(__file__).resolve().parents[3]
QESIF = [sys.executable, "-m", "bridge.cli"]
PY_EXAMPLE = f"{sys.executable} docs/examples/external_peer.py {{endpoint}} {{schedule}} {{topology}}"
BUILTIN_ON_SCHEDULE = (
    f"{sys.executable} -m bridge.backends.builtin --endpoint {{endpoint}} --spec {{spec}} "
    "--schedule {schedule}"
)
#: Rows the orchestrator derives from the offered traffic and its own state alone: any peer replaying the
#: same schedule must give the same values (the other rows measure the peer's own network).
TRAFFIC_ROWS = [
    "qkd/qber_mean", "qkd/secret_bits", "qkd/keys_accepted", "qkd/keys_discarded", "ids/adr", "ids/fpr",
    "ids/precision", "ids/f1", "ids/link_flags", "ids/quantum_detection_rate", "ids/quantum_false_alarm_rate",
    "network/messages_sent", "keys/keys_generated",
]  # fmt: skip


def _qesif(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*QESIF, *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


def _scalars(table: pd.DataFrame) -> dict[str, float]:
    rows = table[table["type"] == "scalar"]
    return dict(zip(rows["module"] + "/" + rows["name"], rows["value"], strict=True))


@pytest.fixture
def one_run(tmp_path) -> Path:
    """A scenario of one small run (seconds)."""
    scenario = tmp_path / "one.yaml"
    scenario.write_text(
        "name: one\nseeds: [1]\nrounds: 3\nround_duration_s: 0.5\n"
        "datasets: [{name: ton_iot, max_rows: 1500}]\nchannels: [clean]\nschemes: [QESIF]\n"
        "network: {devices: 10, gateways: 2}\nqkd: {pulses_per_block: 20000}\nqids: {calibration_blocks: 5}\n"
    )
    return scenario


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


# ------------------------------------------------------------------ the command and its files
def test_peer_commands_are_split_without_a_shell_and_need_the_endpoint():
    assert parse_peer_command("sim --x 'a b' {endpoint}") == ["sim", "--x", "a b", "{endpoint}"]
    for bad, message in [("", "empty"), ("sim 'open", "cannot split"), ("sim --port 5555", "{endpoint}")]:
        with pytest.raises(UserInputError, match=message):
            parse_peer_command(bad)
    argv = peer_argv(
        ["sim", '--json={"a": 1}', "{endpoint}", "x{spec}y"], {"endpoint": "ipc://e", "spec": "s"}
    )
    assert argv == ["sim", '--json={"a": 1}', "ipc://e", "xsy"]  # other braces are left alone
    assert parse_peer_command("sim {endpoint}; rm -rf /") == ["sim", "{endpoint};", "rm", "-rf", "/"]


def test_peer_files_describe_the_run(small_spec, tmp_path):
    spec = run_spec(small_spec(rounds=3))
    paths = write_peer_files(spec, tmp_path)
    assert json.loads(Path(paths["spec"]).read_text()) == spec.to_dict()

    topology = pd.read_csv(paths["topology"])
    assert list(topology.columns) == ["device", "gateway", "protocol"]
    devices = np.arange(20)
    assert (topology["gateway"].to_numpy() == devices * 2 // 20).all()  # floor(d * G / N), documented
    assert set(topology["protocol"]) == {"mqtt", "coap"}
    schedule = pd.read_csv(paths["schedule"])
    assert list(schedule.columns) == ["device", "time", "payload", "record"]
    assert schedule["time"].is_monotonic_increasing and schedule["time"].between(0, 1.5, "left").all()
    assert schedule["payload"].between(16, 256).all()
    assert set(np.floor(schedule["time"] / 0.5).astype(int)) == {0, 1, 2}


def test_the_spec_file_is_the_external_runs_stored_spec_key_for_key(tmp_path):
    """docs/protocol.md's {spec}: what the store keeps for the run, in its order (the wire format)."""
    _, runs = load_runs(REPO / "scenarios/smoke.yaml")
    spec = external_spec(runs[0].spec, "sim {endpoint} {spec}", "tcp")
    paths = write_peer_files(run_spec(spec), tmp_path, ("spec",))
    assert Path(paths["spec"]).read_text() == json.dumps(spec, indent=1, allow_nan=False)


def test_external_runs_have_their_own_spec_and_keys():
    _, runs = load_runs(REPO / "scenarios/smoke.yaml")
    spec = external_spec(runs[0].spec, "sim {endpoint}", "ipc")
    assert spec["backend"] == "external" and spec["peer"] == {"command": "sim {endpoint}", "transport": "ipc"}
    with pytest.raises(UserInputError, match="transport"):
        external_spec(runs[0].spec, "sim {endpoint}", "udp")
    with pytest.raises(UserInputError, match="replaces the built-in backend"):
        external_spec({**runs[0].spec, "backend": "omnetpp"}, "sim {endpoint}", "ipc")


# ------------------------------------------------------------------ the door is faithful
def test_the_builtin_backend_through_the_peer_door_gives_the_same_table(small_spec):
    spec = small_spec(seed=4, rounds=2)
    command = f"{sys.executable} -m bridge.backends.builtin --endpoint {{endpoint}} --spec {{spec}}"
    table = run_once(external_spec(spec, command, "ipc"))
    attrs = table["type"] == "runattr"
    assert table.loc[attrs & (table["attrname"] == "backend"), "attrvalue"].item() == "external"
    table.loc[attrs & (table["attrname"] == "backend"), "attrvalue"] = "builtin"
    pd.testing.assert_frame_equal(table, run_once(spec))


def test_a_peer_that_cannot_start_or_fails_is_reported(small_spec, one_run, tmp_path, capsys):
    with pytest.raises(UserInputError, match="no-such-simulator"):
        run_once(external_spec(small_spec(rounds=2), "no-such-simulator {endpoint}", "ipc"))
    failing = f"{sys.executable} -c \"print('sim: cannot open model'); raise SystemExit(3)\" {{endpoint}}"
    scenario = one_run
    proc = _qesif("run", str(scenario), "--out", str(tmp_path / "out"), "--no-progress", "--peer", failing)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    [failure] = ResultStore(tmp_path / "out").failures()
    assert "peer exited with code 3 before BYE" in failure["reason"]
    assert "sim: cannot open model" in failure["log_tail"]
    assert cli.main(["run", str(scenario), "--out", str(tmp_path / "out"), "--peer", "sim --port 1"]) == 2
    assert "must contain {endpoint}" in capsys.readouterr().err


# ------------------------------------------------------------------ the example peers on smoke
@pytest.fixture(scope="module")
def smoke_with_example(tmp_path_factory):
    """``qesif run scenarios/smoke.yaml --peer 'python docs/examples/external_peer.py ...'``, as the README
    shows it, into a fresh store."""
    out = tmp_path_factory.mktemp("example") / "results"
    proc = _qesif("run", "scenarios/smoke.yaml", "--out", str(out), "--no-progress", "--peer", PY_EXAMPLE)
    return out, proc


def test_the_python_example_peer_completes_smoke_through_qesif_run(smoke_with_example):
    out, proc = smoke_with_example
    assert proc.returncode == 0, proc.stderr
    assert "4 run now, 0 already stored, 0 failed" in proc.stderr
    table = ResultStore(out).load()
    backends = table.loc[(table["type"] == "runattr") & (table["attrname"] == "backend"), "attrvalue"]
    assert list(backends) == ["external"] * 4
    for run, rows in table.groupby("run"):
        scalars = _scalars(rows)
        assert 0 < scalars["network/messages_delivered"] <= scalars["network/messages_sent"], run
        assert scalars["network/latency_mean_ms"] > 0 and scalars["network/energy_per_session_mJ"] > 0


@pytest.mark.parametrize("index", [0, 3])  # QESIF on the clean channel, QRHE on the eavesdropped one
def test_the_example_gives_the_builtin_peers_traffic_results_on_the_same_schedule(smoke_with_example, index):
    out, _ = smoke_with_example
    _, runs = load_runs(REPO / "scenarios/smoke.yaml")
    example_spec = external_spec(runs[index].spec, PY_EXAMPLE, "ipc")
    example = _scalars(pd.read_parquet(ResultStore(out).run_path(_key(example_spec))))
    builtin = _scalars(run_once(external_spec(runs[index].spec, BUILTIN_ON_SCHEDULE, "ipc")))
    assert all(_same(example[name], builtin[name]) for name in TRAFFIC_ROWS), {
        name: (example[name], builtin[name]) for name in TRAFFIC_ROWS
    }
    assert example["network/messages_delivered"] != builtin["network/messages_delivered"]  # its own network


def _key(spec):
    return run_key(spec)


@pytest.fixture(scope="module")
def cpp_peer(cpp_build) -> Path:
    return cpp_build / "qesif_external_peer"


def test_the_cpp_example_peer_gives_the_python_examples_table(cpp_peer, smoke_with_example):
    out, _ = smoke_with_example
    _, runs = load_runs(REPO / "scenarios/smoke.yaml")
    for run in (runs[0], runs[3]):
        table = run_once(external_spec(run.spec, f"{cpp_peer} {{endpoint}} {{schedule}} {{topology}}", "tcp"))
        python = pd.read_parquet(ResultStore(out).run_path(_key(external_spec(run.spec, PY_EXAMPLE, "ipc"))))
        assert _scalars(table).keys() == _scalars(python).keys()
        assert all(_same(a, _scalars(python)[k]) for k, a in _scalars(table).items())


# ------------------------------------------------------------------ qesif serve
def _start_serve(scenario: Path, out: Path) -> subprocess.Popen[str]:
    command = [*QESIF, "serve", str(scenario), "--endpoint", "tcp://127.0.0.1:*", "--out", str(out)]
    return subprocess.Popen(
        [*command, "--wait", "60"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _announced(server: subprocess.Popen[str]) -> tuple[str, dict[str, str]]:
    """The endpoint and the files of the next run ``qesif serve`` announces (after the last one's outcome)."""
    line = server.stdout.readline()
    while line.startswith("run ") and line.rstrip().endswith("stored"):
        line = server.stdout.readline()
    assert "serving on tcp://127.0.0.1:" in line, (line, server.stderr.read() if server.poll() else "")
    words = line.split()
    files = {
        words[i].strip("(-"): words[i + 1].rstrip(")")
        for i in range(len(words))
        if words[i].startswith(("(--", "--"))
    }
    return words[words.index("on") + 1], files


def test_qesif_serve_serves_a_peer_started_by_someone_else(one_run, tmp_path):
    scenario = one_run
    out = tmp_path / "out"
    server = _start_serve(scenario, out)
    try:
        endpoint, files = _announced(server)
        example = [sys.executable, "docs/examples/external_peer.py"]
        peer = subprocess.run(
            [*example, endpoint, files["schedule"], files["topology"]],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert peer.returncode == 0, peer.stderr
        assert server.wait(120) == 0, server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert "stored" in server.stdout.read()
    table = ResultStore(out).load()
    assert table.loc[table["attrname"] == "backend", "attrvalue"].item() == "external"
    again = _qesif("serve", str(scenario), "--endpoint", "tcp://127.0.0.1:*", "--out", str(out))
    assert again.returncode == 0 and "0 served now, 1 already stored" in again.stderr


def test_qesif_serve_gives_up_waiting_when_told(one_run, tmp_path, capsys):
    out = str(tmp_path / "out")
    proc = _qesif("serve", str(one_run), "--endpoint", "tcp://127.0.0.1:*", "--out", out, "--wait", "1")
    assert proc.returncode == 1 and "no peer sent a frame within 1 s" in proc.stderr
    assert "no peer sent a frame" in ResultStore(out).failures()[0]["reason"]
    assert cli.main(["serve", str(one_run), "--endpoint", "tcp://10.1.2.3:5555", "--out", out]) == 2
    assert "loopback" in capsys.readouterr().err


def test_qesif_serve_locks_each_run_to_the_peer_whose_hello_it_accepted(one_run, tmp_path):
    """Two real DEALER peers on one served scenario of two runs. Run 1: the legitimate peer's HELLO comes
    first; the intruder's HELLO, KEY_REQUEST, TELEMETRY and BYE between its frames all get ``busy``. Run 2 is
    taken by the intruder (the run before ended), and then the first peer gets ``busy``. Both stored tables
    equal the same runs without a second peer."""
    scenario = tmp_path / "two.yaml"
    scenario.write_text(one_run.read_text().replace("seeds: [1]", "seeds: [1, 2]"))
    _, builtin_runs = load_runs(scenario)
    runs = external_runs(builtin_runs, None, "tcp")
    out = tmp_path / "out"
    refused: list[tuple[str, str]] = []

    def refuse_all(client: ZmqClient, kind: str, body: dict) -> None:
        for frame in ((kind, body), (protocol.HELLO, hello), (protocol.BYE, {"reason": "mine now"})):
            reply_kind, reply = client.call(*frame)
            refused.append((reply_kind, reply.get("code", "")))

    def interleaved(peer: ZmqClient, intruder: ZmqClient):
        def call(kind: str, body: dict) -> tuple[str, dict]:
            reply = peer.call(kind, body)
            if kind != protocol.BYE:  # after the peer's BYE the next run is open to anyone
                refuse_all(intruder, kind, body)
            return reply

        return call

    server = _start_serve(scenario, out)
    try:
        endpoint, _ = _announced(server)
        with ZmqClient(endpoint, timeout_s=30) as first, ZmqClient(endpoint, timeout_s=30) as second:
            network = builtin_network(run_spec(runs[0].spec))
            hello = network.hello()
            drive(network, interleaved(first, second))
            assert _announced(server)[0] == endpoint
            network = builtin_network(run_spec(runs[1].spec))
            drive(network, interleaved(second, first))
        assert server.wait(120) == 0, server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert len(refused) == 3 * (1 + 2 * 3) * 2  # HELLO and 3 rounds of two requests, in each run
    assert set(refused) == {(protocol.ERROR, protocol.E_BUSY)}
    store = ResultStore(out)
    for run, builtin in zip(runs, builtin_runs, strict=True):
        alone = run_once(builtin.spec)
        alone.loc[alone["attrname"] == "backend", "attrvalue"] = "external"
        alone = to_arrow(alone, run.key, run.spec, run.itervars).replace_schema_metadata(None).to_pandas()
        pd.testing.assert_frame_equal(store.load([run.key]), alone)
