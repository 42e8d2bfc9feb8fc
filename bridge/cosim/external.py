"""The user's own network simulator as the orchestrator's peer (docs/protocol.md, "External peers").

``qesif run SCENARIO --peer 'CMD ARGS {endpoint}'`` starts the program for each run, supervised like the
built-in peer (argv split with :func:`shlex.split`, no shell; own process group, log file, receive
timeout, the run's deadline, terminate-wait-kill). ``qesif serve SCENARIO --endpoint tcp://127.0.0.1:PORT``
serves one run at a time to a peer started by someone else. Both mark the run's spec with ``backend:
external`` and a ``peer`` entry, so their results never mix with the built-in backend's in a store.

What a peer needs besides the endpoint is offered as files, each written only when its placeholder is used
(``qesif serve`` writes all of them):

- ``{spec}``: the resolved run spec (JSON);
- ``{schedule}``: the run's offered traffic, every message of every round as ``device,time,payload,record``
  rows sorted by time (the OMNeT++ model's schedule file, :func:`bridge.backends.workload.write_schedule`);
- ``{topology}``: ``device,gateway,protocol`` rows (``protocol``: ``mqtt`` or ``coap``).
"""

from __future__ import annotations

import json
import os
import shlex
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.cosim.supervise import PeerProcess
from qesif_core.errors import UserInputError

if TYPE_CHECKING:
    from bridge.scenario import RunSpec

BACKEND = "external"
#: File placeholders of a peer command, besides ``{endpoint}``.
FILES = ("spec", "schedule", "topology")
TRANSPORTS = ("ipc", "tcp")


def parse_peer_command(command: str) -> list[str]:
    """The argv template of ``--peer``: shell-like words (no shell runs them), ``{endpoint}`` required."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UserInputError(f"--peer {command!r}: cannot split into arguments ({exc})") from None
    if not argv:
        raise UserInputError("--peer: the command is empty")
    if not any("{endpoint}" in word for word in argv):
        raise UserInputError(
            f"--peer {command!r}: must contain {{endpoint}}, where the orchestrator's address goes"
        )
    return argv


def external_spec(spec: Mapping[str, Any], command: str | None, transport: str) -> dict[str, Any]:
    """``spec`` run by an external peer (``command`` None: one started by someone else, ``qesif serve``)."""
    if transport not in TRANSPORTS:
        raise UserInputError(
            f"--peer-endpoint: unknown transport {transport!r}; known: {', '.join(TRANSPORTS)}"
        )
    if spec.get("backend", "builtin") != "builtin":
        raise UserInputError(f"an external peer replaces the built-in backend, not {spec['backend']!r}")
    return {**spec, "backend": BACKEND, "peer": {"command": command, "transport": transport}}


def write_peer_files(spec: RunSpec, folder: Path, wanted: tuple[str, ...] = FILES) -> dict[str, str]:
    """Write the files named in ``wanted`` (of :data:`FILES`) into ``folder``; placeholder -> path. The
    ``{spec}`` file is the spec's JSON form (:meth:`bridge.scenario.RunSpec.to_dict`)."""
    import pandas as pd

    from bridge.backends.workload import run_workload, write_schedule
    from bridge.cosim.runsetup import run_streams
    from qesif_core.network.model import MQTT

    paths = {name: folder / f"{name}.{'json' if name == 'spec' else 'csv'}" for name in wanted}
    if "spec" in paths:
        paths["spec"].write_text(json.dumps(spec.to_dict(), indent=1, allow_nan=False), encoding="utf-8")
    if "schedule" in paths or "topology" in paths:
        workload = run_workload(spec, run_streams(spec.seed))
        if "schedule" in paths:
            write_schedule(workload, spec.rounds, paths["schedule"])
        if "topology" in paths:
            topology = workload.topology
            pd.DataFrame(
                {
                    "device": range(workload.n_devices),
                    "gateway": topology.gateway,
                    "protocol": ["mqtt" if p == MQTT else "coap" for p in topology.protocol],
                }
            ).to_csv(paths["topology"], index=False)
    return {name: str(path) for name, path in paths.items()}


def peer_argv(template: list[str], values: Mapping[str, str]) -> list[str]:
    """The template with each ``{name}`` of ``values`` replaced (other braces are left alone)."""
    argv = []
    for word in template:
        for name, value in values.items():
            word = word.replace(f"{{{name}}}", value)
        argv.append(word)
    return argv


def run_external(spec: RunSpec, *, timeout_s: float):
    """One run with the ``--peer`` program as the network; returns the served orchestrator."""
    from bridge.cosim.orchestrator import Orchestrator, serve_with_peer

    template = parse_peer_command(spec.peer.command)
    with tempfile.TemporaryDirectory(prefix="qesif-peer-") as workdir:
        folder = Path(workdir)
        wanted = tuple(name for name in FILES if any(f"{{{name}}}" in word for word in template))
        files = write_peer_files(spec, folder, wanted)
        tcp = spec.peer.transport == "tcp"
        endpoint = "tcp://127.0.0.1:*" if tcp else f"ipc://{folder}/orchestrator.sock"

        def peer(bound: str) -> PeerProcess:
            # The peer runs in the user's folder, so relative paths in the command work as typed.
            argv = peer_argv(template, {**files, "endpoint": bound})
            return PeerProcess(argv, cwd=os.getcwd(), log_path=folder / "peer.log")

        return serve_with_peer(lambda: Orchestrator(spec), endpoint, peer, timeout_s=timeout_s)


def wait_for_first_frame(socket: Any, wait_s: float | None) -> None:
    """Block until a frame is waiting on ``socket`` (``wait_s`` None: for ever; Ctrl-C ends the wait)."""
    import time

    import zmq

    from bridge.cosim.supervise import PeerFailure

    give_up = None if wait_s is None else time.monotonic() + wait_s
    while not socket.poll(200, zmq.POLLIN):
        if give_up is not None and time.monotonic() > give_up:
            raise PeerFailure(f"no peer sent a frame within {wait_s:g} s", "")


def serve_external(
    spec: RunSpec | Mapping[str, Any],
    socket: Any,
    folder: Path,
    *,
    timeout_s: float,
    wait_s: float | None,
    announce: Any,
):
    """Serve one run (``qesif serve``) on a bound ROUTER ``socket`` to whichever peer sends its frames: the
    peer's files are written to ``folder`` and announced with the endpoint; the run's deadline counts from
    the peer's first frame. Returns the served orchestrator."""
    import zmq

    from bridge.cosim.orchestrator import Deadline, Orchestrator, run_deadline_s, serve

    orchestrator = Orchestrator(spec)
    spec = orchestrator.spec
    files = write_peer_files(spec, folder)
    endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
    announce(endpoint, files)
    wait_for_first_frame(socket, wait_s)
    deadline = Deadline.starting_now(run_deadline_s(spec))
    serve(orchestrator, socket, timeout_s=timeout_s, deadline=deadline)
    return orchestrator
