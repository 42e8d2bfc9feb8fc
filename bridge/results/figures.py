"""The paper's Figures 2-7 drawn from a results table (mean and spread over rounds), and
Figure 9 (key rate against QBER, computed by the QKD engine for the runs' link: ``bridge.results.keyrate``).

Figures 2-6 compare QESIF with the baselines (every scheme in the results except QESIF's ablated
variants, whose names start with ``QESIF-``); Figure 7 compares QESIF with its ablated variants. Each
figure is written as PNG and PDF. Bars show the mean over all rounds of all runs of a group (scheme,
dataset, channel; seeds pooled); whiskers run from the 10th to the 90th percentile of those rounds with a
dot at the median (latency is skewed: mean - s.d. would go below zero), and the caption gives n.

Figure 3 shows detection per distinct held-out record (the runs' ``ids/*`` scalars): bars are the mean
over a group's runs (channel conditions, seeds), error bars the 95 % Wilson interval, the widest over
those runs, and each dataset's label gives the distinct attack / benign test records (n) per run.
Results from generated rows are marked: hatched bars and a legend entry in Figure 3, "(synthetic rows)"
in the other figures' dataset titles (the runs' ``synthetic`` attribute).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from bridge.results import qnet, tidy

DATASET_LABELS = {"ton_iot": "TON_IoT", "edge_iiotset": "Edge-IIoTset", "bot_iot": "Bot-IoT"}
CHANNEL_LABELS = {"clean": "Clean", "noisy": "Noisy", "eavesdropped": "Eavesdropped"}
CHANNEL_COLORS = {"clean": "#2ca02c", "noisy": "#ff7f0e", "eavesdropped": "#d62728"}
#: Paper order of the schemes (others follow alphabetically); matched case-insensitively.
SCHEME_ORDER = ("qesif", "quids", "qrhe", "hyqusec", "qlsn", "qesif-qkd", "qesif-qids", "qesif-hybrid")
QBER_REJECTION_THRESHOLD = 0.11
FIGURE_NAMES = (
    "fig2_qber",
    "fig3_adr",
    "fig4_latency",
    "fig5_throughput",
    "fig6_energy",
    "fig7_ablation",
    "fig9_keyrate",
)
#: (metric, axis label, scale, higher is better) of the ablation heatmap's columns.
ABLATION_METRICS = (
    ("ids/adr", "ADR per round\n(replay view, %)", 100.0, True),
    ("network/latency_ms", "Latency (ms)", 1.0, False),
    ("network/goodput_kbps", "Throughput (kbit/s)", 1.0, True),
    ("network/energy_mJ", "Energy (mJ per\ndevice and round)", 1.0, False),
)
_PALETTE = ("#1b5e20", "#1f77b4", "#ff7f0e", "#9467bd", "#d62728", "#8c564b", "#e377c2", "#7f7f7f")


SYNTHETIC_HATCH = "///"


def synthetic_datasets(table: pd.DataFrame) -> set[str]:
    """Datasets of which at least one run used generated rows (``synthetic`` run attribute)."""
    attrs = tidy.run_attributes(table)
    if "synthetic" not in attrs:
        return set()
    return set(attrs.loc[attrs["synthetic"].astype(str).str.lower() == "true", "dataset"])


def dataset_title(dataset: str, synthetic: set[str]) -> str:
    label = DATASET_LABELS.get(dataset, dataset)
    return f"{label} (synthetic rows)" if dataset in synthetic else label


def is_ablation_variant(scheme: str) -> bool:
    return scheme.lower().startswith("qesif-")


def _ordered(values: Sequence[str], preferred: Sequence[str]) -> list[str]:
    rank = {name: i for i, name in enumerate(preferred)}
    return sorted(set(values), key=lambda v: (rank.get(v.lower(), len(rank)), v))


def _axes_order(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    attrs = tidy.run_attributes(table)
    datasets = _ordered(attrs["dataset"].unique(), list(DATASET_LABELS))
    channels = _ordered(attrs["channel"].unique(), list(CHANNEL_LABELS))
    return datasets, channels


def _save(fig: plt.Figure, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None, "Creator": None})
    plt.close(fig)
    return paths


def _colors(schemes: Sequence[str]) -> dict[str, str]:
    return {s: _PALETTE[i % len(_PALETTE)] for i, s in enumerate(schemes)}


def _grouped_bars(
    ax: plt.Axes,
    summary: pd.DataFrame,
    x_key: str,
    x_values: Sequence[str],
    x_labels: dict[str, str],
    schemes: Sequence[str],
    colors: dict[str, str],
    scale: float = 1.0,
) -> None:
    """Bars of the mean; whiskers from the 10th to the 90th percentile with a dot at the median (they stay
    inside the quantity's range however skewed it is, and show the skew)."""
    positions = np.arange(len(x_values))
    width = 0.8 / max(len(schemes), 1)
    for i, scheme in enumerate(schemes):
        rows = summary[summary["scheme"] == scheme].set_index(x_key)

        def column(name: str, rows: pd.DataFrame = rows) -> np.ndarray:
            return np.array([rows[name].get(x, np.nan) * scale for x in x_values], dtype=float)

        x = positions + (i - (len(schemes) - 1) / 2) * width
        ax.bar(x, column("mean"), width, label=scheme, color=colors[scheme])
        median, low, high = column("median"), column("p10"), column("p90")
        shown = np.isfinite(median)
        ax.errorbar(
            x[shown],
            median[shown],
            yerr=np.vstack([median[shown] - low[shown], high[shown] - median[shown]]),
            fmt=".",
            ms=3,
            color="k",
            capsize=2,
            elinewidth=0.8,
        )
    ax.set_xticks(positions, [x_labels.get(x, x) for x in x_values])
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _spread_caption(summary: pd.DataFrame, unit: str) -> str:
    """What the bars and whiskers are, with the number of samples behind each bar."""
    n = summary["n"].astype(int)
    count = f"n = {n.min():,}" if n.min() == n.max() else f"n = {n.min():,}-{n.max():,}"
    return f"bars: mean; whiskers: 10th-90th percentile; dot: median; {count} {unit} per bar"


def _per_dataset_panels(
    table: pd.DataFrame, metric: str, ylabel: str, title: str, scale: float = 1.0
) -> plt.Figure | None:
    """One panel per dataset; channel conditions on x; one bar per scheme (``_grouped_bars``)."""
    summary = tidy.summarise(table, metric)
    if summary.empty:
        return None
    datasets, channels = _axes_order(table)
    schemes = _ordered(summary["scheme"].unique(), SCHEME_ORDER)
    colors = _colors(schemes)
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(max(4.2 * len(datasets), 6.5), 3.8), sharey=True, squeeze=False
    )
    for ax, dataset in zip(axes[0], datasets, strict=True):
        _grouped_bars(
            ax,
            summary[summary["dataset"] == dataset],
            "channel",
            channels,
            CHANNEL_LABELS,
            schemes,
            colors,
            scale,
        )
        ax.set_title(dataset_title(dataset, synthetic_datasets(table)))
        ax.set_xlabel("Quantum channel condition")
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(
        title="Scheme", fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1)
    )
    fig.suptitle(f"{title}\n({_spread_caption(summary, 'rounds')}, all seeds pooled)", fontsize=10)
    fig.tight_layout()
    return fig


def figure_latency(table: pd.DataFrame) -> plt.Figure | None:
    """Figure 4: end-to-end latency per round."""
    return _per_dataset_panels(table, "network/latency_ms", "End-to-end latency (ms)", "Figure 4: Latency")


def figure_throughput(table: pd.DataFrame) -> plt.Figure | None:
    """Figure 5: goodput to the control centre per round."""
    return _per_dataset_panels(
        table, "network/goodput_kbps", "Goodput to the control centre (kbit/s)", "Figure 5: Throughput"
    )


def figure_energy(table: pd.DataFrame) -> plt.Figure | None:
    """Figure 6: energy per device per round."""
    return _per_dataset_panels(
        table, "network/energy_mJ", "Energy per device per round (mJ)", "Figure 6: Energy consumption"
    )


def figure_qber(table: pd.DataFrame) -> plt.Figure | None:
    """Figure 2: QBER per session (QESIF) and mean QBER per scheme, dataset and channel condition."""
    long = tidy.with_attributes(tidy.vector_rounds(table, "qkd/qber"), table)
    summary = tidy.summarise(table, "qkd/qber")
    if long.empty:
        return None
    datasets, channels = _axes_order(table)
    schemes = _ordered(summary["scheme"].unique(), SCHEME_ORDER)
    colors = _colors(schemes)
    reference_scheme = schemes[0]
    fig, axes = plt.subplots(
        2, len(datasets), figsize=(max(4.2 * len(datasets), 6.5), 7.0), sharey="row", squeeze=False
    )
    extra_colors = iter(("#7f7f7f", "#17becf", "#bcbd22", "#8c564b"))
    channel_colors = {c: CHANNEL_COLORS.get(c) or next(extra_colors, None) for c in channels}
    for ax, dataset in zip(axes[0], datasets, strict=True):
        rows = long[(long["dataset"] == dataset) & (long["scheme"] == reference_scheme)]
        for channel in channels:
            per_round = rows[rows["channel"] == channel].groupby("round")["value"].mean()
            ax.plot(
                per_round.index,
                per_round.to_numpy(),
                lw=0.9,
                color=channel_colors.get(channel),
                label=CHANNEL_LABELS.get(channel, channel),
            )
        ax.axhline(QBER_REJECTION_THRESHOLD, ls="--", color="k", lw=0.8, label="rejection threshold 0.11")
        ax.set_title(f"{dataset_title(dataset, synthetic_datasets(table))}: {reference_scheme}, per session")
        ax.set_xlabel("QKD session (round)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("QBER (fraction of sifted bits)")
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    for ax, dataset in zip(axes[1], datasets, strict=True):
        _grouped_bars(
            ax, summary[summary["dataset"] == dataset], "channel", channels, CHANNEL_LABELS, schemes, colors
        )
        ax.axhline(QBER_REJECTION_THRESHOLD, ls="--", color="k", lw=0.8)
        ax.set_title(f"{dataset_title(dataset, synthetic_datasets(table))}: per scheme")
        ax.set_xlabel("Quantum channel condition")
    axes[1][0].set_ylabel("QBER (fraction of sifted bits)")
    axes[1][-1].legend(
        title="Scheme", fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1)
    )
    fig.suptitle(
        "Figure 2: QBER across datasets and channel conditions\n"
        f"(lower row: {_spread_caption(summary, 'sessions')})",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def detection_summary(table: pd.DataFrame, rate: str) -> pd.DataFrame:
    """Per (scheme, dataset): mean over runs of the per-distinct-record ``ids/<rate>``, the widest 95 %
    Wilson interval over those runs (NaN when the runs carry none), the distinct attack and benign test
    records per run (min and max), the runs and whether any used generated rows."""
    names = [
        f"ids/{rate}",
        f"ids/{rate}_ci95_low",
        f"ids/{rate}_ci95_high",
        "ids/n_attack_test",
        "ids/n_benign_test",
    ]
    wide = tidy.scalars(table, names).join(tidy.run_attributes(table))
    if f"ids/{rate}" not in wide:
        return pd.DataFrame()
    for name in names:
        if name not in wide:
            wide[name] = np.nan
    wide["is_synthetic"] = wide.get("synthetic", pd.Series("false", index=wide.index)).astype(str) == "true"
    grouped = wide.groupby(["scheme", "dataset"], sort=False)
    return grouped.agg(
        mean=(f"ids/{rate}", "mean"),
        low=(f"ids/{rate}_ci95_low", "min"),
        high=(f"ids/{rate}_ci95_high", "max"),
        n_attack_min=("ids/n_attack_test", "min"),
        n_attack_max=("ids/n_attack_test", "max"),
        n_benign_min=("ids/n_benign_test", "min"),
        n_benign_max=("ids/n_benign_test", "max"),
        runs=(f"ids/{rate}", "size"),
        synthetic=("is_synthetic", "any"),
    ).reset_index()


def _count_text(low: float, high: float) -> str:
    if not np.isfinite(low):
        return "?"
    return f"{int(low):,}" if low == high else f"{int(low):,}-{int(high):,}"


def _interval_bars(
    ax: plt.Axes,
    summary: pd.DataFrame,
    datasets: Sequence[str],
    schemes: Sequence[str],
    colors: dict[str, str],
) -> None:
    """Bars of the mean rate (%) per dataset and scheme, Wilson error bars, hatched when synthetic."""
    positions = np.arange(len(datasets))
    width = 0.8 / max(len(schemes), 1)
    for i, scheme in enumerate(schemes):
        rows = summary[summary["scheme"] == scheme].set_index("dataset").reindex(list(datasets))
        means = 100 * rows["mean"].to_numpy(dtype=float)
        errors = np.vstack(
            [means - 100 * rows["low"].to_numpy(float), 100 * rows["high"].to_numpy(float) - means]
        )
        x = positions + (i - (len(schemes) - 1) / 2) * width
        hatches = [SYNTHETIC_HATCH if flag is True else "" for flag in rows["synthetic"]]
        for xi, mean, err_low, err_high, hatch in zip(x, means, *errors, hatches, strict=True):
            ax.bar(xi, mean, width, color=colors[scheme], hatch=hatch, edgecolor="white", linewidth=0.3)
            if np.isfinite(err_low) and np.isfinite(err_high):
                error = [[max(err_low, 0)], [max(err_high, 0)]]
                ax.errorbar(xi, mean, yerr=error, fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def figure_adr(table: pd.DataFrame) -> plt.Figure | None:
    """Figure 3: attack detection rate and false-positive rate per dataset and scheme, per distinct held-out
    record, with 95 % Wilson intervals and n; synthetic rows hatched."""
    adr, fpr = detection_summary(table, "adr"), detection_summary(table, "fpr")
    if adr.empty:
        return None
    datasets, _ = _axes_order(table)
    schemes = _ordered(adr["scheme"].unique(), SCHEME_ORDER)
    colors = _colors(schemes)
    fig, (ax_adr, ax_fpr) = plt.subplots(1, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [3, 2]})
    labels = []
    for dataset in datasets:
        rows = adr[adr["dataset"] == dataset]
        n_attack = _count_text(rows["n_attack_min"].min(), rows["n_attack_max"].max())
        n_benign = _count_text(rows["n_benign_min"].min(), rows["n_benign_max"].max())
        kind = "SYNTHETIC rows" if rows["synthetic"].any() else "real rows"
        labels.append(f"{DATASET_LABELS.get(dataset, dataset)}\n{kind}\nn = {n_attack} / {n_benign}")
    _interval_bars(ax_adr, adr, datasets, schemes, colors)
    low = np.nanmin(np.concatenate([adr["low"].to_numpy(float), adr["mean"].to_numpy(float)])) * 100
    ax_adr.set_ylim(max(0.0, np.floor(low / 5) * 5 - 5), 100)
    ax_adr.set_ylabel("Attack detection rate (%)")
    ax_adr.set_title("ADR per distinct held-out record (n = attack / benign records per run)", fontsize=9)
    ax_adr.set_xticks(np.arange(len(datasets)), labels, fontsize=8)
    if not fpr.empty:
        _interval_bars(ax_fpr, fpr, datasets, schemes, colors)
        ax_fpr.set_ylim(0, max(5.0, float(np.nanmax(np.concatenate([fpr["high"], fpr["mean"]])) * 100) * 1.1))
        ax_fpr.set_ylabel("False-positive rate (%)")
        ax_fpr.set_title("FPR per distinct held-out benign record", fontsize=9)
        ax_fpr.set_xticks(np.arange(len(datasets)), labels, fontsize=8)
    handles = [Patch(facecolor=colors[s], label=s) for s in schemes]
    if adr["synthetic"].any():
        handles.append(
            Patch(facecolor="#bbbbbb", hatch=SYNTHETIC_HATCH, edgecolor="white", label="synthetic rows")
        )
    ax_fpr.legend(handles=handles, title="Scheme", fontsize=8, title_fontsize=8, loc="upper left",
                  bbox_to_anchor=(1.01, 1))  # fmt: skip
    fig.suptitle(
        "Figure 3: Attack detection across datasets (bars: mean over channel conditions; "
        "error bars: 95 % Wilson interval, widest over the runs)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def figure_ablation(table: pd.DataFrame) -> plt.Figure | None:
    """Figure 7: QESIF and its ablated variants; colour = each metric relative to full QESIF."""
    attrs = tidy.run_attributes(table)
    keep = attrs.index[attrs["scheme"].str.lower().str.startswith("qesif")]
    table = table[table["run"].isin(keep)]
    schemes = _ordered(attrs.loc[keep, "scheme"].unique(), SCHEME_ORDER)
    if not any(is_ablation_variant(s) for s in schemes):
        return None
    means = np.full((len(schemes), len(ABLATION_METRICS)), np.nan)
    stds = np.full_like(means, np.nan)
    for j, (metric, _, scale, _) in enumerate(ABLATION_METRICS):
        summary = tidy.summarise(table, metric, by=("scheme",)).set_index("scheme")
        for i, scheme in enumerate(schemes):
            if scheme in summary.index:
                means[i, j] = summary.at[scheme, "mean"] * scale
                stds[i, j] = summary.at[scheme, "std"] * scale
    # Colour = performance relative to the full QESIF row (the first row): > 1 better, < 1 worse, so
    # that a small difference looks small (a min-max scale would paint 99.1 % vs 99.7 % as worst vs best).
    relative = np.full_like(means, np.nan)
    for j, (_, _, _, higher_is_better) in enumerate(ABLATION_METRICS):
        column, reference = means[:, j], means[0, j]
        with np.errstate(divide="ignore", invalid="ignore"):
            relative[:, j] = column / reference if higher_is_better else reference / column
    span = max(0.05, float(np.nanmax(np.abs(relative - 1))) if np.isfinite(relative).any() else 0.05)
    fig, ax = plt.subplots(figsize=(8.5, 1.2 + 0.75 * len(schemes)))
    image = ax.imshow(relative, cmap="RdYlGn", vmin=1 - span, vmax=1 + span, aspect="auto")
    for i in range(len(schemes)):
        for j in range(len(ABLATION_METRICS)):
            dark = abs(relative[i, j] - 1) > 0.7 * span
            ax.text(
                j,
                i,
                f"{means[i, j]:.1f}\n± {stds[i, j]:.1f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if dark else "black",
            )
    ax.set_xticks(range(len(ABLATION_METRICS)), [label for _, label, _, _ in ABLATION_METRICS])
    ax.set_yticks(range(len(schemes)), schemes)
    ax.xaxis.tick_top()
    colorbar = fig.colorbar(image, ax=ax, fraction=0.04)
    colorbar.set_label(f"performance relative to {schemes[0]}\n(>1 better, <1 worse)", fontsize=8)
    ax.set_title(
        "Figure 7: QESIF ablation (cells: mean ± s.d. over rounds, all datasets and channels)",
        fontsize=10,
        pad=30,
    )
    fig.tight_layout()
    return fig


def make_figures(
    table: pd.DataFrame, out: str | Path, specs: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[list[Path], list[str]]:
    """Write Figures 2-7 (PNG and PDF) into ``out``, with the runs' ``specs`` (run key -> resolved spec)
    Figure 9 (``bridge.results.keyrate``), and the network runs' figures (``bridge.results.qnet``); returns
    the files written and the figures skipped."""
    out = Path(out)
    table, network = qnet.split(table)  # network runs have their own figures (bridge.results.qnet)
    if specs is not None:
        specs = {key: spec for key, spec in specs.items() if "quantum_network" not in spec}
    if table.empty:
        written, skipped = qnet.make_figures(network, out, _save)
        return written, [*FIGURE_NAMES, *skipped]
    attrs = tidy.run_attributes(table)
    comparison = table[table["run"].isin(attrs.index[~attrs["scheme"].map(is_ablation_variant)])]
    builders = {
        "fig2_qber": lambda: figure_qber(comparison),
        "fig3_adr": lambda: figure_adr(comparison),
        "fig4_latency": lambda: figure_latency(comparison),
        "fig5_throughput": lambda: figure_throughput(comparison),
        "fig6_energy": lambda: figure_energy(comparison),
        "fig7_ablation": lambda: figure_ablation(table),
    }
    if specs is not None:
        from bridge.results.keyrate import figure_keyrate

        builders["fig9_keyrate"] = lambda: figure_keyrate(specs)
    written: list[Path] = []
    skipped: list[str] = []
    with plt.rc_context({"font.size": 9, "svg.hashsalt": "qesif"}):
        for name, build in builders.items():
            fig = build() if not comparison.empty or name in ("fig7_ablation", "fig9_keyrate") else None
            if fig is None:
                skipped.append(name)
            else:
                written += _save(fig, out, name)
    network_written, network_skipped = qnet.make_figures(network, out, _save)
    return written + network_written, skipped + network_skipped
