"""Routes of end-to-end keys: shortest paths weighted by key-pool depletion, avoiding flagged links.

Policies (``ROUTING_POLICIES``):

- ``adaptive``: the cheapest path where a link costs ``1 + depletion_weight * (1 - stored / capacity)``
  (an extra hop costs one link key and one more trusted node, a nearly empty pool up to
  ``depletion_weight`` hops more); links Algorithm 2 flags are removed while flagged, and so are links
  with no key left. A request larger than the route's bottleneck continues on the next cheapest route.
- ``static``: the fewest-hops path of the whole graph, fixed for the run, blind to flags and pool levels
  (the baseline: a network that routes once, at commissioning).

Routes come from shortest-path trees towards the destination (:func:`shortest_tree`), which a network
recomputes every block and whenever a route runs out of keys; ties are broken by node index.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from qesif_core.errors import UserInputError
from qesif_core.qnet.topology import Topology

ROUTING_POLICIES = ("adaptive", "static")


@dataclass(frozen=True)
class RoutingParams:
    policy: str = "adaptive"
    depletion_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.policy not in ROUTING_POLICIES:
            raise UserInputError(
                f"routing policy {self.policy!r} is unknown; known: {', '.join(ROUTING_POLICIES)}"
            )
        weight = self.depletion_weight
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
            raise UserInputError(f"routing depletion_weight must be a finite number (got {weight!r})")
        if weight < 0:
            raise UserInputError(f"routing depletion_weight must be >= 0 (got {weight!r})")


@dataclass(frozen=True)
class Route:
    """A path: node indices from source to destination and the link indices between them."""

    nodes: tuple[int, ...]
    links: tuple[int, ...]

    @property
    def hops(self) -> int:
        return len(self.links)


def shortest_tree(topology: Topology, weights: np.ndarray, root: int) -> list[tuple[int, int] | None]:
    """Dijkstra from ``root`` by per-link ``weights`` (``inf`` removes a link): for every node its
    (previous node, link) towards ``root``, None for the root and unreachable nodes. Ties go to the
    smaller node index (a heap of (distance, node)), so the tree is deterministic."""
    weight = weights.tolist()
    distance = [math.inf] * topology.n_nodes
    parent: list[tuple[int, int] | None] = [None] * topology.n_nodes
    distance[root] = 0.0
    heap = [(0.0, root)]
    done = [False] * topology.n_nodes
    while heap:
        d, u = heapq.heappop(heap)
        if done[u]:
            continue
        done[u] = True
        for v, link in topology.neighbours[u]:
            w = weight[link]
            if w == math.inf or done[v]:
                continue
            if d + w < distance[v]:
                distance[v] = d + w
                parent[v] = (u, link)
                heapq.heappush(heap, (d + w, v))
    return parent


def tree_route(parent: list[tuple[int, int] | None], source: int, root: int) -> Route | None:
    """The route from ``source`` to the tree's ``root`` (None when ``source`` is not in the tree)."""
    if source == root:
        raise ValueError("a route joins two different nodes")
    nodes, links = [source], []
    while nodes[-1] != root:
        step = parent[nodes[-1]]
        if step is None:
            return None
        nodes.append(step[0])
        links.append(step[1])
    return Route(tuple(nodes), tuple(links))


def shortest_route(topology: Topology, weights: np.ndarray, source: int, target: int) -> Route | None:
    """Cheapest path from ``source`` to ``target`` by ``weights`` (``inf`` removes a link), or None."""
    return tree_route(shortest_tree(topology, weights, target), source, target)


def adaptive_weights(
    stored: np.ndarray, capacity: np.ndarray, flagged: np.ndarray, depletion_weight: float
) -> np.ndarray:
    """Link costs of the adaptive policy; ``inf`` for flagged links and links without a key."""
    weights = 1.0 + depletion_weight * (1.0 - stored / capacity)
    return np.where(flagged | (stored <= 0), np.inf, weights)


def max_flow_rate(topology: Topology, rate: np.ndarray, source: int, target: int) -> float:
    """The largest end-to-end key rate from ``source`` to ``target`` when each link supplies at most its
    ``rate`` (relaying over several routes at once; the pair has the network to itself). Computed on
    integer capacities in units of max(rate) / 2^20, so it is exact to about one part in a million."""
    from scipy.sparse.csgraph import maximum_flow  # here: slow to import, validation needs none of it

    rate = np.nan_to_num(np.asarray(rate, dtype=float), nan=0.0)
    top = float(rate.max(initial=0.0))
    if top <= 0:
        return 0.0
    resolution = top / 2**20
    units = np.floor(rate / resolution)
    graph = topology.adjacency(np.where(units > 0, units, np.inf)).astype(np.int32)
    return float(maximum_flow(graph, source, target).flow_value) * resolution
