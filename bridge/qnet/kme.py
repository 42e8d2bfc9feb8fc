"""The ETSI GS QKD 014 KME serving end-to-end keys across a QKD network (SAEs in different zones).

:class:`NetworkKeyStore` has the interface of ``bridge.services.kme.KeyStore`` (``status``, ``enc_keys``,
``dec_keys``, ``feed_once``, ``sae_ids``), so ``KmeServer(config, store=NetworkKeyStore(...))`` serves it
over HTTPS with mutual TLS. Each SAE is attached to a node of the network; an SAE pair's keys are relayed
hop by hop on request (``qesif_core.qnet.network.KeyNetwork.deliver``, adaptive routing around links
Algorithm 2 flags) into that pair's ``qesif_core.keys.KeyPool``, which delivers them once to the master
and once to the slave. Nothing is relayed ahead of a request, so a request the network cannot serve in
full (partitioned, or every route flagged or out of key) is refused with 503 and consumes no link key;
a key is never served twice (the pool's one-time delivery) nor served stale (keys exist only from the
request that relayed them until their delivery or expiry).

The feeder runs one block on every link per ``block_interval_s`` (``feed_once``): the QKD engine,
Algorithm 1 into the link pools, Algorithm 2 on the links' history (recomputed over every block so far,
as in a run), flags into the routing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from bridge.qnet.run import link_models, topology_of
from bridge.services.kme import KeyStore, KmeConfig
from qesif_core.entropy_keys import KeyPolicy
from qesif_core.errors import UserInputError
from qesif_core.keys import KeyDeliveryError
from qesif_core.qids.anomaly import QidsParams
from qesif_core.qnet.links import accept_block, run_link_block
from qesif_core.qnet.monitor import NetworkWatch, calibrate_network
from qesif_core.qnet.network import KeyNetwork
from qesif_core.qnet.pools import LinkKeyPool
from qesif_core.qnet.routing import RoutingParams

#: Blocks the watch's arrays grow by when full.
WATCH_CHUNK = 256


class NetworkKeyStore(KeyStore):
    """Key store of a KME in front of a QKD network (module docstring): ``KeyStore``'s per-pair pools, locking
    and dec_keys, with end-to-end keys relayed on request instead of one QKD link per pair."""

    def __init__(
        self,
        config: KmeConfig,
        section: Mapping[str, Any],
        sae_nodes: Mapping[str, str],
        rng: np.random.Generator,
        *,
        calibration_blocks: int = 10,
        qids: QidsParams | None = None,
        qkd: Mapping[str, Any] | None = None,
    ) -> None:
        if config.key_size != section["key_bits"]:
            raise UserInputError(
                f"key_size {config.key_size} differs from the network's key_bits {section['key_bits']}"
            )
        pairs_rng, qkd_rng, relay_rng, calibration_rng = rng.spawn(4)
        super().__init__(config, pairs_rng)
        self.topology = topology_of(section)
        self.links = link_models(section, config.block_interval_s, qkd or {})
        self._node_of: dict[str, int] = {}
        for sae in sorted(self.sae_ids):
            node = sae_nodes.get(sae)
            if node not in self.topology.node_index:
                raise UserInputError(f"SAE {sae!r}: not attached to a node of the network (got {node!r})")
            self._node_of[sae] = self.topology.node_index[node]
        self._link_rngs = qkd_rng.spawn(len(self.links))
        self.policy = KeyPolicy()
        self.qids = qids or QidsParams()
        self._calibrations = calibrate_network(
            self.links, self.qids, calibration_blocks, "link-baseline", calibration_rng.spawn(len(self.links))
        )
        self.watch = NetworkWatch(self._calibrations, self.qids, WATCH_CHUNK)
        pools = [
            LinkKeyPool(
                link.name,
                key_bits=int(section["key_bits"]),
                capacity=int(section["pool_capacity"]),
                lifetime_s=float(section["key_lifetime_s"]),
            )
            for link in self.links
        ]
        routing = RoutingParams("adaptive", float(section["routing"]["depletion_weight"]))
        self.network = KeyNetwork(self.topology, pools, routing, relay_rng, keep_ledger=True)
        self.blocks = 0

    def _deliverable(self, master: str, slave: str) -> int:
        limit = self.config.max_key_count
        return self.network.deliverable(self._node_of[master], self._node_of[slave], limit)

    def status(self, caller: str, slave: str) -> dict[str, Any]:
        """ETSI 014 Status; ``stored_key_count`` is how many keys the network could relay for the pair now."""
        with self._lock:
            status = self._pool(caller, slave, slave).status(slave, caller=caller, now=self.now())
            status["stored_key_count"] = self._deliverable(caller, slave)
            return status

    def enc_keys(self, caller: str, slave: str, number: int, size: int | None) -> dict[str, Any]:
        """Relay ``number`` fresh end-to-end keys from the master's node to the slave's, then deliver them."""
        with self._lock:
            pool = self._pool(caller, slave, slave)
            if not 1 <= number <= pool.max_key_per_request or (size is not None and size != pool.key_size):
                return pool.enc_keys(slave, caller=caller, now=self.now(), number=number, size=size)  # 400
            available = self._deliverable(caller, slave)
            if available < number:
                raise KeyDeliveryError(
                    503,
                    f"the QKD network can relay {available} keys from {caller!r} to {slave!r} now, "
                    f"{number} requested (no route with keys: links flagged, out of key or partitioned)",
                )
            delivery = self.network.deliver(self._node_of[caller], self._node_of[slave], number)
            if delivery.count < number:  # a relayed key failed its end-to-end check
                raise KeyDeliveryError(503, f"{number - delivery.count} relayed keys failed verification")
            bits = np.unpackbits(delivery.at_target, axis=1).ravel()
            pool.add_block(bits, block=self.blocks, qber=float("nan"), epsilon=0.0, now=self.now())
            return pool.enc_keys(slave, caller=caller, now=self.now(), number=number, size=size)

    def feed_once(self) -> int:
        """One block on every link; returns the link keys added."""
        with self._lock:
            now, block = self.now(), self.blocks
            if block == self.watch.flags.shape[1]:
                self.watch = _grown(self.watch)
            n = len(self.links)
            h_q, qber, secret = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n)
            added = 0
            for j, link in enumerate(self.links):
                pool = self.network.pools[j]
                room = (pool.capacity - pool.stored) * pool.key_bits
                result = run_link_block(link, now, self._link_rngs[j], room)
                h_q[j], qber[j], secret[j] = result.h_q, result.qber, result.secret_bits
                if accept_block(link.name, result, self.policy)[1]:
                    added += self.network.pools[j].add(result.alice_key, result.bob_key, now)
            flags, _ = self.watch.observe(block, h_q, qber, secret)
            self.network.flagged = flags
            self.network.expire(now)
            self.blocks += 1
            return added

    def replace_link(self, name: str, **fields: Any) -> None:
        """Change a link's model from the next block on (e.g. ``attack=AttackWindow(...)``)."""
        with self._lock:
            j = next(j for j, link in enumerate(self.links) if link.name == name)
            self.links[j] = dataclasses.replace(self.links[j], **fields)


def _grown(watch: NetworkWatch) -> NetworkWatch:
    bigger = NetworkWatch(watch.calibrations, watch.params, watch.flags.shape[1] + WATCH_CHUNK)
    n = watch.flags.shape[1]
    for name in ("h_q", "qber", "secret_bits", "flags", "margin"):
        getattr(bigger, name)[:, :n] = getattr(watch, name)
    return bigger


def network_store(config: KmeConfig, scenario: str, attach: list[str]) -> NetworkKeyStore:
    """``qesif kme serve --network FILE --attach SAE:NODE ...``: the store for the ``quantum_network`` of a
    scenario file (its first run: the scenario's first channel and seed) with SAEs attached to nodes."""
    from bridge.scenario import load_runs

    _, runs = load_runs(scenario)
    section = runs[0].spec.get("quantum_network")
    if section is None:
        raise UserInputError(f"--network {scenario}: the scenario has no quantum_network section")
    sae_nodes = {}
    for text in attach:
        sae, sep, node = text.partition(":")
        if not sep or not sae or not node:
            raise UserInputError(f"--attach must be SAE:NODE (got {text!r})")
        sae_nodes[sae] = node
    rng = np.random.default_rng(config.seed)
    return NetworkKeyStore(config, section, sae_nodes, rng, qkd=runs[0].spec["qkd"])
