"""A QKD network's key layer: one :class:`~qesif_core.qnet.pools.LinkKeyPool` per link, routing, the
one-time-pad relay of end-to-end keys, and the accounting of link keys used and of what relays have seen.

:meth:`KeyNetwork.deliver` relays up to ``n`` fresh end-to-end keys from one node to another: along the
policy's route (``qesif_core.qnet.routing``), each hop consumes one link key per end-to-end key (taken from
the head of that link's pool, so never twice), every intermediate node is counted as having seen each key
(``seen``), and each key arrives as its destination's copy, compared with the source's before it is
delivered. :meth:`KeyNetwork.deliverable` answers the same question without consuming anything, so a
key management entity can refuse a request it cannot serve in full (HTTP 503) without wasting link keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from qesif_core.qnet.pools import LinkKeyPool
from qesif_core.qnet.relay import one_time_pad_relay
from qesif_core.qnet.routing import (
    Route,
    RoutingParams,
    adaptive_weights,
    shortest_route,
    shortest_tree,
    tree_route,
)
from qesif_core.qnet.topology import Topology


@dataclass(frozen=True)
class Delivery:
    """End-to-end keys relayed from ``source`` to ``target``: each end's copy (rows, uint8), the routes used
    with how many keys each carried, and how many relayed keys failed the end-to-end comparison."""

    source: int
    target: int
    at_source: np.ndarray = field(repr=False)
    at_target: np.ndarray = field(repr=False)
    routes: tuple[tuple[Route, int], ...]
    discarded: int = 0

    @property
    def count(self) -> int:
        return len(self.at_source)


class KeyNetwork:
    """The key layer of a QKD network under one routing policy.

    ``flagged`` (per link) is set by the caller from Algorithm 2 each block; the adaptive policy avoids
    flagged links. ``seen[i]``: end-to-end keys node i has held in the clear as a relay. ``ledger`` (when
    ``keep_ledger``) lists every ``(link, serials)`` consumed, for audits and tests.
    """

    def __init__(
        self,
        topology: Topology,
        pools: Sequence[LinkKeyPool],
        routing: RoutingParams,
        rng: np.random.Generator,
        *,
        keep_ledger: bool = False,
    ) -> None:
        if len(pools) != topology.n_links:
            raise ValueError(f"{len(pools)} pools for {topology.n_links} links")
        sizes = {pool.key_bytes for pool in pools}
        if len(sizes) > 1:
            raise ValueError("all link pools must hold keys of one size")
        self.topology = topology
        self.pools = list(pools)
        self.routing = routing
        self.key_bytes = sizes.pop() if sizes else 32
        self._rng = rng
        self._capacity = np.array([pool.capacity for pool in pools], dtype=float)
        self._static: dict[tuple[int, int], Route | None] = {}
        self._trees: dict[int, list[tuple[int, int] | None]] = {}
        self._flagged = np.zeros(topology.n_links, dtype=bool)
        self.seen = np.zeros(topology.n_nodes, dtype=np.int64)
        self.delivered = 0
        self.discarded = 0
        self.ledger: list[tuple[int, np.ndarray]] | None = [] if keep_ledger else None

    @property
    def flagged(self) -> np.ndarray:
        return self._flagged

    @flagged.setter
    def flagged(self, flags: np.ndarray) -> None:
        """Algorithm 2's flags for the coming requests; the routing tables are recomputed."""
        self._flagged = np.asarray(flags, dtype=bool).copy()
        self._trees.clear()

    def stored(self) -> np.ndarray:
        return np.array([pool.stored for pool in self.pools], dtype=float)

    def expire(self, now: float) -> None:
        for pool in self.pools:
            pool.expire(now)

    def _usable(self, route: Route | None, stored: np.ndarray) -> bool:
        if route is None:
            return False
        links = list(route.links)
        return bool(stored[links].min() > 0) and not (
            self.routing.policy == "adaptive" and self._flagged[links].any()
        )

    def route(self, source: int, target: int, stored: np.ndarray | None = None) -> Route | None:
        """The policy's route now, or None (``stored``: pool levels to route on, default the pools' own).

        Adaptive: the route of the current shortest-path tree towards ``target`` while it has keys and no
        flagged link, else a tree recomputed on the current levels (cached unless ``stored`` is given).
        Static: the fixed fewest-hops route while each of its links has a key.
        """
        live = stored is None
        stored = self.stored() if live else stored
        if self.routing.policy == "static":
            key = (source, target)
            if key not in self._static:
                self._static[key] = shortest_route(self.topology, np.ones(self.topology.n_links), *key)
            route = self._static[key]
            return route if self._usable(route, stored) else None
        tree = self._trees.get(target)
        route = tree_route(tree, source, target) if tree is not None else None
        if self._usable(route, stored):
            return route
        weights = adaptive_weights(stored, self._capacity, self._flagged, self.routing.depletion_weight)
        tree = shortest_tree(self.topology, weights, target)
        if live:
            self._trees[target] = tree
        return tree_route(tree, source, target)

    def _plan(self, source: int, target: int, n: int, *, live: bool) -> list[tuple[Route, int]]:
        """Routes and key counts that would serve up to ``n`` keys now (nothing consumed)."""
        stored = self.stored()
        plan: list[tuple[Route, int]] = []
        remaining = n
        while remaining > 0:
            route = self.route(source, target, None if live and not plan else stored)
            if route is None:
                break
            links = list(route.links)
            count = int(min(remaining, stored[links].min()))
            plan.append((route, count))
            stored[links] -= count
            remaining -= count
            if self.routing.policy == "static":
                break
        return plan

    def deliverable(self, source: int, target: int, limit: int) -> int:
        """How many of ``limit`` keys :meth:`deliver` could relay now (consumes nothing)."""
        return sum(count for _, count in self._plan(source, target, limit, live=False))

    def deliver(self, source: int, target: int, n: int) -> Delivery:
        """Relay up to ``n`` fresh end-to-end keys from node ``source`` to node ``target``."""
        at_source, at_target, used = [], [], []
        discarded = 0
        for route, count in self._plan(source, target, n, live=True):
            secret = self._rng.integers(0, 256, size=(count, self.key_bytes), dtype=np.uint8)
            hops = []
            for u, link in zip(route.nodes[:-1], route.links, strict=True):
                taken = self.pools[link].take(count)
                if self.ledger is not None:
                    self.ledger.append((link, taken.serials))
                forward = self.topology.link_a[link] == u
                hops.append((taken.end_a, taken.end_b) if forward else (taken.end_b, taken.end_a))
            received = one_time_pad_relay(secret, hops)
            self.seen[list(route.nodes[1:-1])] += count
            same = np.all(received == secret, axis=1)
            discarded += int(count - same.sum())
            at_source.append(secret[same])
            at_target.append(received[same])
            used.append((route, count))
        empty = np.zeros((0, self.key_bytes), dtype=np.uint8)
        delivery = Delivery(
            source=source,
            target=target,
            at_source=np.concatenate(at_source) if at_source else empty,
            at_target=np.concatenate(at_target) if at_target else empty,
            routes=tuple(used),
            discarded=discarded,
        )
        self.delivered += delivery.count
        self.discarded += discarded
        return delivery
