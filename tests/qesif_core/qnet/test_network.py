"""The key layer: end-to-end keys equal at both ends, no link key used twice, every relay counted,
flagged links avoided, a partition delivers nothing (and nothing stale)."""

from __future__ import annotations

import numpy as np
import pytest

from qesif_core.qnet.network import KeyNetwork
from qesif_core.qnet.pools import LinkKeyPool
from qesif_core.qnet.routing import RoutingParams
from qesif_core.qnet.topology import Link, Node, Topology

KEY_BITS = 64


def chain_with_bypass() -> Topology:
    """gw - r1 - r2 - cc (3 hops) and gw - r3 - r4 - r5 - cc (4 hops)."""
    names = ["gw", "r1", "r2", "r3", "r4", "r5", "cc"]
    roles = {"gw": "gateway", "cc": "control_centre"}
    nodes = [Node(n, "z", roles.get(n, "relay")) for n in names]
    pairs = [("gw", "r1"), ("r1", "r2"), ("r2", "cc"), ("gw", "r3"), ("r3", "r4"), ("r4", "r5"), ("r5", "cc")]
    return Topology(nodes, [Link(f"{a}-{b}", a, b, 5.0) for a, b in pairs])


def filled_network(rng, policy="adaptive", keys_per_link=20, capacity=100) -> KeyNetwork:
    topo = chain_with_bypass()
    pools = []
    for link in topo.links:
        pool = LinkKeyPool(link.name, key_bits=KEY_BITS, capacity=capacity)
        bits = rng.integers(0, 2, KEY_BITS * keys_per_link, dtype=np.uint8)
        pool.add(bits, bits.copy(), now=0.0)
        pools.append(pool)
    return KeyNetwork(topo, pools, RoutingParams(policy), rng, keep_ledger=True)


def test_keys_arrive_equal_and_each_relay_has_seen_them(rng):
    net = filled_network(rng)
    topo = net.topology
    gw, cc = topo.node_index["gw"], topo.node_index["cc"]
    delivery = net.deliver(gw, cc, 5)
    assert delivery.count == 5 and delivery.discarded == 0
    assert np.array_equal(delivery.at_source, delivery.at_target)
    assert len({row.tobytes() for row in delivery.at_source}) == 5  # fresh keys, all different
    ((route, count),) = delivery.routes
    assert [topo.nodes[i].name for i in route.nodes] == ["gw", "r1", "r2", "cc"] and count == 5
    seen = {topo.nodes[i].name: int(net.seen[i]) for i in range(topo.n_nodes)}
    assert seen == {"gw": 0, "r1": 5, "r2": 5, "r3": 0, "r4": 0, "r5": 0, "cc": 0}
    assert [net.pools[j].consumed for j in range(7)] == [5, 5, 5, 0, 0, 0, 0]


def test_a_large_request_continues_on_the_next_route_and_no_link_key_is_used_twice(rng):
    net = filled_network(rng, keys_per_link=20)
    topo = net.topology
    gw, cc = topo.node_index["gw"], topo.node_index["cc"]
    total = 0
    for _ in range(10):
        delivery = net.deliver(gw, cc, 7)
        assert np.array_equal(delivery.at_source, delivery.at_target)
        total += delivery.count
    assert total == 40  # each route's bottleneck holds 20 keys
    assert net.deliver(gw, cc, 1).count == 0 and net.deliverable(gw, cc, 10) == 0
    taken = {}
    for link, serials in net.ledger:
        taken.setdefault(link, []).extend(serials.tolist())
    assert all(len(s) == len(set(s)) == 20 for s in taken.values())  # every key once, none twice
    assert sum(pool.consumed for pool in net.pools) == 20 * 3 + 20 * 4


def test_flagged_link_is_avoided_and_a_partition_delivers_nothing(rng):
    net = filled_network(rng)
    topo = net.topology
    gw, cc = topo.node_index["gw"], topo.node_index["cc"]
    flags = np.zeros(topo.n_links, dtype=bool)
    flags[topo.link_index["r1-r2"]] = True
    net.flagged = flags
    route = net.route(gw, cc)
    assert [topo.nodes[i].name for i in route.nodes] == ["gw", "r3", "r4", "r5", "cc"]
    flags[topo.link_index["r4-r5"]] = True
    net.flagged = flags
    before = [pool.stored for pool in net.pools]
    assert net.route(gw, cc) is None and net.deliverable(gw, cc, 5) == 0
    delivery = net.deliver(gw, cc, 5)
    assert delivery.count == 0 and delivery.routes == ()
    assert [pool.stored for pool in net.pools] == before  # nothing consumed


def test_deliverable_consumes_nothing_and_matches_deliver(rng):
    net = filled_network(rng, keys_per_link=6)
    gw, cc = net.topology.node_index["gw"], net.topology.node_index["cc"]
    before = [pool.stored for pool in net.pools]
    assert net.deliverable(gw, cc, 100) == 12
    assert [pool.stored for pool in net.pools] == before
    assert net.deliver(gw, cc, 100).count == 12


def test_static_routing_keeps_its_route_and_ignores_flags(rng):
    net = filled_network(rng, policy="static", keys_per_link=4)
    topo = net.topology
    gw, cc = topo.node_index["gw"], topo.node_index["cc"]
    flags = np.zeros(topo.n_links, dtype=bool)
    flags[topo.link_index["r1-r2"]] = True
    net.flagged = flags
    assert net.route(gw, cc).links == (0, 1, 2)
    assert net.deliver(gw, cc, 10).count == 4  # no second route
    assert net.route(gw, cc) is None


def test_a_key_whose_copies_differ_is_discarded_not_delivered(rng):
    net = filled_network(rng, keys_per_link=0)
    topo = net.topology
    bits = rng.integers(0, 2, KEY_BITS * 3, dtype=np.uint8)
    for name in ("gw-r1", "r1-r2", "r2-cc"):
        other = bits.copy()
        if name == "r1-r2":
            other[KEY_BITS + 1] ^= 1  # the second key of this link differs between its ends
        net.pools[topo.link_index[name]].add(bits, other, now=0.0)
    delivery = net.deliver(topo.node_index["gw"], topo.node_index["cc"], 3)
    assert delivery.count == 2 and delivery.discarded == 1 and net.discarded == 1
    assert np.array_equal(delivery.at_source, delivery.at_target)


@pytest.mark.parametrize("policy", ["adaptive", "static"])
def test_same_seed_same_keys(policy):
    outputs = []
    for _ in range(2):
        rng = np.random.default_rng(5)
        net = filled_network(rng, policy=policy)
        outputs.append(net.deliver(0, 6, 9).at_target.tobytes())
    assert outputs[0] == outputs[1]
