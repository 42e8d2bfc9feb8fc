"""A network run end to end: the attacked link is flagged and routed around within the stated blocks, the
static baseline loses the pair's keys instead, no link key is used twice, every relay is counted, IoT
sessions without a key fall back and are counted, and the same seed gives the same table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bridge.cosim.orchestrator import run_once
from bridge.results import tidy
from bridge.scenario import expand, parse_scenario

#: docs/qkd-network.md: Algorithm 2 flags a 56% intercept-resend attacker within this many blocks of its
#: start, and from the flagged block on the adaptive route avoids the link.
DETECTION_BOUND_BLOCKS = 1
REROUTE_BOUND_BLOCKS = 1


def spec_of(data):
    (run,) = expand(parse_scenario(data, "t.yaml"), "t.yaml")
    return run.spec


def vector(table: pd.DataFrame, module: str, name: str) -> np.ndarray:
    row = table[(table["type"] == "vector") & (table["module"] == module) & (table["name"] == name)]
    (values,) = row["vecvalue"].tolist()
    return np.asarray(values, dtype=float)


def run(data) -> tuple[pd.DataFrame, pd.Series]:
    table = run_once(spec_of(data))
    return table, tidy.scalars(table).iloc[0]


def test_attack_is_detected_rerouted_and_the_baseline_loses_keys(scenario):
    table, s = run(scenario)
    link = "qnet.link.r1--cc"
    attacked, flags = vector(table, link, "attacked"), vector(table, link, "flag")
    assert attacked.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0]  # blocks starting in [40 s, 80 s)
    assert s[f"{link}/detection_delay_blocks"] <= DETECTION_BOUND_BLOCKS - 1
    assert flags[attacked == 1].all() and s[f"{link}/detection_rate"] == 1.0
    assert s["qnet.adaptive/reroute_delay_blocks"] <= REROUTE_BOUND_BLOCKS - 1
    hops = vector(table, "qnet.adaptive.monitor", "hops")
    route_attacked = vector(table, "qnet.adaptive.monitor", "route_attacked")
    assert (route_attacked[flags == 1] == 0).all()  # never on a flagged link
    assert (hops[flags == 1] == 2).all()  # gw1 - r2 - cc instead of gw1 - r1 - cc
    assert s["qnet.adaptive/monitor_availability_attacked"] == 1.0
    assert s["qnet.static/monitor_availability_attacked"] == 0.0  # its only route is flagged
    deliverable = vector(table, "qnet.static.monitor", "deliverable")
    assert (deliverable[flags == 1] == 0).all() and (deliverable[flags == 0] > 0).all()


def test_keys_links_relays_and_sessions_add_up(scenario):
    table, s = run(scenario)
    for policy in ("adaptive", "static"):
        p = f"qnet.{policy}"
        assert s[f"{p}/link_key_reuse"] == 0 and s[f"{p}/e2e_keys_discarded_mismatch"] == 0
        consumed = sum(
            s[f"{p}.link.{name}/keys_consumed"]
            for name in ("gw1--r1", "r1--cc", "gw1--r2", "r2--cc", "gw2--cc")
        )
        assert consumed == s[f"{p}/link_keys_consumed"]
        seen = sum(s[f"{p}.node.{n}/keys_seen"] for n in ("cc", "r1", "r2", "gw1", "gw2"))
        # a key relayed over h hops is seen by h - 1 relays: sum of (h - 1) = link keys - end-to-end keys
        assert seen == consumed - s[f"{p}/keys_delivered"] == s[f"{p}/keys_seen_total"]
        assert s[f"{p}.node.cc/keys_seen"] == 0 and s[f"{p}.node.gw1/keys_seen"] == 0
        sessions = s[f"{p}/sessions"]
        assert (
            sessions
            == s[f"{p}/sessions_quantum"] + s[f"{p}/sessions_classical"] + s[f"{p}/sessions_pq_hybrid"]
        )
        assert (
            s[f"{p}/sessions_fallback_no_key"] + s[f"{p}/sessions_fallback_flagged"]
            <= s[f"{p}/sessions_classical"]
        )
        assert s[f"{p}/sessions_quantum"] <= s[f"{p}/keys_delivered"]
        assert vector(table, p, "sessions").sum() == sessions
    # the static baseline's gw1 sessions fall back while its route is flagged
    assert (
        s["qnet.static/sessions_fallback_flagged"] > 0 and s["qnet.adaptive/sessions_fallback_flagged"] == 0
    )


def test_scarce_keys_make_sessions_fall_back_and_are_counted(scenario):
    scenario["network"]["devices"] = 200  # far more sessions than the links' keys
    scenario["keys"]["session_rounds"] = 1
    _, s = run(scenario)
    assert s["qnet.adaptive/sessions_fallback_no_key"] > 0
    assert s["qnet.adaptive/keys_delivered"] < s["qnet.adaptive/keys_requested"]
    assert s["qnet.adaptive/sessions_quantum"] > 0


def test_same_seed_same_table(scenario):
    first, _ = run(scenario)
    second, _ = run(scenario)
    pd.testing.assert_frame_equal(first, second)


def test_two_processes_give_the_same_table(scenario):
    from bridge.qnet.run import run_network

    spec = spec_of(scenario)
    pd.testing.assert_frame_equal(run_network(spec, workers=1), run_network(spec, workers=2))
