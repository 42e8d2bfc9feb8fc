"""Topology checks name the field at fault; connectivity, paths and adjacency are what the graph says."""

from __future__ import annotations

import numpy as np
import pytest

from qesif_core.errors import UserInputError
from qesif_core.qnet.topology import Link, Node, Topology


def nodes() -> list[Node]:
    return [
        Node("cc", "centre", "control_centre"),
        Node("r1", "north", "relay"),
        Node("gw1", "north", "gateway"),
        Node("gw2", "south", "gateway"),
    ]


def links() -> list[Link]:
    return [
        Link("cc-r1", "cc", "r1", 5.0),
        Link("r1-gw1", "r1", "gw1", 3.0),
        Link("cc-gw2", "cc", "gw2", 7.0),
    ]


def test_indices_neighbours_and_paths():
    topo = Topology(nodes(), links())
    assert topo.control_centre == "cc" and topo.gateways == ["gw1", "gw2"]
    assert topo.zones() == ["centre", "north", "south"]
    assert topo.link_a.tolist() == [0, 1, 0] and topo.link_b.tolist() == [1, 2, 3]
    assert topo.neighbours[0] == [(1, 0), (3, 2)]
    assert topo.links_of_path([2, 1, 0, 3]) == [1, 0, 2]
    assert len(set(topo.components().tolist())) == 1


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda n, ln: ln.append(Link("x", "cc", "nowhere", 1.0)), "links[3].b", "unknown node 'nowhere'"),
        (lambda n, ln: ln.append(Link("x", "r1", "r1", 1.0)), "links[3]", "two different nodes"),
        (lambda n, ln: ln.append(Link("x", "r1", "cc", 1.0)), "links[3]", "already joined by link 'cc-r1'"),
        (lambda n, ln: ln.append(Link("cc-r1", "gw1", "gw2", 1.0)), "links[3].name", "listed twice"),
        (lambda n, ln: ln.append(Link("x", "gw1", "gw2", 0.0)), "links[3].distance_km", "> 0 km"),
        (lambda n, ln: ln.append(Link("x", "gw1", "gw2", float("nan"))), "links[3].distance_km", "finite"),
        (lambda n, ln: ln.append(Link("x", "gw1", "gw2", 2.0, 0)), "links[3].segments", ">= 1"),
        (lambda n, ln: n.append(Node("cc2", "centre", "control_centre")), "nodes", "exactly one"),
        (lambda n, ln: n.append(Node("gw1", "north", "gateway")), "nodes[4].name", "listed twice"),
        (lambda n, ln: n.append(Node("a.b", "north", "relay")), "nodes[4].name", "not a valid name"),
        (lambda n, ln: n.append(Node("z", "north", "router")), "nodes[4].role", "unknown role"),
    ],
)
def test_mistakes_name_the_field(change, field, words):
    n, ln = nodes(), links()
    change(n, ln)
    with pytest.raises(UserInputError) as err:
        Topology(n, ln, "quantum_network")
    assert f"'quantum_network.{field}'" in str(err.value) and words in str(err.value)


def test_disconnected_required_pair_is_refused():
    topo = Topology([*nodes(), Node("gw3", "east", "gateway")], links())
    with pytest.raises(
        UserInputError, match=r"'quantum_network.nodes\[4\]': no chain of links joins 'gw3' and 'cc'"
    ):
        topo.require_connected([("gw3", "cc", "quantum_network.nodes[4]")])
    topo.require_connected([("gw1", "gw2", "x")])  # joined through cc


def test_adjacency_drops_infinite_weights():
    topo = Topology(nodes(), links())
    matrix = topo.adjacency(np.array([1.0, np.inf, 2.0])).toarray()
    assert matrix[0, 1] == matrix[1, 0] == 1.0 and matrix[1, 2] == 0.0 and matrix[0, 3] == 2.0
