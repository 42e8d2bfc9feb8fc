"""Shortest-path trees, adaptive weights and the max-flow key rate on small graphs with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from qesif_core.errors import UserInputError
from qesif_core.qnet.routing import (
    RoutingParams,
    adaptive_weights,
    max_flow_rate,
    shortest_route,
    shortest_tree,
    tree_route,
)
from qesif_core.qnet.topology import Link, Node, Topology


def square() -> Topology:
    """a - b - d and a - c - d (two 2-hop routes), plus a long direct a - d link."""
    nodes = [Node(n, "z", "control_centre" if n == "d" else "relay") for n in "abcd"]
    links = [
        Link("ab", "a", "b", 1.0),
        Link("bd", "b", "d", 1.0),
        Link("ac", "a", "c", 1.0),
        Link("cd", "c", "d", 1.0),
        Link("ad", "a", "d", 9.0),
    ]
    return Topology(nodes, links)


def test_cheapest_route_and_deterministic_ties():
    topo = square()
    route = shortest_route(topo, np.array([1.0, 1.0, 1.0, 1.0, 5.0]), 0, 3)
    assert route.nodes == (0, 1, 3) and route.links == (0, 1) and route.hops == 2  # tie b/c: smaller index
    assert shortest_route(topo, np.array([1.0, 1.0, 1.0, 1.0, 1.5]), 0, 3).links == (4,)
    blocked = shortest_route(topo, np.array([np.inf, 1.0, 1.0, 1.0, np.inf]), 0, 3)
    assert blocked.nodes == (0, 2, 3)
    assert shortest_route(topo, np.full(5, np.inf), 0, 3) is None


def test_one_tree_gives_every_node_its_route():
    topo = square()
    tree = shortest_tree(topo, np.ones(5), 3)
    assert tree[3] is None
    assert tree_route(tree, 0, 3).links == (4,) and tree_route(tree, 1, 3).links == (1,)
    with pytest.raises(ValueError):
        tree_route(tree, 3, 3)


def test_adaptive_weights_remove_flagged_and_empty_links():
    weights = adaptive_weights(
        np.array([10.0, 0.0, 5.0]), np.array([10.0, 10.0, 10.0]), np.array([False, False, True]), 2.0
    )
    assert weights[0] == 1.0 and np.isinf(weights[1]) and np.isinf(weights[2])
    assert adaptive_weights(np.array([5.0]), np.array([10.0]), np.array([False]), 2.0)[0] == 2.0


def test_max_flow_adds_disjoint_routes():
    topo = square()
    rate = np.array([100.0, 30.0, 50.0, 80.0, 7.0])  # a-b-d carries 30, a-c-d 50, a-d 7
    assert max_flow_rate(topo, rate, 0, 3) == pytest.approx(87.0, rel=1e-5)
    assert max_flow_rate(topo, np.zeros(5), 0, 3) == 0.0


def test_routing_params_are_checked():
    with pytest.raises(UserInputError, match="unknown"):
        RoutingParams("shortest")
    with pytest.raises(UserInputError, match=">= 0"):
        RoutingParams("adaptive", -1.0)
