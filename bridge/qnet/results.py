"""A network run's CSV-R table (the layout of ``bridge.cosim.orchestrator``'s tables, other modules).

Run attributes: ``dataset``, ``channel``, ``scheme``, ``seed``, ``backend``, ``synthetic`` (``false``: a
network run reads no flow records), ``experiment`` = ``quantum-network``, ``qnet.monitor`` (``a->b``),
``qnet.policies``, and per link ``qnet.link.<link>.model`` (how it was simulated, e.g. "repeater chain of 2
segments, bbm92 (built-in repeater-chain model)") and ``qnet.link.<link>.note`` where there is one.

Scalars and per-round vectors (module / name):

- ``qnet``: nodes, links, zones, gateways, devices, key_bits, round_duration_s;
- ``qnet.link.<link>``: distance_km, segments, pairs_per_block, mu_signal and mu_decoy (the intensities
  commissioned for the link, BB84; NaN for pair sources), qber_mean, key_rate_bps (the link's secret
  key rate: finite-key length of the blocks Algorithm 1 admitted per second of run time), pool_bits_rate_bps
  (the key bits those blocks handed to the pools per second: the same, or less when the engine reconciles
  a sub-frame of each block), blocks_accepted, blocks_discarded, attacked_blocks, flagged_blocks,
  detection_rate, false_alarm_rate, detection_delay_blocks (first flagged block of an attack window minus
  its first block; NaN without an attack or detection), recovery_delay_blocks (blocks after the window that
  stay flagged); vectors qber, secret_bits, flag, attacked;
- ``qnet.<policy>``: keys_requested, keys_delivered, link_keys_consumed, link_keys_dropped_full,
  link_keys_expired, e2e_keys_discarded_flagged, e2e_keys_discarded_mismatch, sessions,
  sessions_quantum, sessions_classical, sessions_pq_hybrid, sessions_fallback_no_key,
  sessions_fallback_flagged, relays_exposed, max_keys_seen, keys_seen_total (relay exposures summed over
  nodes: end-to-end keys x their intermediate nodes), link_key_reuse (link keys consumed twice: 0
  unless something is broken), monitor_availability (rounds the monitored pair could get a key / rounds),
  monitor_availability_attacked (the same over rounds in an attack window of a link on the pair's
  fewest-hops route), reroute_delay_blocks (first round of that window whose route avoids every attacked
  link, minus the window's first round); vectors keys_requested, keys_delivered, sessions,
  sessions_quantum, sessions_fallback;
- ``qnet.<policy>.monitor``: vectors deliverable, hops, route_attacked, sessions, sessions_fallback;
- ``qnet.<policy>.node.<node>``: keys_seen (end-to-end keys the node relayed, hence held in the clear);
- ``qnet.<policy>.link.<link>``: keys_consumed;
- ``qnet.pair.<a>.<b>``: hops, distance_km (the fewest-hops route), route_rate_bps (its bottleneck link's
  key rate: the end-to-end rate of one route), max_flow_rate_bps (relaying over every route at once);
  every node pair up to ``ALL_PAIRS_MAX_NODES`` nodes, else the gateway-control centre pairs;
- ``qnet.<policy>.pair.<gateway>.<centre>``: delivered_rate_bps (end-to-end key bits delivered to the
  gateway's sessions per second: the IoT demand that was served).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

from bridge.qnet.run import ALL_PAIRS_MAX_NODES, EXPERIMENT, MONITOR_SERIES, ROUND_SERIES, NetworkRun
from qesif_core.qnet.monitor import runs_of
from qesif_core.qnet.routing import max_flow_rate, shortest_route

CSVR = ["run", "type", "module", "name", "attrname", "attrvalue", "value", "vectime", "vecvalue"]


def _fraction(flags: np.ndarray) -> float:
    return float(flags.mean()) if flags.size else float("nan")


def detection_delay(attacked: np.ndarray, flags: np.ndarray) -> float:
    """Blocks from the first attacked block of the first attack window to the first flag inside it."""
    for first, end in runs_of(attacked):
        hits = np.flatnonzero(flags[first:end])
        return float(hits[0]) if hits.size else float("nan")
    return float("nan")


def recovery_delay(attacked: np.ndarray, flags: np.ndarray) -> float:
    """Blocks after the first attack window during which the link stays flagged (then it is routed on
    again); NaN without a window or when the run ends first."""
    for _, end in runs_of(attacked):
        clear = np.flatnonzero(~flags[end:].astype(bool))
        return float(clear[0]) if clear.size else float("nan")
    return float("nan")


def network_table(run: NetworkRun) -> pd.DataFrame:
    spec, topo = run.spec, run.topology
    rows: list[dict[str, Any]] = []
    duration = run.rounds * run.round_s
    times = [(i + 1) * run.round_s for i in range(run.rounds)]

    def attr(name: str, value: str) -> None:
        rows.append({"type": "runattr", "attrname": name, "attrvalue": value})

    def scalar(module: str, name: str, value: float) -> None:
        rows.append({"type": "scalar", "module": module, "name": name, "value": float(value)})

    def vector(module: str, name: str, values: np.ndarray) -> None:
        rows.append(
            {
                "type": "vector",
                "module": module,
                "name": name,
                "vectime": times,
                "vecvalue": list(map(float, values)),
            }
        )

    for name, value in (
        ("dataset", spec.dataset.name),
        ("channel", spec.channel.name),
        ("scheme", spec.scheme),
        ("seed", str(spec.seed)),
        ("backend", "builtin"),
        ("synthetic", "false"),
        ("experiment", EXPERIMENT),
        ("qnet.monitor", "->".join(topo.nodes[i].name for i in run.monitor)),
        ("qnet.policies", ",".join(state.name for state in run.policies)),
    ):
        attr(name, value)
    for link in run.links:
        attr(f"qnet.link.{link.name}.model", link.description)
        if link.name in run.link_notes:
            attr(f"qnet.link.{link.name}.note", run.link_notes[link.name])

    for name, value in (
        ("nodes", topo.n_nodes),
        ("links", topo.n_links),
        ("zones", len(topo.zones())),
        ("gateways", len(run.gateways)),
        ("devices", run.n_devices),
        ("key_bits", run.key_bits),
        ("round_duration_s", run.round_s),
    ):
        scalar("qnet", name, value)

    watch = run.watch
    key_rate = run.admitted_secret.sum(axis=1) / duration
    for j, link in enumerate(run.links):
        module = f"qnet.link.{link.name}"
        attacked, flags = run.attacked[j], watch.flags[j]
        judged = np.isfinite(watch.margin[j])
        qber = watch.qber[j]
        scalar(module, "distance_km", link.channel.distance_km)
        scalar(module, "segments", link.segments)
        scalar(module, "pairs_per_block", link.pairs_per_block())
        scalar(module, "mu_signal", link.channel.mu_signal if link.protocol == "bb84" else np.nan)
        scalar(module, "mu_decoy", link.channel.mu_decoy if link.protocol == "bb84" else np.nan)
        scalar(module, "qber_mean", np.nanmean(qber) if np.isfinite(qber).any() else np.nan)
        scalar(module, "key_rate_bps", key_rate[j])
        scalar(module, "pool_bits_rate_bps", run.block_bits[j].sum() / duration)
        scalar(module, "blocks_accepted", run.accepted[j].sum())
        scalar(module, "blocks_discarded", (~run.accepted[j]).sum())
        scalar(module, "attacked_blocks", attacked.sum())
        scalar(module, "flagged_blocks", flags.sum())
        scalar(module, "detection_rate", _fraction(flags[judged & attacked]))
        scalar(module, "false_alarm_rate", _fraction(flags[judged & ~attacked]))
        scalar(module, "detection_delay_blocks", detection_delay(attacked, flags))
        scalar(module, "recovery_delay_blocks", recovery_delay(attacked, flags))
        vector(module, "qber", qber)
        vector(module, "secret_bits", watch.secret_bits[j])
        vector(module, "flag", flags.astype(float))
        vector(module, "attacked", attacked.astype(float))

    static_routes = {}
    centre = run.centre
    for state in run.policies:
        module = f"qnet.{state.name}"
        network = state.network
        series = state.per_round
        pools = network.pools
        for name in ("keys_requested", "keys_delivered"):
            scalar(module, name, series[name].sum())
        scalar(module, "link_keys_consumed", sum(p.consumed for p in pools))
        scalar(module, "link_keys_dropped_full", sum(p.dropped_full for p in pools))
        scalar(module, "link_keys_expired", sum(p.expired for p in pools))
        for name, value in state.totals.items():
            scalar(module, name, value)
        scalar(module, "relays_exposed", int((network.seen > 0).sum()))
        scalar(module, "max_keys_seen", network.seen.max(initial=0))
        scalar(module, "keys_seen_total", network.seen.sum())
        scalar(module, "link_key_reuse", _reuse(network))
        deliverable = series["monitor_deliverable"]
        scalar(module, "monitor_availability", _fraction(deliverable > 0))
        source, target = run.monitor
        if (source, target) not in static_routes:
            static_routes[(source, target)] = shortest_route(topo, np.ones(topo.n_links), source, target)
        route = static_routes[(source, target)]
        window = (
            run.attacked[list(route.links)].any(axis=0) if route is not None else np.zeros(run.rounds, bool)
        )
        scalar(module, "monitor_availability_attacked", _fraction(deliverable[window] > 0))
        scalar(module, "reroute_delay_blocks", _reroute_delay(window, series["monitor_route_attacked"]))
        for name in ROUND_SERIES:
            vector(module, name, series[name])
        for name in MONITOR_SERIES:
            vector(f"{module}.monitor", name, series[f"monitor_{name}"])
        for i, node in enumerate(topo.nodes):
            scalar(f"{module}.node.{node.name}", "keys_seen", network.seen[i])
        for j, link in enumerate(run.links):
            scalar(f"{module}.link.{link.name}", "keys_consumed", pools[j].consumed)
        for g, node in enumerate(run.gateways):
            rate = state.delivered_to[g] * run.key_bits / duration
            scalar(
                f"{module}.pair.{topo.nodes[node].name}.{topo.nodes[centre].name}", "delivered_rate_bps", rate
            )

    if topo.n_nodes <= ALL_PAIRS_MAX_NODES:
        pairs = list(itertools.combinations(range(topo.n_nodes), 2))
    else:
        pairs = [(g, centre) for g in run.gateways]
    for a, b in pairs:
        route = shortest_route(topo, np.ones(topo.n_links), a, b)
        if route is None:
            continue
        links = list(route.links)
        module = f"qnet.pair.{topo.nodes[a].name}.{topo.nodes[b].name}"
        scalar(module, "hops", route.hops)
        scalar(module, "distance_km", topo.distance_km[links].sum())
        scalar(module, "route_rate_bps", key_rate[links].min())
        scalar(module, "max_flow_rate_bps", max_flow_rate(topo, key_rate, a, b))

    table = pd.DataFrame(rows, columns=CSVR)
    table["run"] = f"qnet-{spec.scheme}-{spec.channel.name}-{spec.seed}"
    return table


def _reuse(network: Any) -> int:
    """Link keys consumed more than once, audited from the network's ledger of consumed serials."""
    by_link: dict[int, list[np.ndarray]] = {}
    for link, serials in network.ledger:
        by_link.setdefault(link, []).append(serials)
    return sum(
        int(sum(s.size for s in parts) - np.unique(np.concatenate(parts)).size) for parts in by_link.values()
    )


def _reroute_delay(window: np.ndarray, route_attacked: np.ndarray) -> float:
    """Rounds from the start of the first attack window on the pair's fewest-hops route to the first round
    of that window whose route avoids every attacked link; NaN without such a window or such a round."""
    for first, end in runs_of(window):
        clear = np.flatnonzero(route_attacked[first:end] == 0)
        return float(clear[0]) if clear.size else float("nan")
    return float("nan")
