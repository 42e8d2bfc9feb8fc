"""One network run (a run spec with ``quantum_network``): QKD links block by block, Algorithm 1 into per-link
pools, Algorithm 2 flags, trusted-relay delivery of end-to-end keys to IoT sessions, and the results.

Round r (one QKD block per link, starting at r x ``round_duration_s``):

1. every link runs one block (``qesif_core.qnet.links.run_link_block``; an attacker acts on blocks that
   start inside its window); Algorithm 1 admits the block's key into the link's pool;
2. Algorithm 2 scores every link on the blocks so far (``qesif_core.qnet.monitor.NetworkWatch``); the
   adaptive routing avoids the flagged links for this round's requests;
3. IoT sessions: device d (attached to gateway ``d * gateways // devices``, as the built-in backend does)
   renews its session at rounds with (r + d) % ``keys.session_rounds`` == 0, or at its first later round
   with traffic (a message in the round: probability 1 - exp(-round / ``network.mean_interarrival_s``));
   each gateway asks the network for as many end-to-end keys to the control centre as it has sessions
   starting, less the keys it still holds (gateways ask in a random order each round: keys go first come,
   first served, and no gateway is always first); the run's scheme plans every session (``plan_session``) with
   K_IoT = H_q of the weakest link of the gateway's route in this block (Eq. 1 with gamma = 1, eta = 0),
   ``quantum_key_available`` = the gateway holds a key, ``link_flagged`` = a link of its route is flagged;
   a session with no key available (or a flagged route) falls back to the scheme's classical exchange and
   is counted; keys a gateway holds that were relayed over a link flagged since are discarded.

Before step 3, the monitored pair is probed without consuming anything: how many keys could be relayed
between it now (the block's fresh keys included) and on which route.

Each routing policy of ``routing.policies`` runs on the same QKD blocks (common random numbers) with its
own pools, scheme instance and counters, so policies differ only by their routing. Results are CSV-R rows
(module names ``qnet``, ``qnet.link.<link>``, ``qnet.<policy>``, ``qnet.<policy>.node.<node>``,
``qnet.<policy>.monitor``, ``qnet.pair.<a>.<b>``); docs/qkd-network.md lists them.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bridge.cosim.orchestrator import _qids_params
from bridge.cosim.runsetup import run_streams
from bridge.qnet.produce import BlockProducer
from qesif_core.entropy_keys import KeyPolicy
from qesif_core.errors import UserInputError
from qesif_core.network.traffic import build_topology
from qesif_core.qkd import commissioning
from qesif_core.qkd.channel import ChannelParams
from qesif_core.qkd.session import DEFAULT_FRAME_BITS
from qesif_core.qnet.links import AttackWindow, LinkModel
from qesif_core.qnet.monitor import NetworkWatch
from qesif_core.qnet.network import KeyNetwork
from qesif_core.qnet.pools import LinkKeyPool
from qesif_core.qnet.repeater import DEFAULT_MEMORIES
from qesif_core.qnet.routing import RoutingParams
from qesif_core.qnet.topology import Link, Node, Topology
from qesif_core.schemes import get_scheme
from qesif_core.schemes.base import SessionContext

if TYPE_CHECKING:
    from bridge.scenario import RunSpec

EXPERIMENT = "quantum-network"
#: Environment variable: processes sharing a network run's QKD blocks (1 or 2; results do not change).
WORKERS_ENV = "QESIF_QNET_WORKERS"
#: Networks up to this many nodes get the key-rate analysis for every node pair; larger ones for the
#: gateway-control centre pairs only (the analysis runs a max-flow per pair).
ALL_PAIRS_MAX_NODES = 40


def topology_of(section: Mapping[str, Any]) -> Topology:
    """The :class:`Topology` of a resolved ``quantum_network`` section."""
    nodes = [Node(n["name"], n["zone"], n["role"]) for n in section["nodes"]]
    links = [
        Link(ln["name"], ln["a"], ln["b"], ln["distance_km"], (ln["repeater"] or {}).get("segments", 1))
        for ln in section["links"]
    ]
    return Topology(nodes, links)


def link_models(
    section: Mapping[str, Any], round_duration_s: float, qkd: Mapping[str, Any]
) -> list[LinkModel]:
    """The links of a resolved section as the engine runs them (QuISP pair states not yet attached).

    Each link is commissioned as the orchestrator commissions a gateway link (``qesif_core.qkd.
    commissioning``): its block is its ``pulses_per_block`` or ``qkd.source_rate_hz`` x the round, and a
    BB84 link's intensities are chosen for its own honest channel and block (``qkd.intensities``)."""
    models = []
    rate = qkd.get("source_rate_hz", commissioning.DEFAULT_SOURCE_RATE_HZ)
    for link in section["links"]:
        eve = link["eve"]
        repeater = link["repeater"] or {}
        channel = ChannelParams.from_dict(link["channel"])
        pulses = commissioning.block_pulses(round_duration_s, rate, link["pulses_per_block"])
        if link["protocol"] == "bb84" and not repeater:
            intensities = commissioning.commission(channel, pulses, qkd.get("intensities", "optimise"))
            channel = commissioning.apply(channel, intensities)
        models.append(
            LinkModel(
                name=link["name"],
                channel=channel,
                protocol=link["protocol"],
                pulses_per_block=pulses,
                block_duration_s=round_duration_s,
                segments=int(repeater.get("segments", 1)),
                memories=int(repeater.get("memories", DEFAULT_MEMORIES)),
                attack=AttackWindow(**eve) if eve else None,
                frame_bits=qkd.get("frame_bits", DEFAULT_FRAME_BITS),
            )
        )
    return models


@dataclass
class PolicyState:
    """One routing policy's key layer, scheme and counters."""

    name: str
    network: KeyNetwork
    scheme: Any
    held: np.ndarray  # end-to-end keys each gateway holds (relayed, not yet used)
    held_links: list[np.ndarray]  # links the held keys were relayed over
    previous_mode: dict[int, str] = field(default_factory=dict)
    per_round: dict[str, np.ndarray] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    delivered_to: np.ndarray | None = None  # keys delivered per gateway


ROUND_SERIES = ("keys_requested", "keys_delivered", "sessions", "sessions_quantum", "sessions_fallback")
MONITOR_SERIES = ("deliverable", "hops", "route_attacked", "sessions", "sessions_fallback")
SESSION_TOTALS = (
    "e2e_keys_discarded_flagged",
    "e2e_keys_discarded_mismatch",
    "sessions",
    "sessions_quantum",
    "sessions_classical",
    "sessions_pq_hybrid",
    "sessions_fallback_no_key",
    "sessions_fallback_flagged",
)


class NetworkRun:
    """The state of one network run; :meth:`step` advances one round, :meth:`table` gives the results."""

    def __init__(
        self, spec: RunSpec | Mapping[str, Any], *, workers: int = 1, quisp_executable: Any = None
    ) -> None:
        from bridge.scenario import run_spec

        started = time.perf_counter()
        self.spec = spec = run_spec(spec)
        section = spec.quantum_network
        if not section:
            raise UserInputError("run_network: the spec has no quantum_network section")
        self.rounds = spec.rounds
        self.round_s = spec.round_duration_s
        streams = run_streams(spec.seed)
        self.topology = topology_of(section)
        self.links = link_models(section, self.round_s, spec.qkd.model_dump())
        from bridge.qnet.quisp import attach_quisp_pair_states

        self.links, self.link_notes = attach_quisp_pair_states(
            self.links, [ln["source"] for ln in section["links"]], streams.qkd.spawn(1)[0], quisp_executable
        )
        n_links = len(self.links)
        keys_section = spec.keys.settings()
        self.key_policy = KeyPolicy.from_mapping(keys_section)
        qids_params = _qids_params(spec.qids.model_dump())
        link_rngs, calibration_rngs = streams.qkd.spawn(n_links), streams.qkd.spawn(n_links)
        # per block admitted by Algorithm 1: its finite-key length (the link's secret key) and the key bits
        # the engine handed out, which enter the pools (fewer when the engine reconciles a sub-frame)
        self.admitted_secret = np.zeros((n_links, self.rounds))
        self.block_bits = np.zeros((n_links, self.rounds))
        self.accepted = np.zeros((n_links, self.rounds), dtype=bool)
        self.attacked = np.array(
            [[link.attacked(r * self.round_s) for r in range(self.rounds)] for link in self.links], dtype=bool
        ).reshape(n_links, self.rounds)

        # IoT devices and their session demand
        net = spec.network
        self.gateways = [self.topology.node_index[g] for g in self.topology.gateways]
        self.centre = self.topology.node_index[self.topology.control_centre]
        self.n_devices = net.devices
        self.device_gateway = build_topology(
            self.n_devices, len(self.gateways), net.mqtt_fraction, streams.topology
        ).gateway
        self.session_rounds = spec.keys.session_rounds
        self.traffic_probability = -math.expm1(-self.round_s / net.mean_interarrival_s)
        self._traffic = streams.traffic
        self._pending = np.zeros(self.n_devices, dtype=bool)
        monitor = section["monitor"]
        self.monitor = (
            self.topology.node_index[monitor["source"]],
            self.topology.node_index[monitor["target"]],
        )
        self.key_bits = int(section["key_bits"])

        routing = section["routing"]
        self.policies: list[PolicyState] = []
        for name, rng in zip(routing["policies"], streams.keys.spawn(len(routing["policies"])), strict=True):
            pools = [
                LinkKeyPool(
                    link.name,
                    key_bits=self.key_bits,
                    capacity=int(section["pool_capacity"]),
                    lifetime_s=float(section["key_lifetime_s"]),
                )
                for link in self.links
            ]
            network = KeyNetwork(
                self.topology,
                pools,
                RoutingParams(name, float(routing["depletion_weight"])),
                rng,
                keep_ledger=True,
            )
            state = PolicyState(
                name=name,
                network=network,
                scheme=get_scheme(spec.scheme)(keys_section),
                held=np.zeros(len(self.gateways), dtype=np.int64),
                held_links=[np.zeros(0, dtype=np.int64) for _ in self.gateways],
            )
            state.per_round = {k: np.zeros(self.rounds) for k in ROUND_SERIES}
            state.per_round.update({f"monitor_{k}": np.full(self.rounds, np.nan) for k in MONITOR_SERIES})
            state.totals = dict.fromkeys(SESSION_TOTALS, 0)
            state.delivered_to = np.zeros(len(self.gateways), dtype=np.int64)
            self.policies.append(state)
        self._round = 0
        self.producer = BlockProducer(self.links, link_rngs, self.key_policy, workers)
        try:
            calibrations = self.producer.calibrate(
                qids_params,
                spec.qids.calibration_blocks,
                spec.qids.calibration,
                calibration_rngs,
            )
        except BaseException:
            self.producer.close()
            raise
        self.watch = NetworkWatch(calibrations, qids_params, self.rounds)
        #: wall seconds per part of the run (set-up with calibration, QKD blocks, Algorithm 2, key delivery
        #: and sessions), for the benchmark
        self.timings = {"setup": time.perf_counter() - started, "qkd": 0.0, "qids": 0.0, "delivery": 0.0}

    # ------------------------------------------------------------------ one round
    def step(self) -> None:
        r = self._round
        now = r * self.round_s
        n_links = len(self.links)
        h_q, qber, secret = np.full(n_links, np.nan), np.full(n_links, np.nan), np.zeros(n_links)
        clock = time.perf_counter()
        room = np.zeros(n_links, dtype=np.int64)  # key bits the pools can take: what each block should yield
        for state in self.policies:
            room = np.maximum(room, [(p.capacity - p.stored) * p.key_bits for p in state.network.pools])
        for j, block in enumerate(self.producer.produce(now, room)):
            h_q[j], qber[j], secret[j] = block.h_q, block.qber, block.secret_bits
            self.accepted[j, r] = block.accepted
            if block.admitted:
                self.admitted_secret[j, r] = block.secret_bits
                self.block_bits[j, r] = block.key_a.size
                for state in self.policies:
                    state.network.pools[j].add(block.key_a, block.key_b, now)
        self.timings["qkd"] += time.perf_counter() - clock
        clock = time.perf_counter()
        flags, _ = self.watch.observe(r, h_q, qber, secret)
        self.timings["qids"] += time.perf_counter() - clock
        clock = time.perf_counter()
        due = self._due_sessions(r)
        gateway_order = self._traffic.permutation(len(self.gateways))  # who asks the KMEs first this round
        for state in self.policies:
            state.network.flagged = flags.copy()
            state.network.expire(now)
            self._probe_monitor(state, r)
            self._serve_sessions(state, r, now, due, gateway_order, h_q)
        self.timings["delivery"] += time.perf_counter() - clock
        self._round += 1

    def _due_sessions(self, r: int) -> np.ndarray:
        """Devices starting a session in round r (the built-in backend's renewal rule)."""
        scheduled = (r + np.arange(self.n_devices)) % self.session_rounds == 0
        traffic = self._traffic.random(self.n_devices) < self.traffic_probability
        wanting = scheduled | self._pending
        starting = wanting & traffic
        self._pending = wanting & ~traffic
        return np.flatnonzero(starting)

    def _serve_sessions(
        self,
        state: PolicyState,
        r: int,
        now: float,
        due: np.ndarray,
        gateway_order: np.ndarray,
        h_q: np.ndarray,
    ) -> None:
        network = state.network
        series, totals = state.per_round, state.totals
        for g in gateway_order:
            node = self.gateways[g]
            devices = due[self.device_gateway[due] == g]
            held_over = state.held_links[g]
            if state.held[g] and network.flagged[held_over].any():
                totals["e2e_keys_discarded_flagged"] += int(state.held[g])  # relayed over a link now flagged
                state.held[g] = 0
            if devices.size == 0:
                continue
            route = network.route(node, self.centre)
            if route is not None:
                links = list(route.links)
                k_iot = float(np.nanmin(h_q[links]))
                flagged = bool(network.flagged[links].any())
            else:
                incident = (self.topology.link_a == node) | (self.topology.link_b == node)
                k_iot, flagged = float(np.nanmax(h_q[incident])), False
            k_iot = k_iot if math.isfinite(k_iot) else 0.0
            need = int(devices.size - state.held[g])
            if need > 0 and not flagged:
                delivery = network.deliver(node, self.centre, need)
                if delivery.count:
                    used = sorted({j for rt, _ in delivery.routes for j in rt.links})
                    state.held_links[g] = np.union1d(held_over if state.held[g] else [], used).astype(
                        np.int64
                    )
                state.held[g] += delivery.count
                state.delivered_to[g] += delivery.count
                series["keys_requested"][r] += need
                series["keys_delivered"][r] += delivery.count
                totals["e2e_keys_discarded_mismatch"] += delivery.discarded
            held = int(state.held[g])
            plan_session, previous = state.scheme.plan_session, state.previous_mode
            modes = {"quantum": 0, "classical": 0, "pq-hybrid": 0}
            fallback = 0
            for d in devices.tolist():
                available = held > 0
                plan = plan_session(SessionContext(d, g, now, k_iot, available, flagged, previous.get(d)))
                previous[d] = plan.mode
                modes[plan.mode] += 1
                if plan.consumes_qkd_key:
                    if not available:
                        raise RuntimeError(
                            f"scheme {self.spec.scheme} planned a QKD key at gateway {g} without one"
                        )
                    held -= 1
                elif plan.mode != "quantum" and (not available or flagged):
                    fallback += 1
            state.held[g] = held
            quantum = modes["quantum"]
            for mode, count in modes.items():
                totals["sessions_" + mode.replace("-", "_")] += count
            totals["sessions_fallback_flagged" if flagged else "sessions_fallback_no_key"] += fallback
            totals["sessions"] += int(devices.size)
            series["sessions"][r] += devices.size
            series["sessions_quantum"][r] += quantum
            series["sessions_fallback"][r] += fallback
            if node == self.monitor[0] and self.monitor[1] == self.centre:
                series["monitor_sessions"][r] = devices.size
                series["monitor_sessions_fallback"][r] = fallback

    def _probe_monitor(self, state: PolicyState, r: int) -> None:
        """Keys the monitored pair could get now over a route without a flagged link (a static route
        through a flagged link counts as none: the Q-IDS forbids its keys), its hops, and whether the route
        crosses a link under attack in this block."""
        network = state.network
        source, target = self.monitor
        series = state.per_round
        route = network.route(source, target)
        blocked = route is not None and bool(network.flagged[list(route.links)].any())
        limit = network.pools[0].capacity
        series["monitor_deliverable"][r] = 0 if blocked else network.deliverable(source, target, limit)
        series["monitor_hops"][r] = route.hops if route is not None else np.nan
        series["monitor_route_attacked"][r] = (
            float(self.attacked[list(route.links), r].any()) if route is not None else np.nan
        )

    def run(self) -> NetworkRun:
        try:
            while self._round < self.rounds:
                self.step()
        finally:
            self.producer.close()
        return self


def run_network(spec: RunSpec | Mapping[str, Any], *, workers: int | None = None) -> pd.DataFrame:
    """Run one network spec and return its CSV-R table. ``workers=2`` shares the links' QKD blocks with a
    worker process (same results, bit for bit); default: ``$QESIF_QNET_WORKERS`` (1 or 2), else 1."""
    from bridge.qnet.results import network_table

    if workers is None:
        text = os.environ.get(WORKERS_ENV, "1")
        if text not in ("1", "2"):
            raise UserInputError(f"${WORKERS_ENV} must be 1 or 2 (got {text!r})")
        workers = int(text)
    return network_table(NetworkRun(spec, workers=workers).run())
