"""One self-contained HTML page: Figures 2-7 (embedded PNG) and our values beside the paper's.

The paper's values come from ``scenarios/paper_reference.yaml`` and are only compared with, never used.
For every large deviation the page adds notes computed from the same results (the mode mix of the
sessions, the measured loss of messages, the detector's false-positive rate, how the schemes rank here
and in the paper, the dominant latency or energy component when the backend reports components). No note
is written by hand.

Generated rows are never passed off as measurements: when any run used a dataset's synthetic generator,
a banner at the top says which datasets, and every table row whose runs include such runs carries a note,
whatever its deviation. The attack detection rate is the runs' per-distinct-record ``ids/adr`` (mean over
the runs) with the widest 95 % Wilson interval over them and the distinct attack records per run; the
"Datasets" section lists, per dataset, its source (file or generator), the distinct test records and the
features the loader uses that alone separate the classes (``bridge.datasets.audit``).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from bridge.results import qnet, tidy
from bridge.results.figures import CHANNEL_LABELS, DATASET_LABELS, QBER_REJECTION_THRESHOLD
from bridge.results.keyrate import keyrate_section
from qesif_core.errors import UserInputError

DEFAULT_REFERENCE = Path(__file__).resolve().parents[2] / "scenarios" / "paper_reference.yaml"
#: A deviation larger than this fraction of the paper's value gets explanatory notes.
LARGE_DEVIATION = 0.10
#: Metrics that depend on the dataset's rows (the detector's records; the replayed records' devices and
#: payloads): their rows say when runs used generated rows. QBER and key figures come from the QKD links.
DATASET_DEPENDENT = ("adr_percent", "latency_ms", "throughput_kbps", "energy_mJ")


@dataclass(frozen=True)
class Metric:
    label: str
    unit: str
    vector: str | None = None
    scale: float = 1.0
    digits: int = 1


METRICS: dict[str, Metric] = {
    "qber": Metric("QBER", "", "qkd/qber", 1.0, 4),
    "adr_percent": Metric("Attack detection rate", "%", None, 100.0, 1),
    "latency_ms": Metric("Latency", "ms", "network/latency_ms", 1.0, 1),
    "throughput_kbps": Metric("Throughput (goodput)", "kbit/s", "network/goodput_kbps", 1.0, 0),
    "energy_mJ": Metric("Energy per device per round", "mJ", "network/energy_mJ", 1.0, 1),
    "sessions_above_qber_threshold_percent": Metric("Sessions with QBER > 0.11", "%", None, 1.0, 1),
    "keys_discarded_percent": Metric("Keys discarded", "%", None, 1.0, 1),
}


def _select(attrs: pd.DataFrame, entry: Mapping[str, Any]) -> pd.Index:
    mask = attrs["scheme"].str.lower() == str(entry["scheme"]).lower()
    for field in ("dataset", "channel"):
        if entry.get(field) is not None:
            mask &= attrs[field] == entry[field]
    return attrs.index[mask]


def _vector_samples(table: pd.DataFrame, metric: str, runs: pd.Index) -> np.ndarray:
    long = tidy.vector_rounds(table[table["run"].isin(runs)], metric)
    values = long["value"].to_numpy()
    return values[np.isfinite(values)]


def our_value(table: pd.DataFrame, attrs: pd.DataFrame, entry: Mapping[str, Any]) -> tuple[float, float, int]:
    """Mean, s.d. over rounds (or over runs for per-run quantities) and sample count for one entry."""
    runs = _select(attrs, entry)
    metric = METRICS[entry["metric"]]
    if metric.vector is not None:
        samples = _vector_samples(table, metric.vector, runs) * metric.scale
    elif entry["metric"] == "sessions_above_qber_threshold_percent":
        qber = _vector_samples(table, "qkd/qber", runs)
        return (
            float(np.mean(qber > QBER_REJECTION_THRESHOLD) * 100) if qber.size else math.nan,
            math.nan,
            qber.size,
        )
    elif entry["metric"] == "adr_percent":  # per run: the per-distinct-record scalar
        wide = tidy.scalars(table[table["run"].isin(runs)], ["ids/adr"])
        samples = 100 * wide["ids/adr"].dropna().to_numpy() if "ids/adr" in wide else np.empty(0)
    else:  # keys_discarded_percent, per run
        wide = tidy.scalars(table[table["run"].isin(runs)], ["qkd/keys_accepted", "qkd/keys_discarded"])
        if wide.empty or "qkd/keys_discarded" not in wide or "qkd/keys_accepted" not in wide:
            return math.nan, math.nan, 0
        total = wide["qkd/keys_accepted"] + wide["qkd/keys_discarded"]
        samples = (100 * wide["qkd/keys_discarded"] / total.where(total > 0)).dropna().to_numpy()
    if samples.size == 0:
        return math.nan, math.nan, 0
    std = float(np.std(samples, ddof=1)) if samples.size > 1 else math.nan
    return float(np.mean(samples)), std, int(samples.size)


def _deviation(entry: Mapping[str, Any], ours: float) -> tuple[str, float | None, bool]:
    """Text of the paper's value, relative deviation (None for bounds and ranges), and whether large."""
    if math.isnan(ours):
        return "", None, False
    if "value" in entry:
        paper = float(entry["value"])
        if paper == 0:
            return f"{ours - paper:+.3g}", None, abs(ours) > 0.5
        rel = (ours - paper) / abs(paper)
        return f"{ours - paper:+.4g} ({rel:+.0%})", rel, abs(rel) > LARGE_DEVIATION
    if "range" in entry:
        low, high = (float(v) for v in entry["range"])
        inside = low <= ours <= high
        nearest = min(max(ours, low), high)
        return ("inside the range" if inside else f"{ours - nearest:+.4g} outside"), None, not inside
    bound = float(entry["at_least"])
    return ("meets the bound" if ours >= bound else f"{ours - bound:+.4g} below"), None, ours < bound


def _paper_text(entry: Mapping[str, Any]) -> str:
    if "value" in entry:
        return f"{entry['value']:g}"
    if "range" in entry:
        return f"{entry['range'][0]:g} to {entry['range'][1]:g}"
    return f"&ge; {entry['at_least']:g}"


SESSION_MODES = (
    ("hybrid/quantum_sessions", "QKD keys"),
    ("hybrid/classical_sessions", "classical key exchange"),
    ("hybrid/pq_hybrid_sessions", "post-quantum hybrid exchange"),
)


def _mode_mix(scalars: pd.DataFrame) -> str | None:
    """How the sessions of the selected runs were keyed (from the hybrid/*_sessions scalars)."""
    counts = {label: float(scalars[c].sum()) for c, label in SESSION_MODES if c in scalars}
    total = sum(counts.values())
    if total <= 0:
        return None
    return "sessions: " + ", ".join(f"{n / total:.0%} {label}" for label, n in counts.items())


def _component_note(scalars: pd.DataFrame, prefix: str, suffix: str, skip: set[str]) -> str | None:
    """The largest of the backend's per-component scalars (e.g. network/latency_<part>_ms), if any."""
    parts = [
        c
        for c in scalars.columns
        if c.startswith(prefix) and c.endswith(suffix) and c not in skip and scalars[c].notna().any()
    ]
    if len(parts) < 2:
        return None
    means = scalars[parts].mean().sort_values(ascending=False)
    total = float(means.clip(lower=0).sum())
    if total <= 0:
        return None
    top = means.index[0]
    share = means.iloc[0] / total
    return f"largest component: {top} = {means.iloc[0]:.3g} ({share:.0%} of the listed components)"


def _ranking_note(
    table: pd.DataFrame, attrs: pd.DataFrame, entry: Mapping[str, Any], reference: list[dict[str, Any]]
) -> str | None:
    """How the schemes rank on this metric and condition here, beside the paper's ranking."""
    peers = [
        e
        for e in reference
        if e["metric"] == entry["metric"]
        and "value" in e
        and e.get("dataset") == entry.get("dataset")
        and e.get("channel") == entry.get("channel")
        and bool(e.get("ablation")) == bool(entry.get("ablation"))
    ]
    if len(peers) < 3:
        return None
    ours = {e["scheme"]: our_value(table, attrs, e)[0] for e in peers}
    if any(math.isnan(v) for v in ours.values()):
        return None
    paper_order = [e["scheme"] for e in sorted(peers, key=lambda e: -float(e["value"]))]
    our_order = sorted(ours, key=lambda s: -ours[s])
    same = "same order as" if paper_order == our_order else "differs from"
    return (
        f"ranking here (high to low): {' > '.join(our_order)}; {same} the paper's {' > '.join(paper_order)}"
    )


def deviation_notes(
    table: pd.DataFrame,
    attrs: pd.DataFrame,
    entry: Mapping[str, Any],
    reference: list[dict[str, Any]],
    specs: Mapping[str, Mapping[str, Any]],
) -> list[str]:
    """Facts from the results that bear on a deviation; each computed, none invented."""
    runs = _select(attrs, entry)
    subset = table[table["run"].isin(runs)]
    scalars = tidy.scalars(subset)
    notes: list[str] = []
    metric = entry["metric"]
    mix = _mode_mix(scalars)
    if metric in ("latency_ms", "throughput_kbps", "energy_mJ") and mix:
        notes.append(mix)
    if metric == "throughput_kbps" and {"network/messages_sent", "network/messages_delivered"} <= set(
        scalars
    ):
        sent = float(scalars["network/messages_sent"].sum())
        if sent > 0:
            delivered = (
                f"{float(scalars['network/messages_delivered'].sum()) / sent:.1%} of messages delivered"
            )
            if "network/queue_drops" in scalars:
                queued_out = float(scalars["network/queue_drops"].sum()) / sent
                delivered += f", {queued_out:.1%} dropped at full device queues"
            notes.append(delivered)
    if metric in ("latency_ms", "throughput_kbps", "energy_mJ") and {
        "network/messages_sent",
        "network/retransmissions",
        "network/mac_drops",
    } <= set(scalars):
        sent = float(scalars["network/messages_sent"].sum())
        if sent > 0:
            retx = float(scalars["network/retransmissions"].sum()) / sent
            drops = float(scalars["network/mac_drops"].sum()) / sent
            notes.append(
                f"{retx:.2f} application retransmissions and {drops:.2f} lost link frames per message sent"
            )
    if metric == "latency_ms":
        summary_scalars = {"network/latency_mean_ms", "network/latency_median_ms", "network/latency_p95_ms"}
        note = _component_note(scalars, "network/latency_", "_ms", summary_scalars)
        if "network/latency_median_ms" in scalars:
            # The mean of a saturated run is set by the few messages that wait for retries; the median
            # is what a typical message sees.
            median = scalars["network/latency_median_ms"].mean()
            notes.append(f"median latency of a delivered message {median:.1f} ms (mean over runs)")
        if "network/latency_p95_ms" in scalars:
            notes.append(f"95th percentile latency {scalars['network/latency_p95_ms'].mean():.1f} ms")
        if note:
            notes.append(note)
    if metric == "energy_mJ":
        note = _component_note(scalars, "network/energy_", "_mJ", {"network/energy_per_session_mJ"})
        if note:
            notes.append(note)
    if metric == "adr_percent" and "ids/fpr" in scalars:
        notes.append(f"false-positive rate {100 * scalars['ids/fpr'].mean():.1f}% at this ADR")
    if metric in ("qber", "sessions_above_qber_threshold_percent", "keys_discarded_percent"):
        notes.append(_channel_note([specs[r] for r in runs if r in specs]))
    ranking = _ranking_note(table, attrs, entry, reference)
    if ranking:
        notes.append(ranking)
    return [n for n in notes if n]


def synthetic_runs(attrs: pd.DataFrame) -> pd.Index:
    """The runs that used generated rows (``synthetic`` run attribute)."""
    if "synthetic" not in attrs:
        return attrs.index[:0]
    return attrs.index[attrs["synthetic"].astype(str).str.lower() == "true"]


def synthetic_note(attrs: pd.DataFrame, runs: pd.Index) -> str | None:
    """The note of a table row whose runs include runs on generated rows."""
    generated = runs.intersection(synthetic_runs(attrs))
    if generated.empty:
        return None
    names = ", ".join(sorted(attrs.loc[generated, "dataset"].unique()))
    return (
        f"SYNTHETIC: {len(generated)} of {len(runs)} runs used generated rows ({names}: the "
        "schema-compatible generator, not measured data)"
    )


def detection_interval(table: pd.DataFrame, runs: pd.Index, rate: str = "adr") -> dict[str, Any] | None:
    """The widest 95 % Wilson interval of ``ids/<rate>`` over the runs and their distinct test records."""
    names = [f"ids/{rate}_ci95_low", f"ids/{rate}_ci95_high", "ids/n_attack_test", "ids/n_benign_test"]
    wide = tidy.scalars(table[table["run"].isin(runs)], names)
    if wide.empty or not set(names) <= set(wide):
        return None
    return {
        "low": float(wide[names[0]].min()),
        "high": float(wide[names[1]].max()),
        "attack": (int(wide["ids/n_attack_test"].min()), int(wide["ids/n_attack_test"].max())),
        "benign": (int(wide["ids/n_benign_test"].min()), int(wide["ids/n_benign_test"].max())),
    }


def _count_range(counts: tuple[int, int]) -> str:
    low, high = counts
    return f"{low:,}" if low == high else f"{low:,}-{high:,}"


def dataset_rows(
    table: pd.DataFrame, specs: Mapping[str, Mapping[str, Any]], audit_file: Any = None
) -> list[dict[str, Any]]:
    """One row per dataset of the results: its source (file or generator), distinct test records per run
    and the features the loader uses that alone separate the classes in the file (``audit_file(name,
    path)``, default :func:`bridge.datasets.audit.audit`; a file no longer there is said to be)."""
    if audit_file is None:
        from bridge.datasets.audit import audit as audit_file
    from bridge.datasets.audit import used_suspects

    attrs = tidy.run_attributes(table)
    generated = set(synthetic_runs(attrs))
    rows = []
    for dataset in sorted(attrs["dataset"].unique()):
        runs = attrs.index[attrs["dataset"] == dataset]
        paths = sorted(
            {
                str(specs[r]["dataset"].get("path"))
                for r in runs
                if r in specs and specs[r]["dataset"].get("path")
            }
        )
        on_generator = sum(r in generated for r in runs)
        synthetic = on_generator > 0
        source = ", ".join(Path(p).name for p in paths) or "schema-compatible generator"
        if paths and synthetic:
            source += f"; {on_generator} of {len(runs)} runs on the schema-compatible generator"
        suspects: list[str] = []
        for path in paths:
            if not Path(path).is_file():
                suspects.append(f"({Path(path).name} not found: not audited)")
                continue
            found = used_suspects(audit_file(dataset, path))
            suspects += [f"{name} ({Path(path).name})" for name in found]
        rows.append(
            {
                "dataset": dataset,
                "synthetic": synthetic,
                "source": source,
                "runs": len(runs),
                "records": detection_interval(table, runs),
                "suspects": suspects,
            }
        )
    return rows


def _channel_note(specs: list[Mapping[str, Any]]) -> str | None:
    """The physical channel settings behind a measured QBER (from the runs' resolved specs)."""
    settings = sorted(
        {
            (s["channel"].get("intrinsic_error"), s["channel"].get("eve"), s["channel"].get("eve_fraction"))
            for s in specs
        },
        key=str,
    )
    if not settings:
        return None
    text = "; ".join(
        f"intrinsic error {e}, eavesdropper {eve} on a fraction {f} of pulses" for e, eve, f in settings
    )
    return f"QBER is measured on a channel with {text}"


def figure_html(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    image = f'<img alt="{path.stem}" src="data:image/png;base64,{data}">'
    return f"<figure>{image}<figcaption>{path.stem}</figcaption></figure>"


def load_reference(path: str | Path = DEFAULT_REFERENCE) -> tuple[str, list[dict[str, Any]]]:
    """The paper's citation and its reported values (``scenarios/paper_reference.yaml``)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UserInputError(f"{path}: cannot read the paper's reference values: {exc}") from None
    values = data.get("values") if isinstance(data, dict) else None
    if not isinstance(values, list):
        raise UserInputError(f"{path}: field 'values': expected a list of reference entries")
    for index, entry in enumerate(values):
        if entry.get("metric") not in METRICS:
            raise UserInputError(
                f"{path}: field 'values[{index}].metric': unknown metric {entry.get('metric')!r}"
            )
    return str(data.get("paper", path)), values


def _condition(entry: Mapping[str, Any]) -> str:
    dataset = DATASET_LABELS.get(entry.get("dataset"), "all datasets")
    channel = CHANNEL_LABELS.get(entry.get("channel"), "all channels")
    return f"{dataset}, {channel}"


def comparison_rows(
    table: pd.DataFrame, reference: list[dict[str, Any]], specs: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One row per reference entry: ours (mean, s.d., n), the paper's, the difference and the notes."""
    attrs = tidy.run_attributes(table)
    rows = []
    for entry in reference:
        metric = METRICS[entry["metric"]]
        mean, std, n = our_value(table, attrs, entry)
        difference, rel, large = _deviation(entry, mean)
        runs = _select(attrs, entry)
        notes = deviation_notes(table, attrs, entry, reference, specs) if large else []
        generated = synthetic_note(attrs, runs) if entry["metric"] in DATASET_DEPENDENT else None
        rows.append(
            {
                "entry": entry,
                "metric": metric,
                "ours": mean,
                "std": std,
                "n": n,
                "ci95": detection_interval(table, runs) if entry["metric"] == "adr_percent" else None,
                "difference": difference,
                "relative": rel,
                "large": large,
                "synthetic": generated is not None,
                "notes": ([generated] if generated else []) + notes,
            }
        )
    return rows


def _number(value: float, digits: int) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _datasets_html(rows: list[dict[str, Any]]) -> str:
    esc = html.escape
    out = io.StringIO()
    out.write(
        "<h2>Datasets</h2><p>Where each dataset's rows came from, the distinct held-out records the "
        "detection rates count (per run), and the features the loader uses that alone separate the classes "
        "(balanced accuracy &ge; 0.99, <code>qesif ids audit</code>): such a feature is a prompt for review, "
        "since one field that separates the classes is often a capture artefact.</p>"
    )
    out.write("<table><tr><th>dataset</th><th>rows</th><th>distinct test records per run (attack / benign)")
    out.write("</th><th>used suspect features</th></tr>")
    for row in rows:
        kind = "<strong>SYNTHETIC</strong> (" if row["synthetic"] else "real ("
        records = row["records"]
        counts = (
            f"{_count_range(records['attack'])} / {_count_range(records['benign'])}" if records else "n/a"
        )
        suspects = ", ".join(row["suspects"]) or "none"
        out.write(
            f"<tr><td>{esc(DATASET_LABELS.get(row['dataset'], row['dataset']))}</td>"
            f"<td>{kind}{esc(row['source'])})</td><td>{counts}</td><td>{esc(suspects)}</td></tr>"
        )
    out.write("</table>")
    return out.getvalue()


def render(
    table: pd.DataFrame,
    specs: Mapping[str, Mapping[str, Any]],
    figures: list[Path],
    paper: str,
    reference: list[dict[str, Any]],
    failures: list[dict[str, Any]] = (),
    title: str = "QESIF reproduction report",
    sections: Sequence[str] = (),
) -> str:
    """The HTML page as a string; ``failures`` (the store's failure records) are listed, not hidden.
    Network runs (``quantum_network`` scenarios) get their own section (``bridge.results.qnet``);
    ``sections`` (HTML) go before the figures."""
    table, network = qnet.split(table)
    rows = comparison_rows(table, reference, specs) if not table.empty else []
    attrs = (
        tidy.run_attributes(table)
        if not table.empty
        else pd.DataFrame(columns=["scheme", "dataset", "channel"])
    )
    body = io.StringIO()
    esc = html.escape
    body.write(f"<h1>{esc(title)}</h1>")
    generated = synthetic_runs(attrs)
    if len(generated):
        names = ", ".join(sorted(attrs.loc[generated, "dataset"].unique()))
        body.write(
            f"<p class='synthetic'><strong>Generated rows:</strong> {len(generated)} of {len(attrs)} runs "
            f"({esc(names)}) used the dataset's schema-compatible synthetic generator, not measured data. "
            "Their numbers say nothing about detection on real traffic; every table row whose value depends "
            "on them is marked SYNTHETIC, and Figure 3 hatches their bars.</p>"
        )
    body.write(
        "<p>Every number in the <em>ours</em> column is computed by this simulation from the results "
        f"directory ({len(attrs)} runs). The paper's values are quoted from "
        f"{esc(paper)} (scenarios/paper_reference.yaml) for comparison only. Means and standard "
        "deviations are over rounds (for key discards: over runs). Deviations above "
        f"{LARGE_DEVIATION:.0%} (or outside a range / below a bound) are marked, with notes computed from "
        "the same results.</p>"
    )
    schemes = ", ".join(sorted(attrs["scheme"].unique()))
    if failures:
        body.write(
            f"<p class='warning'><strong>{len(failures)} runs failed and are missing from the figures and "
            "the table:</strong></p><ul>"
        )
        for record in failures:
            body.write(f"<li>{esc(str(record.get('label')))}: {esc(str(record.get('reason')))}</li>")
        body.write("</ul>")
    body.write(f"<p>Schemes: {esc(schemes)}. Datasets: {esc(', '.join(sorted(attrs['dataset'].unique())))}. ")
    body.write(f"Channels: {esc(', '.join(sorted(attrs['channel'].unique())))}.</p>")
    body.write(_datasets_html(dataset_rows(table, specs)) if not table.empty else "")
    for section, ablation in (
        ("Comparison with the paper (Figures 2-6)", False),
        ("Ablation (Figure 7)", True),
    ):
        body.write(f"<h2>{section}</h2><table><tr><th>metric</th><th>scheme</th><th>condition</th>")
        body.write("<th>ours (mean &plusmn; s.d., n)</th><th>paper</th><th>difference</th><th>source</th>")
        body.write("<th>notes on the deviation</th></tr>")
        for row in rows:
            entry = row["entry"]
            if bool(entry.get("ablation")) != ablation:
                continue
            metric: Metric = row["metric"]
            unit = f" {metric.unit}" if metric.unit else ""
            ours = _number(row["ours"], metric.digits)
            if row["ci95"] is not None:
                ci = row["ci95"]
                ours += (
                    f"{unit} [95% CI {_number(100 * ci['low'], metric.digits)}&ndash;"
                    f"{_number(100 * ci['high'], metric.digits)}] (mean of {row['n']} "
                    f"run{'s' if row['n'] != 1 else ''}; "
                    f"n = {_count_range(ci['attack'])} distinct attack records per run)"
                )
            else:
                if not math.isnan(row["std"]):
                    ours += f" &plusmn; {_number(row['std'], metric.digits)}"
                ours += f"{unit} (n={row['n']})"
            if row["synthetic"]:
                ours += " <strong>SYNTHETIC</strong>"
            css = ' class="large"' if row["large"] else ""
            notes = "<br>".join(esc(n) for n in row["notes"])
            body.write(
                f"<tr{css}><td>{esc(metric.label)}</td><td>{esc(entry['scheme'])}</td>"
                f"<td>{esc(_condition(entry))}</td><td>{ours}</td><td>{_paper_text(entry)}{unit}</td>"
                f"<td>{esc(row['difference'])}</td><td>{esc(entry.get('source', ''))}</td>"
                f"<td>{notes}</td></tr>"
            )
        body.write("</table>")
    body.write(keyrate_section(table) if not table.empty else "")
    body.write(qnet.report_section(network, specs))
    for section in sections:
        body.write(section)
    body.write("<h2>Figures</h2>")
    for path in figures:
        body.write(figure_html(path))
    style = (
        "body{font-family:sans-serif;max-width:1400px;margin:auto;padding:1em}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;"
        "vertical-align:top}tr.large td{background:#fff3e0}.warning{color:#b71c1c}"
        ".synthetic{background:#fff8e1;border-left:4px solid #f57f17;padding:6px 10px}"
        "img{max-width:100%}figure{margin:1.5em 0}"
    )
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
        f"<style>{style}</style></head><body>{body.getvalue()}</body></html>\n"
    )
