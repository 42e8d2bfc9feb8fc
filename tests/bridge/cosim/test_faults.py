"""Fault handling of the bridge: a peer killed or hanging mid-run, and fuzzed frames."""

import os
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import zmq

from bridge.batch import execute_run
from bridge.cosim import protocol
from bridge.cosim.client import ZmqClient
from bridge.cosim.orchestrator import Orchestrator, run_deadline_s, run_once, serve, serve_with_peer
from bridge.cosim.supervise import PeerFailure, PeerProcess
from bridge.scenario import Run, run_spec

PEER_PRELUDE = """
import os, signal, sys, time
from bridge.cosim.client import ZmqClient
client = ZmqClient(sys.argv[1], timeout_s=10)
kind, _ = client.call("HELLO", {"version": 1, "peer": "fault-peer", "devices": 20, "gateways": 2})
print("peer: welcomed", kind, flush=True)
"""


def _peer(tmp_path, body: str) -> list[str]:
    script = tmp_path / "peer.py"
    script.write_text(PEER_PRELUDE + textwrap.dedent(body))
    return [sys.executable, str(script), f"ipc://{tmp_path}/orch.sock"]


def _assert_reaped(pid: int) -> None:
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # not our child any more: reaped, so no zombie
    assert not os.path.exists(f"/proc/{pid}") or "Z" not in open(f"/proc/{pid}/stat").read().split()[2]


KILLED_MID_RUN = """
kind, _ = client.call("KEY_REQUEST", {"round": 0, "device": [0], "gateway": [0], "time": [0.1]})
print("peer: granted", kind, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_peer_killed_mid_run_fails_the_run_with_its_log_tail_and_the_next_run_works(tmp_path, small_spec):
    spec = small_spec(rounds=3)
    argv = _peer(tmp_path, KILLED_MID_RUN)
    seen = {}

    def killed_run(run_spec, *, bridge):
        started = time.monotonic()
        try:
            peer = PeerProcess(argv, cwd=tmp_path)
            serve_with_peer(Orchestrator(run_spec), argv[2], peer, timeout_s=20)
        except PeerFailure as failure:
            seen["elapsed"] = time.monotonic() - started
            seen["failure"] = failure
            raise

    outcome = execute_run(Run("k", spec), bridge="zmq", run_function=killed_run)
    assert not outcome.ok
    assert "peer exited with code -9" in outcome.reason
    assert "peer: granted KEY_GRANT" in outcome.log_tail
    assert seen["elapsed"] < 20  # detected by the exit check, not by the receive timeout
    _assert_reaped(seen["failure"].pid)
    assert run_once(spec, bridge="zmq")["type"].eq("scalar").any()


def test_a_hanging_peer_times_out_and_is_ended(tmp_path, small_spec):
    argv = _peer(tmp_path, "time.sleep(600)\n")
    started = time.monotonic()
    with pytest.raises(PeerFailure, match="no message from the peer for 2 s") as info:
        serve_with_peer(
            Orchestrator(small_spec(rounds=1)), argv[2], PeerProcess(argv, cwd=tmp_path), timeout_s=2
        )
    assert time.monotonic() - started < 2 + 8  # timeout, then terminate (grace 5 s at most)
    assert "peer: welcomed WELCOME" in info.value.log_tail
    _assert_reaped(info.value.pid)


def test_fuzzed_frames_get_errors_and_valid_requests_are_served_after(tmp_path, small_spec, monkeypatch):
    monkeypatch.setattr(protocol, "MAX_FRAME_BYTES", 10_000)
    orchestrator = Orchestrator(small_spec(rounds=1))
    endpoint = f"ipc://{tmp_path}/fuzz.sock"
    socket = zmq.Context.instance().socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.bind(endpoint)
    errors: list[BaseException] = []

    def serving():
        try:
            serve(orchestrator, socket, timeout_s=30)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=serving, daemon=True)
    thread.start()
    rng = np.random.default_rng(99)
    fuzz = [rng.bytes(int(n)) for n in rng.integers(1, 3000, 40)]
    fuzz += [
        b"",
        b"{}",
        b'{"v": 1, "type": "HELLO", "body": []}',
        b'{"v": 1, "type": ["HELLO"], "body": {}}',
        b'{"v": 1, "type": "TELEMETRY", "body": {"round": "0"}}',
        b'{"v": 1, "type": "KEY_GRANT", "body": {}}',
        b'{"v": 1, "type": "BYE", "body": {"reason": "' + b"x" * 20_000 + b'"}}',  # oversized
        b'{"v": 1, "type": "KEY_REQUEST", "body": {"round": 0, "device": [0], "gateway": [0], '
        b'"time": [0.5]}}',  # before HELLO
    ]
    with ZmqClient(endpoint, timeout_s=10) as client:
        for frame in fuzz:
            reply = protocol.decode(client.call_raw(frame))
            assert reply.type == protocol.ERROR, frame[:80]
            assert reply.body["code"] in {
                protocol.E_MALFORMED, protocol.E_TYPE, protocol.E_FIELD, protocol.E_STATE, protocol.E_VERSION
            }  # fmt: skip
        kind, _ = client.call(protocol.HELLO, {"version": 1, "peer": "fuzzer", "devices": 20, "gateways": 2})
        assert kind == protocol.WELCOME
        reply = protocol.decode(client.call_raw(b"\x00\x01 not json"))
        assert reply.type == protocol.ERROR
        kind, grant = client.call(
            protocol.KEY_REQUEST, {"round": 0, "device": [3, 12], "gateway": [0, 1], "time": [0.1, 0.3]}
        )
        assert kind == protocol.KEY_GRANT and grant["device"] == [3, 12]
        kind, _ = client.call(protocol.BYE, {"reason": "done fuzzing"})
        assert kind == protocol.BYE
    thread.join(10)
    socket.close()
    assert not thread.is_alive() and not errors


TRICKLING_MALFORMED = """
while True:  # one malformed frame a second: never silent for the receive timeout, never progressing
    time.sleep(1.0)
    client.call_raw(b"not json")
"""


def test_a_peer_trickling_malformed_frames_cannot_outlive_the_run_deadline(tmp_path, small_spec):
    spec = {**small_spec(rounds=3), "deadline_s": 4.0}
    argv = _peer(tmp_path, TRICKLING_MALFORMED)
    started = time.monotonic()
    with pytest.raises(PeerFailure, match=r"run deadline of 4 s passed in round 0 of 3") as info:
        serve_with_peer(Orchestrator(spec), argv[2], PeerProcess(argv, cwd=tmp_path), timeout_s=3)
    elapsed = time.monotonic() - started
    assert 4 <= elapsed < 4 + 1 + 5  # deadline, one poll, terminate grace at most
    _assert_reaped(info.value.pid)


def test_the_deadline_defaults_to_600_s_plus_60_s_per_round(small_spec):
    assert run_deadline_s(run_spec(small_spec(rounds=5))) == 900.0
    assert run_deadline_s(run_spec({**small_spec(rounds=5), "deadline_s": 12.5})) == 12.5


def test_an_intruders_frames_do_not_keep_a_silent_peers_run_alive(tmp_path, small_spec):
    """Once a peer's HELLO is accepted, another identity's frames get ``busy`` and do not count as the
    peer's activity: the run still ends at the receive timeout of its silent peer."""
    orchestrator = Orchestrator(small_spec(rounds=1))
    endpoint = f"ipc://{tmp_path}/locked.sock"
    socket = zmq.Context.instance().socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.bind(endpoint)
    outcome: list[tuple[BaseException, float]] = []
    thread = threading.Thread(target=lambda: _serve_into(outcome, orchestrator, socket, 1.5), daemon=True)
    thread.start()
    hello = {"version": 1, "peer": "p", "devices": 20, "gateways": 2}
    codes = []
    with ZmqClient(endpoint, timeout_s=10) as peer, ZmqClient(endpoint, timeout_s=1) as intruder:
        assert peer.call(protocol.HELLO, hello)[0] == protocol.WELCOME
        started = time.monotonic()
        while thread.is_alive() and time.monotonic() - started < 10:
            try:
                kind, body = intruder.call(protocol.HELLO, hello)
            except TimeoutError:
                break  # the run ended: nobody answers any more
            codes.append((kind, body["code"]))
            time.sleep(0.2)
        thread.join(10)
    failure, ended = outcome[0]
    assert isinstance(failure, PeerFailure) and "no message from the peer for 1.5 s" in str(failure)
    assert ended - started < 1.5 + 1.0
    assert len(codes) >= 5 and set(codes) == {(protocol.ERROR, protocol.E_BUSY)}
    assert orchestrator._state == "keys"  # the intruder's HELLOs changed nothing
    socket.close()


def _serve_into(outcome: list, orchestrator: Orchestrator, socket, timeout_s: float) -> None:
    """Serve; what ended it and when (time.monotonic()) go to ``outcome``."""
    try:
        serve(orchestrator, socket, timeout_s=timeout_s)
    except BaseException as exc:  # checked by the caller
        outcome.append((exc, time.monotonic()))
