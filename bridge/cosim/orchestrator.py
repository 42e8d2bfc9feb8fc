"""The orchestrator: QKD per gateway link, key pools, the security scheme and the Q-IDS, in round lockstep.

A network backend (the built-in one, or OMNeT++ through the C++ client) drives a run with the messages of
:mod:`bridge.cosim.protocol`; :class:`Orchestrator` answers them:

- ``KEY_REQUEST`` for round r: every gateway link runs one QKD block (``qesif_core.qkd.session.run_block``),
  Algorithm 1 accepts or discards the block's key material, Algorithm 2 scores the link; then each session
  the request lists (the sessions that start in the round: with ``keys.session_rounds`` > 1, or while a
  device is still busy, a device keeps its session for several rounds and is not listed; see
  ``bridge.backends.builtin``) is planned by the run's scheme (``plan_session`` with K_IoT of Eq. 1, key
  availability and the link's Q-IDS flag) and quantum sessions get a QKD key ID from the gateway's key
  pool (ETSI GS QKD 014 enc_keys in batches into a gateway-side cache, dec_keys by the peer). The KEY_GRANT
  carries each plan and its costs (``qesif_core.costs``) but never key bytes. Each listed session also runs
  its plan's real key establishment here, where the key bytes are (:mod:`bridge.cosim.sessioncrypto`).
- ``TELEMETRY`` for round r: the network's measurements are recorded; the flow records the round carried
  are judged by the scheme's cross-layer detector (flow classifier fused with the Algorithm 2 margin of the
  record's gateway link); the ``VERDICT`` lists the flagged links and records. The run's ``ids/adr``,
  ``ids/fpr``, ``ids/precision`` and ``ids/f1`` count each distinct held-out record once (the majority of
  its judgements over the replays), with Wilson 95 % bounds and n (``IDS_SCALARS``); the per-round vector
  ``ids/adr`` is the replay view (each round's judged records, repeats included). The round's delivered
  messages are sealed with AES-GCM under the devices' session keys and opened at the control centre.

:func:`run_once` runs one spec in-process (direct calls) or over ZeroMQ with the backend in a supervised
child process, and returns the run's CSV-R table.

Choices (see docs/protocol.md): Algorithm 1 gates each link's block (one slot per round, trust gamma = 1,
eta = 0 unless ``keys.energy_budget_j`` is set, then eta = the device's previous session energy / budget);
K_IoT per device (Eq. 1) feeds the scheme; the Q-IDS takes Hbar_q and QBER_ref from
``qids.calibration_blocks`` blocks of the clean preset (noise-free trials) and, with ``qids.calibration:
link-baseline`` (the default), each link's benign-noise model (P_n, threshold band) from as many
commissioning blocks of that link's channel without its attacker (``noise-free``: from the clean blocks, the
paper-literal variant); the detector is trained on the ``qids.train_fraction`` split of the dataset, grouped
by feature vector (``bridge.cosim.runsetup.prepare_flows``).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bridge.cache import dataset_inputs, shared_array
from bridge.cosim import protocol
from bridge.cosim.links import (
    GatewayLinks,
    calibrate_from,
    calibration_settings,
    calibration_traces,
)
from bridge.cosim.runsetup import run_flows, run_streams
from bridge.cosim.sessioncrypto import MAX_MESSAGE_BYTES, SessionCrypto
from bridge.cosim.supervise import PeerFailure, PeerProcess
from bridge.cosim.validate import FrameValidator
from qesif_core import crypto
from qesif_core.costs import CostModel, load_cost_model
from qesif_core.entropy_keys import KeyPolicy, SlotObservation, decoherence_factor, generate_key, k_iot
from qesif_core.errors import UserInputError
from qesif_core.keys import KeyPool, decode_key
from qesif_core.network.traffic import build_topology
from qesif_core.qids.anomaly import Calibration, QidsParams, key_drop_ratio, run_matrices
from qesif_core.qids.flows import FlowDetector, feature_columns, record_keys
from qesif_core.qids.fusion import DetectorSpec, check_boosted_threshold, fuse
from qesif_core.qids.metrics import distinct_record_metrics
from qesif_core.qkd import commissioning
from qesif_core.qkd.channel import ChannelParams
from qesif_core.qkd.entangled import BellPairModel
from qesif_core.qkd.session import DEFAULT_FRAME_BITS
from qesif_core.schemes import get_scheme
from qesif_core.schemes.base import SessionContext, SessionPlan

if TYPE_CHECKING:
    import zmq

    from bridge.scenario import RunSpec

log = logging.getLogger(__name__)

BRIDGES = ("inprocess", "zmq")
#: Receive timeout of the orchestrator while a peer runs (seconds): a silent peer this long has failed.
DEFAULT_PEER_TIMEOUT_S = 60.0
#: A run's wall-clock limit when its spec sets no ``deadline_s``: this base plus so much per round.
DEFAULT_DEADLINE_BASE_S = 600.0
DEFAULT_DEADLINE_PER_ROUND_S = 60.0
GATEWAY_ID = "gateway-{}"
CONTROL_CENTRE_ID = "control-centre"


def _qids_params(section: Mapping[str, Any]) -> QidsParams:
    names = {f.name for f in dataclasses.fields(QidsParams)}
    values = {k: v for k, v in section.items() if k in names}
    if "weights" in values:
        values["weights"] = tuple(values["weights"])
    try:
        return QidsParams(**values)
    except TypeError as exc:
        raise UserInputError(f"qids: {exc}") from None


def qids_calibration(
    channel: ChannelParams,
    params: QidsParams,
    section: Mapping[str, Any],
    pulses: int,
    qkd_protocol: str,
    n_links: int,
    rng: np.random.Generator,
    benign_pairs: Sequence[BellPairModel] | None = None,
    frame_bits: int | None = DEFAULT_FRAME_BITS,
) -> Calibration | list[Calibration]:
    """Algorithm 2's calibration for a run: one for all links (``noise-free``) or one per link
    (``link-baseline``: each link's commissioning blocks, simulated with the run's channel minus its
    attacker, give its benign-noise model; Hbar_q and QBER_ref stay those of the noise-free trials, run with
    the link's source intensities). ``benign_pairs`` (``qkd.source: quisp``) are the links' pair states
    without the attacker."""
    mode, blocks = calibration_settings(section)
    traces = calibration_traces(
        channel, mode, blocks, pulses, qkd_protocol, n_links, rng, benign_pairs, frame_bits
    )
    return calibrate_from(params, *traces)


def attack_probabilities(
    spec: RunSpec,
    detector: DetectorSpec,
    flows: pd.DataFrame,
    train_index: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray | None:
    """P(attack) of the run's flow classifier, trained on the split's training records, for every record
    of the flow table (each round's verdict looks its records up); None under the ``quantum`` fusion rule,
    which uses no classifier. Shared by the batch's runs with the same dataset, seed, split and classifier
    (``bridge.cache``)."""
    if detector.fusion == "quantum":
        return None
    inputs = {
        "dataset": dataset_inputs(spec.dataset.model_dump()),
        "seed": spec.seed,
        "train_fraction": spec.qids.train_fraction,
        "classifier": detector.classifier,
    }

    def compute() -> np.ndarray:
        classifier = FlowDetector(detector.classifier, rng).fit(flows.iloc[train_index])
        return np.asarray(classifier.attack_probability(flows), dtype=np.float64)

    return shared_array("flow-probability", inputs, compute)


class Orchestrator:
    """The orchestrator's state for one run; :meth:`handle` answers one protocol message. ``spec``: the
    typed run spec or its JSON form (:func:`bridge.scenario.run_spec`); each part gets its section."""

    def __init__(self, spec: RunSpec | Mapping[str, Any]) -> None:
        from bridge.scenario import run_spec

        self.spec = spec = run_spec(spec)
        self.rounds = spec.rounds
        self.round_duration_s = spec.round_duration_s
        self.n_devices = spec.network.devices
        self.n_gateways = spec.network.gateways
        streams = run_streams(spec.seed)
        keys_section = spec.keys.settings()
        self.channel = spec.channel.params
        qkd = spec.qkd
        self.qkd_protocol = qkd.protocol
        self.pulses = commissioning.block_pulses(
            self.round_duration_s, qkd.source_rate_hz, qkd.pulses_per_block
        )
        self.frame_bits = qkd.frame_bits
        # Commissioning: the weak-coherent source's intensities, chosen for the honest link (bb84 only).
        self.intensities = None
        if self.qkd_protocol == "bb84":
            self.intensities = commissioning.commission(self.channel, self.pulses, qkd.intensities)
            self.channel = commissioning.apply(self.channel, self.intensities)
        self.costs = load_cost_model(spec.costs)
        self.scheme = get_scheme(spec.scheme)(keys_section)
        self.policy = KeyPolicy.from_mapping(keys_section)
        self.energy_budget_j = spec.keys.energy_budget_j
        self.qids_params = _qids_params(spec.qids.model_dump())
        # Each link's QKD blocks and Algorithm 2's calibration (live, QuISP, or shared by the batch's runs)
        self.links = GatewayLinks(
            qkd,
            self.channel,
            self.qids_params,
            spec.qids,
            streams.qkd,
            n_links=self.n_gateways,
            rounds=self.rounds,
            seed=spec.seed,
            pulses=self.pulses,
        )
        self.calibration = self.links.calibration
        # Ground truth of the quantum layer: the channel's attacker is on every link for the whole run.
        self.channel_attacked = self.channel.eve != "none" and self.channel.eve_fraction > 0.0
        self.pools = [
            KeyPool(
                link=f"link-{g}",
                source_kme_id=f"kme-{GATEWAY_ID.format(g)}",
                target_kme_id=f"kme-{CONTROL_CENTRE_ID}",
                master_sae_id=GATEWAY_ID.format(g),
                slave_sae_id=CONTROL_CENTRE_ID,
                rng=rng,
            )
            for g, rng in enumerate(streams.keys.spawn(self.n_gateways))
        ]
        # Keys the gateway fetched (enc_keys), not yet used: (key_ID, key bytes, expiry time, s); never leave
        # this process.
        self._cache: list[list[tuple[str, bytes, float]]] = [[] for _ in range(self.n_gateways)]
        # Spawned after the pools' streams, so the existing streams are untouched.
        self.session_crypto = SessionCrypto(streams.keys.spawn(1)[0])
        self.flows, train_index, self.test_index = run_flows(spec, streams)
        self.detector = self.scheme.detector
        self.boosted_threshold = spec.qids.boosted_flow_threshold
        check_boosted_threshold(self.boosted_threshold)
        self._attack_probability = attack_probabilities(
            spec, self.detector, self.flows, train_index, streams.ids
        )
        topology = build_topology(
            self.n_devices, self.n_gateways, spec.network.mqtt_fraction, streams.topology
        )
        self.validator = FrameValidator(
            gateway_of=topology.gateway,
            round_duration_s=self.round_duration_s,
            records=self.test_index,
            max_message_bytes=MAX_MESSAGE_BYTES,
        )
        self._labels = self.flows["label"].to_numpy(dtype=bool)
        self._attack_types = self.flows["attack_type"].astype(str).to_numpy()
        self._plan_costs: dict[tuple[str, str, bool, int], dict[str, float | int]] = {}

        shape = (self.n_gateways, self.rounds)
        self.qber = np.full(shape, np.nan)
        self.h_q = np.full(shape, np.nan)
        self.secret_bits = np.full(shape, np.nan)
        self.key_bits = np.zeros(shape, dtype=np.int64)
        self.margin = np.full(shape, np.nan)
        self.link_flags = np.zeros(shape, dtype=bool)
        self.windows_accepted = 0
        self.windows_discarded = 0
        self._window_discarded = np.zeros(self.n_gateways, dtype=bool)
        self._previous_mode: dict[int, str] = {}
        self._device_energy_j = np.zeros(self.n_devices)
        self.mode_counts = {"quantum": 0, "classical": 0, "pq-hybrid": 0}
        self.mode_switches = 0
        self.keys_used = 0
        self.telemetry: list[dict[str, Any]] = []
        self._ids_record: list[np.ndarray] = []
        self._ids_pred: list[np.ndarray] = []
        self.round_adr: list[float] = []
        self._state = "hello"
        self._round = 0
        self.bye_reason = ""

    # ------------------------------------------------------------------ protocol
    def handle(self, kind: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Answer one validated message; errors of the peer's making become ERROR replies."""
        try:
            if kind == protocol.HELLO:
                return self._hello(body)
            if self._state == "hello":
                raise protocol.ProtocolError(protocol.E_STATE, f"{kind} before HELLO")
            if kind == protocol.BYE:
                self._state = "closed"
                self.bye_reason = body["reason"][:200]
                return protocol.BYE, {"reason": "ok"}
            if self._state == "closed":
                raise protocol.ProtocolError(protocol.E_STATE, f"{kind} after BYE")
            if kind == protocol.KEY_REQUEST:
                return self._key_request(body)
            if kind == protocol.TELEMETRY:
                return self._telemetry(body)
            raise protocol.ProtocolError(protocol.E_TYPE, f"{kind} is not a request the orchestrator serves")
        except protocol.ProtocolError as exc:
            return protocol.ERROR, {"code": exc.code, "detail": exc.detail[:500]}

    @property
    def finished(self) -> bool:
        return self._state == "closed" and self._round == self.rounds

    def _hello(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if body["version"] != protocol.PROTOCOL_VERSION:
            raise protocol.ProtocolError(
                protocol.E_VERSION,
                f"peer speaks version {body['version']}, this is {protocol.PROTOCOL_VERSION}",
            )
        if body["devices"] != self.n_devices or body["gateways"] != self.n_gateways:
            raise protocol.ProtocolError(
                protocol.E_FIELD,
                f"peer has {body['devices']} devices / {body['gateways']} gateways, the run "
                f"{self.n_devices} / {self.n_gateways}",
            )
        if self._state != "hello":
            raise protocol.ProtocolError(protocol.E_STATE, "HELLO twice")
        self.validator.hello(body)
        self._state = "keys"
        log.info("peer %s joined", body["peer"])
        return protocol.WELCOME, {
            "version": protocol.PROTOCOL_VERSION,
            "rounds": self.rounds,
            "round_duration_s": self.round_duration_s,
            "devices": self.n_devices,
            "gateways": self.n_gateways,
        }

    def _check_round(self, body: dict[str, Any], state: str) -> int:
        r = body["round"]
        if self._state != state or r != self._round or r >= self.rounds:
            raise protocol.ProtocolError(
                protocol.E_STATE,
                f"round {r} {'KEY_REQUEST' if state == 'keys' else 'TELEMETRY'} out of order "
                f"(expecting {self._state} of round {self._round} of {self.rounds})",
            )
        return r

    # ------------------------------------------------------------------ QKD and Q-IDS per round
    def _advance_qkd(self, r: int, sessions: np.ndarray) -> None:
        """One block per link; a link whose stock of keys is below the round's ``sessions`` at its gateway
        reconciles further frames of its block for the difference (docs/qkd.md)."""
        now = r * self.round_duration_s
        for g in range(self.n_gateways):
            stock = len(self._cache[g]) + self.pools[g].stored_key_count
            block = self.links.block(
                g, r, min_key_bits=max(0, int(sessions[g]) - stock) * self.pools[g].key_size
            )
            self.qber[g, r], self.h_q[g, r], self.secret_bits[g, r] = block.qber, block.h_q, block.secret_bits
            self.key_bits[g, r] = block.key_bits
            slot = SlotObservation(
                h_q=block.h_q, theta=block.qber, loss=block.loss_fraction, key=block.alice_key
            )
            decision = generate_key(f"link-{g}", [slot], gamma=1.0, policy=self.policy)
            self._window_discarded[g] = not decision.accepted
            if decision.accepted:
                self.windows_accepted += 1
                if decision.key_bits:
                    self.pools[g].add_block(
                        decision.key, block=r, qber=block.qber, epsilon=block.epsilon, now=now
                    )
            else:
                self.windows_discarded += 1
        upto = r + 1
        drop = key_drop_ratio(self.secret_bits[:, :upto], self.qids_params.key_drop_window)
        result = run_matrices(
            self.h_q[:, :upto], self.qber[:, :upto], drop, self.calibration, self.qids_params
        )
        self.margin[:, r] = result.score[:, r] - result.threshold[:, r]
        self.link_flags[:, r] = result.flags[:, r]

    def _live_cache(self, g: int, now: float) -> list[tuple[str, bytes, float]]:
        """Gateway ``g``'s cached keys still within their lifetime at ``now``; expired ones are dropped (the
        pool erases its copies and counts them as expired)."""
        cache = self._cache[g]
        if cache and cache[0][2] <= now:  # cached oldest first: expired keys lead
            self._cache[g] = cache = [entry for entry in cache if entry[2] > now]
            self.pools[g].expire(now)
        return cache

    def _key_available(self, g: int, now: float) -> bool:
        if self._live_cache(g, now):
            return True
        self.pools[g].expire(now)
        return self.pools[g].stored_key_count > 0

    def _take_key(self, g: int, now: float) -> tuple[str, bytes] | None:
        """A QKD key (key_ID, bytes) for a session at gateway ``g``, never one past its lifetime at ``now``:
        from the gateway's cache, refilled in ETSI batches; the control centre fetches its copy by key_ID
        (dec_keys), which must be the same."""
        pool = self.pools[g]
        if not self._live_cache(g, now):
            pool.expire(now)
            number = min(pool.max_key_per_request, pool.stored_key_count)
            if number == 0:
                return None
            container = pool.enc_keys(CONTROL_CENTRE_ID, caller=pool.master_sae_id, now=now, number=number)
            self._cache[g] = [
                (entry["key_ID"], decode_key(entry), pool.expires_at(entry["key_ID"]))
                for entry in container["keys"]
            ]
        key_id, key, _ = self._cache[g].pop(0)
        peer = pool.dec_keys(pool.master_sae_id, [key_id], caller=pool.slave_sae_id, now=now)
        if decode_key(peer["keys"][0]) != key:
            raise crypto.HandshakeFailed(f"key_ID {key_id}: the two KMEs hold different keys")
        self.keys_used += 1
        return key_id, key

    def _costs_of(self, plan: SessionPlan) -> dict[str, float | int]:
        key = (plan.handshake, plan.cipher, plan.consumes_qkd_key, plan.extra_bytes_per_message)
        if key not in self._plan_costs:
            self._plan_costs[key] = plan_costs(self.costs, plan)
        return self._plan_costs[key]

    def _key_request(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        r = self._check_round(body, "keys")
        self.validator.key_request(r, body)
        devices, gateways, times = body["device"], body["gateway"], body["time"]
        self._advance_qkd(r, np.bincount(np.asarray(gateways, dtype=np.int64), minlength=self.n_gateways))
        columns: dict[str, list[Any]] = {
            name: [] for name in protocol.SCHEMAS[protocol.KEY_GRANT] if name != "round"
        }
        # Plan in order of session start, so scarce keys go to the earliest sessions.
        order = sorted(range(len(devices)), key=lambda i: (times[i], devices[i]))
        planned: dict[int, tuple[SessionPlan, str | None]] = {}
        for i in order:
            d, g, t = devices[i], gateways[i], times[i]
            eta = self._device_energy_j[d] / self.energy_budget_j if self.energy_budget_j else 0.0
            rate = k_iot(
                self.h_q[g, r], 1.0, eta, decoherence_factor(self.qber[g, r], self.policy.delta_slope)
            )
            ctx = SessionContext(
                device=d,
                gateway=g,
                time=t,
                k_iot=float(rate),
                quantum_key_available=self._key_available(g, t),
                link_flagged=bool(self.link_flags[g, r] or self._window_discarded[g]),
                previous_mode=self._previous_mode.get(d),
            )
            plan = self.scheme.plan_session(ctx)
            granted = self._take_key(g, t) if plan.consumes_qkd_key else None
            if plan.consumes_qkd_key and granted is None:
                raise RuntimeError(
                    f"scheme {self.scheme.name} planned a quantum session at gateway {g} "
                    "without an available key"
                )
            key_id, qkd_key = granted if granted is not None else (None, None)
            self.session_crypto.start_session(d, plan, key_id=key_id, qkd_key=qkd_key)
            if ctx.previous_mode is not None and ctx.previous_mode != plan.mode:
                self.mode_switches += 1
            self._previous_mode[d] = plan.mode
            self.mode_counts[plan.mode] += 1
            planned[i] = (plan, key_id)
        for i in range(len(devices)):
            plan, key_id = planned[i]
            columns["device"].append(devices[i])
            columns["mode"].append(plan.mode)
            columns["handshake"].append(plan.handshake)
            columns["cipher"].append(plan.cipher)
            columns["key_id"].append(key_id)
            for name, value in self._costs_of(plan).items():
                columns[name].append(value)
        self._state = "telemetry"
        return protocol.KEY_GRANT, {"round": r, **columns}

    def _telemetry(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        r = self._check_round(body, "telemetry")
        self.validator.telemetry(r, body)
        records = np.asarray(body["record"], dtype=np.int64)
        record_gateway = np.asarray(body["record_gateway"], dtype=np.int64)
        session_device = np.asarray(body["session_device"], dtype=np.int64)
        delivered, payload_bytes = body["messages_delivered"], body["payload_bytes_delivered"]
        self.telemetry.append(body)
        self._device_energy_j[session_device] = body["session_energy_j"]
        self.session_crypto.deliver_round(body["session_device"], delivered, payload_bytes)
        if records.size:
            score = self.margin[record_gateway, r] if self.detector.uses_quantum_score else None
            probability = None if self._attack_probability is None else self._attack_probability[records]
            predicted = fuse(self.detector, records.size, probability, score, self.boosted_threshold)
            truth = self._labels[records]
            self._ids_record.append(records)
            self._ids_pred.append(predicted)
            attacks = truth.sum()
            self.round_adr.append(float((predicted & truth).sum() / attacks) if attacks else float("nan"))
        else:
            predicted = np.zeros(0, dtype=bool)
            self.round_adr.append(float("nan"))
        self._round += 1
        self._state = "keys"
        return protocol.VERDICT, {
            "round": r,
            "link_flagged": self.link_flags[:, r].tolist(),
            "flagged_records": records[predicted].tolist(),
        }

    # ------------------------------------------------------------------ results
    def table(self, backend: str = "builtin") -> pd.DataFrame:
        """The run's CSV-R table (run attributes, scalars, per-round vectors)."""
        if not self.finished:
            raise RuntimeError(
                f"run not finished: {self._round} of {self.rounds} rounds, state {self._state}"
            )
        spec = self.spec
        rows: list[dict[str, Any]] = []
        attrs = {
            "dataset": spec.dataset.name,
            "channel": spec.channel.name,
            "scheme": spec.scheme,
            "seed": str(spec.seed),
            "backend": backend,
            "synthetic": str(bool(self.flows.attrs.get("synthetic", False))).lower(),
        }
        for name, value in attrs.items():
            rows.append({"type": "runattr", "attrname": name, "attrvalue": value})

        def scalar(module: str, name: str, value: float) -> None:
            rows.append({"type": "scalar", "module": module, "name": name, "value": float(value)})

        def vector(module: str, name: str, values: list[float]) -> None:
            times = [(i + 1) * self.round_duration_s for i in range(len(values))]
            rows.append(
                {"type": "vector", "module": module, "name": name, "vectime": times, "vecvalue": list(values)}
            )

        tel = self.telemetry
        latencies = np.concatenate([np.asarray(t["latency_s"], dtype=float) for t in tel])
        energies = np.concatenate([np.asarray(t["session_energy_j"], dtype=float) for t in tel])
        payload_bits = 8.0 * sum(t["payload_bytes_delivered"] for t in tel)
        duration = self.rounds * self.round_duration_s
        finite_qber = self.qber[np.isfinite(self.qber)]
        scalar("qkd", "qber_mean", finite_qber.mean() if finite_qber.size else np.nan)
        scalar("qkd", "secret_bits", np.nansum(self.secret_bits))
        scalar("qkd", "keys_accepted", self.windows_accepted)
        scalar("qkd", "keys_discarded", self.windows_discarded)
        self._commissioning_scalars(scalar)
        for name, value in self._ids_scalars().items():
            scalar("ids", name, value)
        scalar("ids", "link_flags", self.link_flags.sum())
        judged = np.isfinite(self.margin)  # blocks Algorithm 2 could score
        attacked = judged & self.channel_attacked
        benign = judged & ~attacked
        scalar("ids", "quantum_detection_rate", _rate(self.link_flags[attacked]))
        scalar("ids", "quantum_false_alarm_rate", _rate(self.link_flags[benign]))
        scalar("network", "latency_mean_ms", 1e3 * latencies.mean() if latencies.size else np.nan)
        scalar("network", "latency_p95_ms", 1e3 * np.percentile(latencies, 95) if latencies.size else np.nan)
        scalar("network", "latency_median_ms", 1e3 * np.median(latencies) if latencies.size else np.nan)
        scalar("network", "goodput_kbps", payload_bits / duration / 1e3)
        # Device energy over the run divided by the sessions that started (planned and granted) in it.
        sessions = sum(self.mode_counts.values())
        scalar("network", "energy_per_session_mJ", 1e3 * energies.sum() / sessions if sessions else np.nan)
        scalar("network", "messages_sent", sum(t["messages_sent"] for t in tel))
        scalar("network", "messages_delivered", sum(t["messages_delivered"] for t in tel))
        scalar("network", "messages_lost", sum(t["messages_lost"] for t in tel))
        scalar("network", "queue_drops", sum(t["queue_drops"] for t in tel))
        scalar("network", "in_flight_at_end", tel[-1]["in_flight"] if tel else 0)
        scalar("network", "frames", sum(t["frames"] for t in tel))
        scalar("network", "mac_drops", sum(t["mac_drops"] for t in tel))
        scalar("network", "retransmissions", sum(t["retransmissions"] for t in tel))
        scalar("hybrid", "mode_switches", self.mode_switches)
        scalar("hybrid", "quantum_sessions", self.mode_counts["quantum"])
        scalar("hybrid", "classical_sessions", self.mode_counts["classical"])
        scalar("hybrid", "pq_hybrid_sessions", self.mode_counts["pq-hybrid"])
        scalar("keys", "keys_used", self.keys_used)
        scalar("keys", "keys_discarded", sum(p.keys_expired + p.keys_dropped_full for p in self.pools))
        scalar("keys", "keys_generated", sum(p.keys_generated for p in self.pools))
        sessions_crypto = self.session_crypto
        scalar("crypto", "handshakes", sum(sessions_crypto.handshakes.values()))
        for kind, count in sessions_crypto.handshakes.items():
            scalar("crypto", f"handshakes_{kind}", count)
        scalar("crypto", "records_sealed", sessions_crypto.records_sealed)
        scalar("crypto", "records_opened", sessions_crypto.records_opened)
        scalar("crypto", "aead_failures", sessions_crypto.aead_failures)

        vector("qkd", "qber", np.nanmean(self.qber, axis=0).tolist())
        vector("ids", "adr", self.round_adr)
        vector(
            "network",
            "latency_ms",
            [1e3 * float(np.mean(t["latency_s"])) if t["latency_s"] else np.nan for t in tel],
        )
        vector(
            "network",
            "goodput_kbps",
            [8.0 * t["payload_bytes_delivered"] / self.round_duration_s / 1e3 for t in tel],
        )
        vector(
            "network",
            "energy_mJ",
            [1e3 * float(np.mean(t["session_energy_j"])) if t["session_energy_j"] else np.nan for t in tel],
        )
        table = pd.DataFrame(
            rows,
            columns=[
                "run",
                "type",
                "module",
                "name",
                "attrname",
                "attrvalue",
                "value",
                "vectime",
                "vecvalue",
            ],
        )
        table["run"] = run_label(spec)
        return table

    def _commissioning_scalars(self, scalar: Callable[[str, str, float], None]) -> None:
        """The links' source settings and block size, and how much of the computed key was materialised."""
        intensities = self.intensities
        scalar("qkd", "pulses_per_block", self.pulses)
        scalar("qkd", "frame_bits", self.frame_bits if self.frame_bits is not None else np.nan)
        scalar("qkd", "mu_signal", intensities.mu_signal if intensities else np.nan)
        scalar("qkd", "mu_decoy", intensities.mu_decoy if intensities else np.nan)
        scalar("qkd", "intensities_optimised", float(intensities.optimised) if intensities else np.nan)
        scalar("qkd", "expected_secret_bits", intensities.expected_secret_bits if intensities else np.nan)
        scalar("qkd", "blocks", np.isfinite(self.secret_bits).sum())
        scalar("qkd", "blocks_with_key", (self.secret_bits > 0).sum())
        scalar("qkd", "key_bits", self.key_bits.sum())

    def _ids_scalars(self) -> dict[str, float]:
        """ADR, FPR, precision and F1 over the distinct held-out records the run judged (each once, by the
        majority of its judgements), with Wilson 95 % bounds and n (``qesif_core.qids.metrics``)."""
        if not self._ids_record:
            return {name: np.nan for name in IDS_SCALARS}
        records = np.concatenate(self._ids_record)
        keys = record_keys(self.flows, feature_columns(self.flows))[records]
        metrics = distinct_record_metrics(
            keys, self._labels[records], np.concatenate(self._ids_pred), self._attack_types[records]
        )
        out = {name: metrics[name] for name in ("adr", "fpr", "precision", "f1")}
        for name in ("adr", "fpr", "precision", "f1"):
            out[f"{name}_ci95_low"], out[f"{name}_ci95_high"] = metrics[f"{name}_ci95"]
        out["n_attack_test"] = metrics["n_attack_test"]
        out["n_benign_test"] = metrics["n_benign_test"]
        out["judgements"] = metrics["judgements"]
        return out


#: The run's detection scalars (module ``ids``), per distinct held-out record: rates, Wilson 95 % bounds,
#: the numbers of distinct attack and benign records, and the judgements (replays) behind them.
IDS_SCALARS = (
    "adr", "fpr", "precision", "f1", "adr_ci95_low", "adr_ci95_high", "fpr_ci95_low", "fpr_ci95_high",
    "precision_ci95_low", "precision_ci95_high", "f1_ci95_low", "f1_ci95_high", "n_attack_test",
    "n_benign_test", "judgements",
)  # fmt: skip


def _rate(flags: np.ndarray) -> float:
    """Fraction of True among ``flags``; NaN when there is none to count."""
    return float(flags.mean()) if flags.size else float("nan")


def plan_costs(costs: CostModel, plan: SessionPlan) -> dict[str, float | int]:
    """The KEY_GRANT cost columns of a plan, from the cost model (``qesif_core.costs``)."""
    setup = costs.session_setup(plan)
    empty, one_block = costs.record(plan.cipher, 0), costs.record(plan.cipher, 16)
    device_hz = float(costs.value("device.cpu_hz"))
    return {
        "extra_bytes": crypto.AEAD_RECORD_OVERHEAD + plan.extra_bytes_per_message,
        "handshake_up_bytes": setup.bytes_device_to_gateway,
        "handshake_down_bytes": setup.bytes_gateway_to_device,
        "handshake_device_s": setup.device_seconds + costs.session_key_setup_cycles(plan.cipher) / device_hz,
        "handshake_gateway_s": setup.gateway_seconds,
        "cipher_device_s_fixed": empty.device_seconds,
        "cipher_device_s_per_block": one_block.device_seconds - empty.device_seconds,
        "cipher_gateway_s_fixed": empty.gateway_seconds,
        "cipher_gateway_s_per_byte": (one_block.gateway_seconds - empty.gateway_seconds) / 16,
    }


def run_label(spec: RunSpec) -> str:
    return f"{spec.scheme}-{spec.dataset.name}-{spec.channel.name}-{spec.seed}"


# ---------------------------------------------------------------------- serving over ZeroMQ
def check_endpoint(endpoint: str) -> str:
    """Only ipc:// and loopback TCP endpoints are allowed (never a routable address)."""
    if endpoint.startswith("ipc://"):
        return endpoint
    for prefix in ("tcp://127.0.0.1:", "tcp://[::1]:", "tcp://localhost:"):
        if endpoint.startswith(prefix):
            return endpoint
    raise UserInputError(f"endpoint {endpoint!r}: only ipc:// or loopback tcp://127.0.0.1:PORT are allowed")


def run_deadline_s(spec: RunSpec) -> float:
    """The wall-clock limit of one run with a peer: ``deadline_s``, or 600 s + 60 s per round."""
    if spec.deadline_s is None:
        return DEFAULT_DEADLINE_BASE_S + DEFAULT_DEADLINE_PER_ROUND_S * spec.rounds
    return spec.deadline_s


@dataclasses.dataclass(frozen=True)
class Deadline:
    """A run's overall wall-clock limit (``deadline_s``), counted from the run's start."""

    seconds: float
    at: float  # time.monotonic()

    @classmethod
    def starting_now(cls, seconds: float) -> Deadline:
        return cls(seconds, time.monotonic() + seconds)

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def check(self, orchestrator: Orchestrator, peer: PeerProcess | None) -> None:
        if time.monotonic() > self.at:
            raise PeerFailure(
                f"run deadline of {self.seconds:g} s passed in round {orchestrator._round} of "
                f"{orchestrator.rounds} (deadline_s)",
                peer.log_tail() if peer else "",
                peer.pid if peer else None,
            )


def serve(
    orchestrator: Orchestrator,
    socket: zmq.Socket,
    *,
    timeout_s: float,
    peer: PeerProcess | None = None,
    deadline: Deadline | None = None,
) -> None:
    """Answer frames on a bound ROUTER socket until the peer says BYE.

    Malformed frames get ERROR replies and serving goes on. The run is locked to one peer: once a HELLO is
    accepted, frames from any other ZeroMQ identity get a ``busy`` ERROR without reaching the orchestrator
    and do not count as the peer's activity. Each wait is bounded: ``timeout_s`` without a frame from the
    peer, the peer process exiting, or the run's ``deadline`` passing (however many frames arrive) raises
    :class:`PeerFailure`.
    """
    import zmq

    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    silent_until = time.monotonic() + timeout_s
    peer_identity: bytes | None = None  # the identity whose HELLO was accepted: the run's peer
    while True:
        if deadline is not None:
            deadline.check(orchestrator, peer)
        if time.monotonic() > silent_until:  # checked whatever other connections send
            raise PeerFailure(
                f"no message from the peer for {timeout_s:g} s",
                peer.log_tail() if peer else "",
                peer.pid if peer else None,
            )
        if not poller.poll(timeout=200):
            if peer is not None and peer.exited():
                raise PeerFailure(
                    f"peer exited with code {peer.returncode} before BYE", peer.log_tail(), peer.pid
                )
            continue
        frames = socket.recv_multipart(copy=True)
        if len(frames) < 2:
            continue  # a ROUTER always prefixes the identity; anything else cannot be answered
        identity, payload, delimiter = frames[0], frames[-1], frames[1:-1]
        if peer_identity is not None and identity != peer_identity:
            detail = "this run is served to another peer (its HELLO came first); try again after the run ends"
            socket.send_multipart([identity, *delimiter, protocol.error_frame(protocol.E_BUSY, detail)])
            continue
        silent_until = time.monotonic() + timeout_s
        try:
            if len(delimiter) > 1 or (delimiter and delimiter[0] != b""):
                raise protocol.ProtocolError(
                    protocol.E_MALFORMED, "expected one frame (optionally after an empty delimiter)"
                )
            message = protocol.decode(payload)
            kind, body = orchestrator.handle(message.type, message.body)
            reply = protocol.encode(kind, body)
        except protocol.ProtocolError as exc:
            kind, reply = protocol.ERROR, protocol.error_frame(exc.code, exc.detail)
        except Exception as exc:  # a bug while serving a valid request: report it, then fail the run
            socket.send_multipart(
                [identity, *delimiter, protocol.error_frame(protocol.E_INTERNAL, type(exc).__name__)]
            )
            raise
        socket.send_multipart([identity, *delimiter, reply])
        if kind == protocol.WELCOME:
            peer_identity = identity
        if kind == protocol.BYE:
            return


def _inprocess_call(orchestrator: Orchestrator):
    def call(kind: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return orchestrator.handle(kind, body)

    return call


def run_once(
    spec: RunSpec | Mapping[str, Any], *, bridge: str = "inprocess", timeout_s: float = DEFAULT_PEER_TIMEOUT_S
) -> pd.DataFrame:
    """Run one resolved spec (typed, or its JSON form: :func:`bridge.scenario.run_spec`) and return its
    CSV-R table.

    ``bridge="inprocess"``: the built-in backend calls the orchestrator directly. ``bridge="zmq"``: the
    backend runs in a supervised child process over ipc://; a peer that dies, hangs or misbehaves fails the
    run with :class:`PeerFailure` (its log tail attached) and leaves no process behind.
    """
    if bridge not in BRIDGES:
        raise UserInputError(f"--bridge: unknown bridge {bridge!r}; known: {', '.join(BRIDGES)}")
    from bridge.scenario import run_spec

    spec = run_spec(spec)
    if spec.quantum_network:  # a QKD network with trusted relays: bridge.qnet (docs/qkd-network.md)
        from bridge.qnet.run import run_network

        return run_network(spec)
    backend = spec.backend
    model_rows = pd.DataFrame()
    if backend == "omnetpp":
        orchestrator, model_rows = _run_omnetpp(spec, timeout_s)
    elif backend == "external":
        from bridge.cosim.external import run_external

        orchestrator = run_external(spec, timeout_s=timeout_s)
    elif bridge == "inprocess":
        from bridge.backends.builtin import builtin_network, drive

        orchestrator = Orchestrator(spec)
        drive(builtin_network(spec), _inprocess_call(orchestrator))
    else:
        from bridge.backends.builtin import serve_peer

        with tempfile.TemporaryDirectory(prefix="qesif-run-") as workdir:
            endpoint = f"ipc://{workdir}/orchestrator.sock"
            # The backend is forked before the orchestrator is built, so both initialise at the same time.
            peer = PeerProcess(cwd=workdir, target=lambda: serve_peer(spec, endpoint, timeout_s))
            orchestrator = serve_with_peer(lambda: Orchestrator(spec), endpoint, peer, timeout_s=timeout_s)
    table = finished_table(orchestrator, backend)
    return pd.concat([table, model_rows], ignore_index=True) if len(model_rows) else table


def finished_table(orchestrator: Orchestrator, backend: str) -> pd.DataFrame:
    """The table of a run the peer completed; a peer that said BYE early fails the run."""
    if not orchestrator.finished:
        raise PeerFailure(
            f"peer said BYE after {orchestrator._round} of {orchestrator.rounds} rounds "
            f"(reason {orchestrator.bye_reason!r})",
            "",
        )
    return orchestrator.table(backend)


def _run_omnetpp(spec: RunSpec, timeout_s: float) -> tuple[Orchestrator, pd.DataFrame]:
    """One run with the OMNeT++/INET model as the peer (always over ZeroMQ); the orchestrator and the
    model's own scalars (bridge, 802.15.4 MACs) as CSV-R rows of ``omnetpp.*`` modules."""
    from bridge.backends.omnetpp import cosim_peer, model_scalars, require_model

    model = require_model()
    with tempfile.TemporaryDirectory(prefix="qesif-omnet-") as workdir:
        endpoint = f"ipc://{workdir}/orchestrator.sock"
        peer, result_dir = cosim_peer(spec, model, Path(workdir), endpoint, timeout_s=timeout_s)
        orchestrator = serve_with_peer(lambda: Orchestrator(spec), endpoint, peer, timeout_s=timeout_s)
        return orchestrator, model_scalars(result_dir, run_label(spec), model)


def bind_router(endpoint: str) -> zmq.Socket:
    """A ROUTER socket bound to ``endpoint`` (ipc:// or loopback TCP; port ``*``: any free port).

    Frames up to ``MAX_FRAME_BYTES`` are parsed, larger ones up to four times that get a ``malformed``
    ERROR; ZeroMQ drops the connection of a peer sending more (its DEALER reconnects by itself)."""
    import zmq  # here: an in-process run needs no sockets

    socket = zmq.Context.instance().socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.MAXMSGSIZE, 4 * protocol.MAX_FRAME_BYTES)
    try:
        socket.bind(check_endpoint(endpoint))
    except zmq.ZMQError as exc:
        socket.close()
        raise UserInputError(f"endpoint {endpoint!r}: cannot bind ({exc})") from None
    return socket


def serve_with_peer(
    orchestrator: Orchestrator | Callable[[], Orchestrator],
    endpoint: str,
    peer: PeerProcess | Callable[[str], PeerProcess],
    *,
    timeout_s: float,
) -> Orchestrator:
    """Bind ``endpoint``, start ``peer``, serve it until BYE, and end it (always); the orchestrator.

    ``orchestrator`` may be a factory, called after the peer started so that both initialise at once;
    ``peer`` may be a factory of the bound endpoint (for ``tcp://127.0.0.1:*``). The whole run, from the
    peer's start to its exit after BYE, must end within the spec's deadline (:func:`run_deadline_s`).
    """
    import zmq  # here: an in-process run needs no sockets

    socket = bind_router(endpoint)
    process = None
    try:
        bound = socket.getsockopt_string(zmq.LAST_ENDPOINT)
        process = peer(bound) if callable(peer) else peer
        started = time.monotonic()
        process.start()
        served = orchestrator() if callable(orchestrator) else orchestrator
        seconds = run_deadline_s(served.spec)
        deadline = Deadline(seconds, started + seconds)
        serve(served, socket, timeout_s=timeout_s, peer=process, deadline=deadline)
        wait_s = min(timeout_s, deadline.remaining())
        if process.wait(wait_s) is None:
            raise PeerFailure(f"peer still running {wait_s:g} s after BYE", process.log_tail(), process.pid)
        if process.returncode != 0:
            raise PeerFailure(
                f"peer exited with code {process.returncode} after BYE", process.log_tail(), process.pid
            )
        return served
    finally:
        if process is not None:
            process.stop()
        socket.close()
