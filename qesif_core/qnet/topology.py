"""The graph of a QKD network: nodes (gateways, trusted relays, the control centre) in zones, and QKD links.

A link joins two nodes over one fibre of ``distance_km``; a repeater link (``segments`` >= 2) is one link
whose fibre is split by quantum repeaters, which swap entanglement and never hold key, so they are not
nodes of this graph (they relay no key and see none). Parallel links between the same two nodes are not
allowed: a route is a sequence of nodes and names its links uniquely.

Every check raises :class:`~qesif_core.errors.UserInputError` naming the field (``where`` is the prefix,
e.g. ``quantum_network``), as the scenario loader reports it.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from qesif_core.errors import UserInputError

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

ROLES = ("gateway", "relay", "control_centre")
#: Node and zone names: they become parts of result module names, so no dots or spaces.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class Node:
    """A QKD node: a ``gateway`` (IoT devices attach to it), a trusted ``relay`` or the ``control_centre``."""

    name: str
    zone: str
    role: str


@dataclass(frozen=True)
class Link:
    """A QKD link between nodes ``a`` and ``b``; ``segments`` >= 2 makes it a repeater chain."""

    name: str
    a: str
    b: str
    distance_km: float
    segments: int = 1


def check_name(value: object, where: str) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise UserInputError(
            f"field '{where}': {value!r} is not a valid name (letters, digits, '_' and '-', at most 64, "
            "starting with a letter or digit)"
        )
    return value


class Topology:
    """Nodes and links, validated, with index arrays for graph algorithms.

    ``node_index[name]`` and ``link_index[name]`` give positions; ``link_a``/``link_b`` are the endpoint
    indices of each link; ``link_between[(i, j)]`` (i < j) the link joining two nodes.
    """

    def __init__(self, nodes: Sequence[Node], links: Sequence[Link], where: str = "quantum_network") -> None:
        if not nodes:
            raise UserInputError(f"field '{where}.nodes': a QKD network needs nodes")
        self.nodes = tuple(nodes)
        self.links = tuple(links)
        self.node_index: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            check_name(node.name, f"{where}.nodes[{i}].name")
            check_name(node.zone, f"{where}.nodes[{i}].zone")
            if node.role not in ROLES:
                raise UserInputError(
                    f"field '{where}.nodes[{i}].role': unknown role {node.role!r}; known: {', '.join(ROLES)}"
                )
            if node.name in self.node_index:
                raise UserInputError(f"field '{where}.nodes[{i}].name': node {node.name!r} is listed twice")
            self.node_index[node.name] = i
        centres = [n.name for n in self.nodes if n.role == "control_centre"]
        if len(centres) != 1:
            raise UserInputError(
                f"field '{where}.nodes': exactly one node has role control_centre (got {len(centres)}: "
                f"{', '.join(centres) or 'none'})"
            )
        self.control_centre = centres[0]
        self.link_index: dict[str, int] = {}
        self.link_between: dict[tuple[int, int], int] = {}
        for j, link in enumerate(self.links):
            here = f"{where}.links[{j}]"
            check_name(link.name, f"{here}.name")
            if link.name in self.link_index:
                raise UserInputError(f"field '{here}.name': link {link.name!r} is listed twice")
            ends = []
            for end in ("a", "b"):
                name = getattr(link, end)
                if name not in self.node_index:
                    raise UserInputError(
                        f"field '{here}.{end}': unknown node {name!r}; nodes: {', '.join(self.node_index)}"
                    )
                ends.append(self.node_index[name])
            if ends[0] == ends[1]:
                raise UserInputError(
                    f"field '{here}': a link joins two different nodes (got {link.a!r} twice)"
                )
            pair = (min(ends), max(ends))
            if pair in self.link_between:
                other = self.links[self.link_between[pair]].name
                raise UserInputError(
                    f"field '{here}': nodes {link.a!r} and {link.b!r} are already joined by link {other!r}"
                )
            distance = link.distance_km
            if (
                isinstance(distance, bool)
                or not isinstance(distance, int | float)
                or not math.isfinite(distance)
            ):
                raise UserInputError(
                    f"field '{here}.distance_km': must be a finite number (got {distance!r})"
                )
            if distance <= 0:
                raise UserInputError(f"field '{here}.distance_km': must be > 0 km (got {distance!r})")
            if isinstance(link.segments, bool) or not isinstance(link.segments, int) or link.segments < 1:
                raise UserInputError(
                    f"field '{here}.segments': must be an integer >= 1 (got {link.segments!r})"
                )
            self.link_index[link.name] = j
            self.link_between[pair] = j
        self.link_a = np.array([self.node_index[link.a] for link in self.links], dtype=np.int64)
        self.link_b = np.array([self.node_index[link.b] for link in self.links], dtype=np.int64)
        self.distance_km = np.array([float(link.distance_km) for link in self.links])
        self.where = where
        #: neighbours[i]: (neighbour node, link) pairs of node i, in link order
        self.neighbours: list[list[tuple[int, int]]] = [[] for _ in self.nodes]
        for j, (a, b) in enumerate(zip(self.link_a.tolist(), self.link_b.tolist(), strict=True)):
            self.neighbours[a].append((b, j))
            self.neighbours[b].append((a, j))

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def n_links(self) -> int:
        return len(self.links)

    @property
    def gateways(self) -> list[str]:
        return [n.name for n in self.nodes if n.role == "gateway"]

    def adjacency(self, weights: np.ndarray) -> csr_matrix:
        """Symmetric sparse matrix of link weights; a link with an infinite (or NaN) weight is absent."""
        from scipy.sparse import csr_matrix  # here: SciPy is slow to import and validation needs none of it

        usable = np.isfinite(weights)
        rows = np.concatenate([self.link_a[usable], self.link_b[usable]])
        cols = np.concatenate([self.link_b[usable], self.link_a[usable]])
        data = np.concatenate([weights[usable], weights[usable]]).astype(np.float64)
        return csr_matrix((data, (rows, cols)), shape=(self.n_nodes, self.n_nodes))

    def components(self) -> np.ndarray:
        """Connected-component label of every node over all links (the smallest node index in its
        component; union-find, so that validating a scenario needs no SciPy)."""
        parent = list(range(self.n_nodes))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for a, b in zip(self.link_a.tolist(), self.link_b.tolist(), strict=True):
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
        return np.array([root(i) for i in range(self.n_nodes)], dtype=np.int64)

    def require_connected(self, pairs: Iterable[tuple[str, str, str]]) -> None:
        """Every ``(a, b, field)`` pair must be joined by some path; the error names ``field``."""
        labels = self.components()
        for a, b, field in pairs:
            for name in (a, b):
                if name not in self.node_index:
                    raise UserInputError(
                        f"field '{field}': unknown node {name!r}; nodes: {', '.join(self.node_index)}"
                    )
            if labels[self.node_index[a]] != labels[self.node_index[b]]:
                raise UserInputError(f"field '{field}': no chain of links joins {a!r} and {b!r}")

    def links_of_path(self, path: Sequence[int]) -> list[int]:
        """Link indices along a node path."""
        return [self.link_between[(min(u, v), max(u, v))] for u, v in itertools.pairwise(path)]

    def zones(self) -> list[str]:
        return sorted({n.zone for n in self.nodes})
