"""The regime study (``scenarios/regimes.yaml``): Figure 8 and the report's regime section.

Each run is one point: an access technology, acknowledged (MQTT-SN QoS 1 and CoAP CON) or not (QoS 0,
NON), and an offered load per device (1 / ``network.mean_interarrival_s`` messages per second). A point is
*in the paper's regime* when it delivers at least ``REGIME_DELIVERY`` of the messages sent with a median
latency of at most ``REGIME_LATENCY_MS``: the paper reports 20.3-49.6 ms for every scheme and channel
(Fig. 4) and a goodput that carries Table 2's offered load (Fig. 5), i.e. an unsaturated network. Every
sentence of the section is computed from the runs; the paper's values are only marked.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bridge.results import tidy

FIGURE_NAME = "fig8_regimes"
REGIME_DELIVERY = 0.95
REGIME_LATENCY_MS = 50.0
TABLE2_INTERARRIVAL_S = 0.1
ACCESS_LABELS = {"802.15.4": "802.15.4", "wifi": "Wi-Fi"}
LINE_STYLES = {
    ("802.15.4", True): ("#1f77b4", "-"),
    ("802.15.4", False): ("#1f77b4", "--"),
    ("wifi", True): ("#d62728", "-"),
    ("wifi", False): ("#d62728", "--"),
}
_SCALARS = (
    "network/messages_sent",
    "network/messages_delivered",
    "network/latency_median_ms",
    "network/goodput_kbps",
)


def regime_points(table: pd.DataFrame, specs: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per point (runs of the same point, e.g. several seeds, pooled): access, acknowledged,
    interarrival_s, load_per_device (msg/s), sent, delivered, delivery, latency_median_ms (median of the
    runs' medians), goodput_kbps (mean over runs), payload_bytes (mean payload of a delivered message),
    runs."""
    wide = tidy.scalars(table, list(_SCALARS))
    rows = []
    for run, values in wide.iterrows():
        network = specs[run]["network"]
        acknowledged = bool(network.get("mqtt_qos", 1) >= 1 and network.get("coap_confirmable", True))
        rows.append(
            {
                "duration_s": float(specs[run]["rounds"]) * float(specs[run]["round_duration_s"]),
                "access": network.get("access", "802.15.4"),
                "acknowledged": acknowledged,
                "interarrival_s": float(network["mean_interarrival_s"]),
                "sent": values["network/messages_sent"],
                "delivered": values["network/messages_delivered"],
                "latency_median_ms": values["network/latency_median_ms"],
                "goodput_kbps": values["network/goodput_kbps"],
            }
        )
    if not rows:
        return pd.DataFrame()
    runs = pd.DataFrame(rows)
    points = (
        runs.groupby(["access", "acknowledged", "interarrival_s"])
        .agg(
            sent=("sent", "sum"),
            delivered=("delivered", "sum"),
            latency_median_ms=("latency_median_ms", "median"),
            goodput_kbps=("goodput_kbps", "mean"),
            duration_s=("duration_s", "sum"),
            runs=("sent", "size"),
        )
        .reset_index()
    )
    # mean payload of a delivered message (goodput is payload bits per second over each run's duration)
    points["payload_bytes"] = points["goodput_kbps"] * 1e3 * points["duration_s"] / 8 / points["delivered"]
    points["load_per_device"] = 1.0 / points["interarrival_s"]
    points["delivery"] = points["delivered"] / points["sent"]
    return points.sort_values(["access", "acknowledged", "load_per_device"], ascending=[True, False, True])


def in_regime(point: Mapping[str, Any]) -> bool:
    return bool(point["delivery"] >= REGIME_DELIVERY and point["latency_median_ms"] <= REGIME_LATENCY_MS)


def _label(access: str, acknowledged: bool) -> str:
    return f"{ACCESS_LABELS.get(access, access)}, {'acknowledged' if acknowledged else 'unacknowledged'}"


def _paper_value(reference: Sequence[Mapping[str, Any]], metric: str) -> float | None:
    for entry in reference:
        if (
            entry.get("metric") == metric
            and str(entry.get("scheme", "")).lower() == "qesif"
            and entry.get("channel") == "clean"
            and not entry.get("ablation")
            and "value" in entry
        ):
            return float(entry["value"])
    return None


def load_study(store: Any) -> tuple[pd.DataFrame, int]:
    """The study's points (:func:`regime_points`) from a results store, and how many of its runs carry
    synthetic flow records."""
    table = store.load()
    specs = {key: store.spec(key) for key in table["run"].unique()}
    attrs = tidy.run_attributes(table)
    synthetic = 0
    if "synthetic" in attrs:
        synthetic = int((attrs["synthetic"].astype(str).str.lower() == "true").sum())
    return regime_points(table, specs), synthetic


def figure_regimes(points: pd.DataFrame, reference: Sequence[Mapping[str, Any]], synthetic_runs: int = 0):
    """Delivery, median latency and goodput against the offered load per device, one line per access and
    acknowledgement; Table 2's load and the paper's Fig. 4/5 values (QESIF, clean channel) marked; runs on
    generated flow records are said so in the title."""
    import matplotlib.pyplot as plt

    if points.empty:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = (
        ("delivery", 100.0, "Messages delivered (%)", False),
        ("latency_median_ms", 1.0, "Median end-to-end latency (ms)", True),
        ("goodput_kbps", 1.0, "Goodput to the control centre (kbit/s)", True),
    )
    table2_load = 1.0 / TABLE2_INTERARRIVAL_S
    for ax, (column, scale, label, log) in zip(axes, panels, strict=True):
        for (access, acknowledged), line in points.groupby(["access", "acknowledged"], sort=False):
            color, style = LINE_STYLES.get((access, acknowledged), ("#7f7f7f", ":"))
            ax.plot(
                line["load_per_device"],
                line[column] * scale,
                style,
                marker="o",
                color=color,
                label=_label(access, acknowledged),
            )
        ax.axvline(table2_load, color="#555555", linewidth=0.8, linestyle=":")
        ax.set_xscale("log")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("Offered load per device (messages/s)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].axhline(100 * REGIME_DELIVERY, color="#2ca02c", linewidth=0.8)
    axes[1].axhline(REGIME_LATENCY_MS, color="#2ca02c", linewidth=0.8)
    for ax, metric in ((axes[1], "latency_ms"), (axes[2], "throughput_kbps")):
        value = _paper_value(reference, metric)
        if value is not None:
            ax.plot([table2_load], [value], marker="*", markersize=14, color="black", linestyle="none")
            ax.annotate("paper", (table2_load, value), textcoords="offset points", xytext=(6, 4))
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle(
        "Figure 8: Regimes of the network (Table 2's network, QESIF, clean channel; dotted: Table 2's load; "
        f"green: the paper's regime, delivery >= {REGIME_DELIVERY:.0%}, median latency <= "
        f"{REGIME_LATENCY_MS:g} ms; star: the paper's Fig. 4/5 value)"
        + (f"\nGenerated data: {synthetic_runs} runs carry synthetic flow records" if synthetic_runs else ""),
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def _describe(point: Mapping[str, Any]) -> str:
    latency = point["latency_median_ms"]
    latency_text = "no message delivered" if math.isnan(latency) else f"median latency {latency:.1f} ms"
    return (
        f"delivers {point['delivery']:.1%} of {int(point['sent'])} messages, {latency_text}, goodput "
        f"{point['goodput_kbps']:.0f} kbit/s"
    )


def _changes(default: Mapping[str, Any], other: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(setting of the default, what replaces it) for each way ``other`` differs from the default."""
    changes = []
    if other["access"] != default["access"]:
        changes.append(("802.15.4 access", f"{ACCESS_LABELS.get(other['access'], other['access'])} access"))
    if other["acknowledged"] != default["acknowledged"]:
        changes.append(("acknowledged exchanges (QoS 1, CON)", "unacknowledged exchanges (QoS 0, NON)"))
    return changes


def regime_findings(points: pd.DataFrame, reference: Sequence[Mapping[str, Any]]) -> list[str]:
    """The regime section's statements, each computed from ``points``."""
    if points.empty:
        return []
    findings = []
    at = points[np.isclose(points["interarrival_s"], TABLE2_INTERARRIVAL_S)]
    default = at[(at["access"] == "802.15.4") & at["acknowledged"]]
    paper_latency = _paper_value(reference, "latency_ms")
    paper_goodput = _paper_value(reference, "throughput_kbps")
    if len(default):
        point = default.iloc[0]
        paper = (
            f" (the paper, QESIF on the clean channel: {paper_latency:g} ms, {paper_goodput:g} kbit/s)"
            if paper_latency is not None and paper_goodput is not None
            else ""
        )
        findings.append(
            f"At Table 2's load ({1 / TABLE2_INTERARRIVAL_S:g} messages/s per device) the default (802.15.4, "
            f"acknowledged) {_describe(point)}: {'inside' if in_regime(point) else 'outside'} the paper's "
            f"regime{paper}."
        )
        reaching = []
        for _, other in at.iterrows():
            changes = _changes(point, other)
            if not changes:
                continue
            state = "inside" if in_regime(other) else "still outside"
            findings.append(
                f"With {' and '.join(new for _, new in changes)}, the same load {_describe(other)}: {state} "
                "the paper's regime."
            )
            if len(changes) == 1 and in_regime(other):
                reaching.append(changes[0][0])
        if not in_regime(point):
            findings.append(
                "The setting that puts the default out of the paper's regime: "
                + " and ".join(reaching)
                + " (changing it alone brings Table 2's load into the regime)."
                if reaching
                else "No single change of access or acknowledgement brings Table 2's load into the paper's "
                "regime."
            )
    if paper_goodput is not None and len(at):
        carried = at.loc[at["delivery"].idxmax()]
        offered = carried["sent"] / carried["duration_s"]  # messages per second, all devices
        needed = paper_goodput * 1e3 / 8 / offered
        findings.append(
            f"Goodput is payload: the paper's {paper_goodput:g} kbit/s at Table 2's load ({offered:.0f} "
            f"messages/s in all) needs a mean payload of {needed:.0f} B per message; the study's messages "
            f"carry {carried['payload_bytes']:.0f} B on average, so even a network that delivers everything "
            f"({_label(carried['access'], carried['acknowledged'])}: {carried['delivery']:.1%}) reaches "
            f"{carried['goodput_kbps']:.0f} kbit/s."
        )
    for (access, acknowledged), line in points.groupby(["access", "acknowledged"], sort=False):
        inside = line[[in_regime(p) for _, p in line.iterrows()]]
        label = _label(access, acknowledged)
        if inside.empty:
            findings.append(f"{label}: no load of the study is in the paper's regime.")
        elif len(inside) == len(line):
            findings.append(
                f"{label}: every load of the study is in the paper's regime, up to "
                f"{line['load_per_device'].max():g} messages/s per device."
            )
        else:
            outside = line[~line.index.isin(inside.index)]
            findings.append(
                f"{label}: in the paper's regime up to {inside['load_per_device'].max():g} messages/s per "
                f"device (the lowest load outside it: {outside['load_per_device'].min():g} messages/s)."
            )
    return findings


def regime_figure(store: Any, out: str | Path, reference_path: str | Path | None = None) -> list[Path]:
    """Write Figure 8 (PNG and PDF) of the study in ``store`` into ``out``; the files written."""
    from bridge.results.figures import _save
    from bridge.results.report import DEFAULT_REFERENCE, load_reference

    points, synthetic = load_study(store)
    _, reference = load_reference(reference_path or DEFAULT_REFERENCE)
    fig = figure_regimes(points, reference, synthetic)
    return [] if fig is None else _save(fig, Path(out), FIGURE_NAME)


def regime_section_html(
    points: pd.DataFrame,
    reference: Sequence[Mapping[str, Any]],
    synthetic_runs: int = 0,
    figures: Sequence[Path] = (),
) -> str:
    """The report's regime section: criterion, findings, the points as a table and ``figures`` (PNG,
    embedded); ``synthetic_runs`` (runs whose flow records came from the generator) is stated when not
    zero."""
    from bridge.results.report import figure_html

    esc = html.escape
    if points.empty:
        return ""
    out = ["<h2>Regimes of the network (Figure 8, scenarios/regimes.yaml)</h2>"]
    if synthetic_runs:
        out.append(
            f"<p class='warning'>Generated data: {synthetic_runs} of {int(points['runs'].sum())} runs of the "
            "study carry synthetic flow records (their payload sizes are the generator's).</p>"
        )
    out.append(
        f"<p>A point is in the paper's regime when it delivers at least {REGIME_DELIVERY:.0%} of its "
        f"messages with a median latency of at most {REGIME_LATENCY_MS:g} ms (the paper: 20.3-49.6 ms "
        "for every scheme and channel, Fig. 4, and a goodput that carries Table 2's load, Fig. 5). "
        "Findings, each computed from the runs below:</p><ul>"
    )
    out += [f"<li>{esc(text)}</li>" for text in regime_findings(points, reference)]
    out.append("</ul><table><tr><th>access</th><th>acknowledged</th><th>load per device (msg/s)</th>")
    out.append("<th>sent</th><th>delivered</th><th>median latency (ms)</th><th>goodput (kbit/s)</th>")
    out.append("<th>in the paper's regime</th></tr>")
    for _, p in points.iterrows():
        out.append(
            f"<tr><td>{esc(ACCESS_LABELS.get(p['access'], p['access']))}</td>"
            f"<td>{'yes' if p['acknowledged'] else 'no'}</td><td>{p['load_per_device']:g}</td>"
            f"<td>{int(p['sent'])}</td><td>{int(p['delivered'])} ({p['delivery']:.1%})</td>"
            f"<td>{p['latency_median_ms']:.1f}</td><td>{p['goodput_kbps']:.0f}</td>"
            f"<td>{'yes' if in_regime(p) else 'no'}</td></tr>"
        )
    out.append("</table>")
    out += [figure_html(path) for path in figures]
    return "".join(out)
