"""Figures and the report section of network runs (``quantum_network`` scenarios, ``bridge.qnet``).

Network runs carry the run attribute ``experiment`` = ``quantum-network``; :func:`split` keeps them out of
the paper's Figures 2-7 and comparison table. Figures (PNG and PDF):

- ``qnet_keyrate``: end-to-end key rate of every node pair against the hops and the length of its
  fewest-hops route: the route's bottleneck link rate (one route) and the max-flow rate (every route at
  once), both from the key rates the run's links measured;
- ``qnet_availability``: for the monitored pair, per round, the keys the network could relay (the probe of
  ``bridge.qnet.run``), the route's hops, and the gateway's IoT sessions that fell back to classical key
  exchange, for each routing policy, with the attack windows and Algorithm 2's flags on the attacked links;
- ``qnet_exposure``: per node, the end-to-end keys it relayed and so held in the clear.

With several network runs, each figure shows the first (by run label) and says so.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from qesif_core.qnet.monitor import runs_of

EXPERIMENT = "quantum-network"
FIGURE_NAMES = ("qnet_keyrate", "qnet_availability", "qnet_exposure")
POLICY_STYLE = {"adaptive": ("#1b5e20", "-"), "static": ("#d62728", "--")}


def split(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the other runs, the network runs) of a results table."""
    marks = table[(table["type"] == "runattr") & (table["attrname"] == "experiment")]
    network_runs = set(marks.loc[marks["attrvalue"] == EXPERIMENT, "run"])
    mask = table["run"].isin(network_runs)
    return table[~mask], table[mask]


def _runs(network: pd.DataFrame) -> list[str]:
    return sorted(network["run"].unique())


def _attrs(network: pd.DataFrame, run: str) -> dict[str, str]:
    rows = network[(network["run"] == run) & (network["type"] == "runattr")]
    return dict(zip(rows["attrname"], rows["attrvalue"], strict=True))


def _scalars(network: pd.DataFrame, run: str) -> pd.Series:
    rows = network[(network["run"] == run) & (network["type"] == "scalar")]
    return pd.Series(rows["value"].to_numpy(dtype=float), index=rows["module"] + "/" + rows["name"])


def _vector(network: pd.DataFrame, run: str, module: str, name: str) -> np.ndarray | None:
    rows = network[
        (network["run"] == run)
        & (network["type"] == "vector")
        & (network["module"] == module)
        & (network["name"] == name)
    ]
    if rows.empty:
        return None
    return np.asarray(rows["vecvalue"].iloc[0], dtype=float)


def _by_prefix(scalars: pd.Series, prefix: str, name: str) -> dict[str, float]:
    """``{middle: value}`` of scalars ``<prefix><middle>/<name>``."""
    out = {}
    for key, value in scalars.items():
        module, _, metric = str(key).rpartition("/")
        if metric == name and module.startswith(prefix):
            out[module[len(prefix) :]] = float(value)
    return out


def _first(network: pd.DataFrame) -> tuple[str, dict[str, str], list[str]]:
    """The first network run (by label), its attributes and its routing policies."""
    run = _runs(network)[0]
    attrs = _attrs(network, run)
    return run, attrs, [p for p in attrs.get("qnet.policies", "").split(",") if p]


def _run_label(network: pd.DataFrame, run: str) -> str:
    attrs = _attrs(network, run)
    count = len(_runs(network))
    label = f"{attrs.get('scheme', '?')}, channel {attrs.get('channel', '?')}, seed {attrs.get('seed', '?')}"
    return label if count == 1 else f"{label} (first of {count} network runs)"


def attacked_links(network: pd.DataFrame, run: str) -> list[str]:
    scalars = _scalars(network, run)
    return sorted(k for k, v in _by_prefix(scalars, "qnet.link.", "attacked_blocks").items() if v > 0)


# ------------------------------------------------------------------------------------------------ figures
def figure_keyrate(network: pd.DataFrame) -> plt.Figure | None:
    run = _runs(network)[0]
    scalars = _scalars(network, run)
    hops = _by_prefix(scalars, "qnet.pair.", "hops")
    if not hops:
        return None
    pairs = sorted(hops)
    h = np.array([hops[p] for p in pairs])
    km = np.array([_by_prefix(scalars, "qnet.pair.", "distance_km")[p] for p in pairs])
    route = np.array([_by_prefix(scalars, "qnet.pair.", "route_rate_bps")[p] for p in pairs])
    flow = np.array([_by_prefix(scalars, "qnet.pair.", "max_flow_rate_bps")[p] for p in pairs])
    jitter = (np.arange(len(pairs)) % 7 - 3) * 0.04
    fig, (ax_hops, ax_km) = plt.subplots(1, 2, figsize=(11, 4.0))
    ax_hops.scatter(h + jitter, route, s=14, color="#1f77b4", label="one route (bottleneck link)")
    ax_hops.scatter(
        h + jitter, flow, s=14, facecolors="none", edgecolors="#ff7f0e", label="all routes (max flow)"
    )
    for value in np.unique(h):
        ax_hops.plot([value - 0.25, value + 0.25], [np.median(route[h == value])] * 2, color="#1f77b4", lw=2)
    positive = np.concatenate([route[route > 0], flow[flow > 0]])
    if positive.size and positive.max() > 100 * positive.min():  # a repeater link next to metro links
        ax_hops.set_yscale("log")
        ax_km.set_yscale("log")
    ax_hops.set_xlabel("hops of the fewest-hops route")
    ax_hops.set_ylabel("end-to-end key rate (bit/s)")
    ax_hops.set_xticks(np.unique(h))
    ax_hops.legend(fontsize=8)
    ax_hops.grid(alpha=0.3)
    points = ax_km.scatter(km, route, c=h, cmap="viridis", s=16)
    ax_km.set_xlabel("length of that route (km)")
    ax_km.set_ylabel("end-to-end key rate, one route (bit/s)")
    ax_km.grid(alpha=0.3)
    fig.colorbar(points, ax=ax_km, label="hops")
    fig.suptitle(
        f"End-to-end key rate of {len(pairs)} node pairs from the links' measured key rates "
        f"(lines: median per hop count)\n{_run_label(network, run)}",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def figure_availability(network: pd.DataFrame) -> plt.Figure | None:
    run, attrs, policies = _first(network)
    if not policies:
        return None
    round_s = float(_scalars(network, run).get("qnet/round_duration_s", 1.0))
    fig, (ax_keys, ax_hops, ax_sessions) = plt.subplots(3, 1, figsize=(10, 7.5), sharex=True)
    for name in attacked_links(network, run):
        attacked = _vector(network, run, f"qnet.link.{name}", "attacked")
        flags = _vector(network, run, f"qnet.link.{name}", "flag")
        for first, end in runs_of(attacked > 0):
            for ax in (ax_keys, ax_hops, ax_sessions):
                ax.axvspan(first * round_s, end * round_s, color="#d62728", alpha=0.08)
        t = np.flatnonzero(flags > 0) * round_s
        ax_keys.plot(t, np.zeros(t.size), "|", color="#d62728", ms=12, label=f"Algorithm 2 flags {name}")
    width = round_s * 0.4
    for i, policy in enumerate(policies):
        color, style = POLICY_STYLE.get(policy, ("#7f7f7f", ":"))
        module = f"qnet.{policy}.monitor"
        deliverable = _vector(network, run, module, "deliverable")
        t = np.arange(len(deliverable)) * round_s
        ax_keys.step(t, deliverable, where="post", color=color, ls=style, label=f"{policy} routing")
        ax_hops.step(
            t, _vector(network, run, module, "hops"), where="post", color=color, ls=style, label=policy
        )
        sessions = _vector(network, run, module, "sessions")
        fallback = _vector(network, run, module, "sessions_fallback")
        if sessions is not None and np.isfinite(sessions).any():
            ax_sessions.bar(t + (i - 0.5) * width + round_s / 2, np.nan_to_num(fallback), width, color=color,
                            label=f"{policy}: fell back")  # fmt: skip
    ax_keys.set_ylabel("keys the pair could\nget now (probe)")
    ax_keys.legend(fontsize=8, loc="upper right")
    ax_hops.set_ylabel("route hops\n(gap: no route)")
    ax_hops.legend(fontsize=8, loc="upper right")
    ax_sessions.set_ylabel("IoT sessions of the\ngateway without a QKD key")
    ax_sessions.set_xlabel("simulated time (s); shaded: attack window")
    if ax_sessions.get_legend_handles_labels()[0]:
        ax_sessions.legend(fontsize=8, loc="upper right")
    for ax in (ax_keys, ax_hops, ax_sessions):
        ax.grid(alpha=0.3)
    monitor = attrs.get("qnet.monitor", "?")
    fig.suptitle(
        f"Key availability for {monitor} while a link on its route is attacked\n{_run_label(network, run)}",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def figure_exposure(network: pd.DataFrame) -> plt.Figure | None:
    run, _, policies = _first(network)
    scalars = _scalars(network, run)
    seen = {p: _by_prefix(scalars, f"qnet.{p}.node.", "keys_seen") for p in policies}
    if not policies or not seen[policies[0]]:
        return None
    nodes = sorted(seen[policies[0]], key=lambda n: (-max(seen[p].get(n, 0) for p in policies), n))
    nodes = [n for n in nodes if any(seen[p].get(n, 0) > 0 for p in policies)] or nodes
    x = np.arange(len(nodes))
    width = 0.8 / len(policies)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(nodes) + 2), 3.8))
    for i, policy in enumerate(policies):
        color, _ = POLICY_STYLE.get(policy, ("#7f7f7f", ":"))
        ax.bar(x + (i - (len(policies) - 1) / 2) * width, [seen[policy].get(n, 0) for n in nodes], width,
               color=color, label=f"{policy} routing")  # fmt: skip
    ax.set_xticks(x, nodes, rotation=60, ha="right")
    ax.set_ylabel("end-to-end keys seen in the clear")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(
        "Trust exposure: keys each node relayed (every relay on a route sees the key)\n"
        + _run_label(network, run),
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def make_figures(network: pd.DataFrame, out: Path, save: Any) -> tuple[list[Path], list[str]]:
    """Write the network figures with ``save(fig, out, name)`` (``figures._save``)."""
    written: list[Path] = []
    skipped: list[str] = []
    if network.empty:
        return written, skipped  # no network runs: nothing to draw, nothing skipped
    with plt.rc_context({"font.size": 9, "svg.hashsalt": "qesif"}):
        for name, build in zip(
            FIGURE_NAMES, (figure_keyrate, figure_availability, figure_exposure), strict=True
        ):
            fig = build(network)
            if fig is None:
                skipped.append(name)
            else:
                written += save(fig, out, name)
    return written, skipped


# ------------------------------------------------------------------------------------------------ report
def _fmt(value: float, digits: int = 0) -> str:
    return (
        "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"
    )


def _share(part: float, whole: float) -> str:
    return f"{_fmt(part)} ({part / whole:.0%})" if whole else _fmt(part)


def report_section(network: pd.DataFrame, specs: Mapping[str, Mapping[str, Any]]) -> str:
    """HTML of the report's network section (empty without network runs); every number from the results."""
    if network.empty:
        return ""
    esc = html.escape
    out = ["<h2>City QKD network with trusted relays (beyond the paper)</h2>"]
    for run in _runs(network):
        attrs, s = _attrs(network, run), _scalars(network, run)
        policies = [p for p in attrs.get("qnet.policies", "").split(",") if p]
        models = {k.removeprefix("qnet.link.").removesuffix(".model"): v for k, v in attrs.items()
                  if k.startswith("qnet.link.") and k.endswith(".model")}  # fmt: skip
        notes = {k.removeprefix("qnet.link.").removesuffix(".note"): v for k, v in attrs.items()
                 if k.startswith("qnet.link.") and k.endswith(".note")}  # fmt: skip
        rates = _by_prefix(s, "qnet.link.", "key_rate_bps")
        qbers = _by_prefix(s, "qnet.link.", "qber_mean")
        out.append(
            f"<h3>Run {esc(run)}: {esc(attrs.get('scheme', '?'))}, channel {esc(attrs.get('channel', '?'))}, "
            f"seed {esc(attrs.get('seed', '?'))}</h3>"
            f"<p>{_fmt(s.get('qnet/nodes'))} QKD nodes in {_fmt(s.get('qnet/zones'))} zones "
            f"({_fmt(s.get('qnet/gateways'))} gateways), {_fmt(s.get('qnet/links'))} QKD links, "
            f"{_fmt(s.get('qnet/devices'))} IoT devices, rounds of {_fmt(s.get('qnet/round_duration_s'))} s "
            f"(one QKD block per link per round), end-to-end keys of {_fmt(s.get('qnet/key_bits'))} bits. "
            f"Link key rates {_fmt(min(rates.values()))} to {_fmt(max(rates.values()))} bit/s, mean QBER "
            f"{min(qbers.values()):.4f} to {max(qbers.values()):.4f} (attacked blocks included). "
            "Trusted relays are assumed honest: every relay on a route holds the end-to-end key in the clear "
            "(counted below). The paper's design gives each gateway one QKD link to the control centre; "
            "here a gateway's keys cross several links and relays (docs/qkd-network.md).</p>"
        )
        special = {
            n: m for n, m in models.items() if not m.startswith("direct") or "QuISP" in m or n in notes
        }
        if special:
            out.append("<p>Links not on the built-in direct-link engine: ")
            out.append("; ".join(
                f"{esc(n)}: {esc(m)}" + (f" <strong>({esc(notes[n])})</strong>" if n in notes else "")
                + f", {_fmt(s.get(f'qnet.link.{n}/key_rate_bps'))} bit/s"
                for n, m in sorted(special.items())
            ))  # fmt: skip
            out.append(".</p>")
        attacked = attacked_links(network, run)
        if attacked:
            out.append(
                "<table><tr><th>attacked link</th><th>attacked blocks</th><th>first flag after the attack "
                "began (blocks)</th><th>flagged attacked blocks</th><th>still flagged after the attack "
                "(blocks)</th><th>flags on unattacked blocks</th></tr>"
            )
            for name in attacked:
                m = f"qnet.link.{name}"
                out.append(
                    f"<tr><td>{esc(name)}</td><td>{_fmt(s.get(f'{m}/attacked_blocks'))}</td>"
                    f"<td>{_fmt(s.get(f'{m}/detection_delay_blocks'))}</td>"
                    f"<td>{_fmt(100 * s.get(f'{m}/detection_rate', math.nan), 1)}%</td>"
                    f"<td>{_fmt(s.get(f'{m}/recovery_delay_blocks'))}</td>"
                    f"<td>{_fmt(100 * s.get(f'{m}/false_alarm_rate', math.nan), 1)}%</td></tr>"
                )
            out.append("</table>")
        out.append("<table><tr><th>routing policy</th>" + "".join(f"<th>{esc(p)}</th>" for p in policies))
        out.append("</tr>")
        table = [_policy_column(s, p) for p in policies]
        labels = _policy_rows(esc(attrs.get("qnet.monitor", "")))
        for index, label in enumerate(labels):
            out.append(f"<tr><td>{label}</td>" + "".join(f"<td>{col[index]}</td>" for col in table) + "</tr>")
        out.append("</table>")
    out.append(
        "<p>adaptive: shortest paths weighted by pool depletion, flagged links removed while flagged; "
        "static: fewest-hops routes fixed at commissioning (the baseline). Both policies run on the same QKD "
        "blocks. Figures qnet_keyrate, qnet_availability and qnet_exposure below.</p>"
    )
    return "".join(out)


def _policy_rows(monitor: str) -> list[str]:
    """Row labels of the policy table, in the order of :func:`_policy_column`."""
    return [
        "end-to-end keys requested / delivered",
        "IoT sessions",
        "... on a QKD key",
        "... fell back: no end-to-end key",
        "... fell back: route flagged by Algorithm 2",
        f"monitored pair {monitor}: rounds with a key available",
        "... during the attack on its fewest-hops route",
        "... rounds until its route avoided the attacked link",
        "link keys consumed",
        "link keys used more than once (audit of every consumed key ID)",
        "link keys erased unused (store full / expired)",
        "nodes that held end-to-end keys as relays",
        "most end-to-end keys seen by one node",
        "relay exposures in all (keys x intermediate nodes)",
    ]


def _policy_column(s: pd.Series, policy: str) -> list[str]:
    """One policy's values for the rows of :func:`_policy_rows`."""

    def v(name: str) -> float:
        return float(s.get(f"qnet.{policy}/{name}", math.nan))

    sessions = v("sessions")
    return [
        f"{_fmt(v('keys_requested'))} / {_fmt(v('keys_delivered'))}",
        _fmt(sessions),
        _share(v("sessions_quantum"), sessions),
        _share(v("sessions_fallback_no_key"), sessions),
        _share(v("sessions_fallback_flagged"), sessions),
        _fmt(100 * v("monitor_availability"), 1) + "%",
        _fmt(100 * v("monitor_availability_attacked"), 1) + "%",
        _fmt(v("reroute_delay_blocks")),
        _fmt(v("link_keys_consumed")),
        _fmt(v("link_key_reuse")),
        f"{_fmt(v('link_keys_dropped_full'))} / {_fmt(v('link_keys_expired'))}",
        _fmt(v("relays_exposed")),
        _fmt(v("max_keys_seen")),
        _fmt(v("keys_seen_total")),
    ]
