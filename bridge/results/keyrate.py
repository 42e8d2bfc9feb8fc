"""QKD key rate in the results: Figure 9 (secret key per round against QBER) and the report's key-rate
section.

Figure 9 is computed by the QKD engine, not read from the runs: for the results' link (the first run's
channel without its attacker: distance, detector, dark counts) and block size, it runs one sampled block
(``session.run_block``, sub-frame reconciliation as in the runs) per intrinsic error 0, 1, ..., 11 %, for the
runs' block and for 4e6 pulses, with the intensities fixed at mu = 0.5 / nu = 0.1 and optimised for each
point (``commissioning``). 48 blocks in all. The x axis is each block's measured QBER.

The report section reads the runs' ``qkd/*`` scalars (docs/design.md): per channel, the commissioned
intensities, the block size, the finite-key length per block, the key bits materialised, and the share of
sessions on QKD keys; when no block had a key, it says so with the figures that decide it.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bridge.results import tidy
from bridge.results.figures import CHANNEL_LABELS

#: The short block Figure 9 compares with (the paper-era 4 ms of a 1 GHz source).
REFERENCE_BLOCK = 4_000_000
#: Intrinsic errors of Figure 9's points: QBER from ~0 to ~11 %.
INTRINSIC_ERRORS = tuple(round(0.01 * i, 2) for i in range(12))
FIXED_INTENSITIES = (0.5, 0.1)
DEFAULT_SEED = 20250116


def _reference_spec(specs: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The first run's spec (in run-key order), preferring a run on the clean channel."""
    ordered = [specs[key] for key in sorted(specs)]
    clean = [s for s in ordered if s.get("channel", {}).get("name") == "clean"]
    return (clean or ordered or [None])[0]


def keyrate_points(specs: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """Figure 9's blocks: columns ``pulses, intensities, intrinsic_error, mu_signal, mu_decoy, qber,
    secret_bits`` (one row per block)."""
    from qesif_core.qkd import commissioning
    from qesif_core.qkd.channel import ChannelParams
    from qesif_core.qkd.session import DEFAULT_FRAME_BITS, run_block

    spec = _reference_spec(specs or {})
    link, block, seed, frame_bits = ChannelParams(), 10**9, DEFAULT_SEED, DEFAULT_FRAME_BITS
    if spec is not None:
        link = ChannelParams.from_dict(dict(spec["channel"]))
        qkd = spec.get("qkd", {})
        block = commissioning.block_pulses(
            float(spec["round_duration_s"]),
            qkd.get("source_rate_hz", commissioning.DEFAULT_SOURCE_RATE_HZ),
            qkd.get("pulses_per_block"),
        )
        seed, frame_bits = int(spec["seed"]), qkd.get("frame_bits", DEFAULT_FRAME_BITS)
    link = dataclasses.replace(link, eve="none", eve_fraction=0.0)
    mu, nu = FIXED_INTENSITIES
    rows = []
    streams = iter(np.random.default_rng(seed).spawn(4 * len(INTRINSIC_ERRORS)))
    for pulses in sorted({block, REFERENCE_BLOCK}, reverse=True):
        for mode in ("fixed", "optimise"):
            for error in INTRINSIC_ERRORS:
                point = dataclasses.replace(link, intrinsic_error=error, mu_signal=mu, mu_decoy=nu)
                chosen = commissioning.commission(point, pulses, mode)
                result = run_block(
                    commissioning.apply(point, chosen), pulses, next(streams), frame_bits=frame_bits
                )
                rows.append(
                    {
                        "pulses": pulses,
                        "intensities": mode,
                        "intrinsic_error": error,
                        "mu_signal": chosen.mu_signal,
                        "mu_decoy": chosen.mu_decoy,
                        "qber": result.qber,
                        "secret_bits": result.secret_bits,
                    }
                )
    return pd.DataFrame(rows)


def figure_keyrate(specs: Mapping[str, Mapping[str, Any]] | None = None) -> plt.Figure:
    """Figure 9: secret key per round (one block) against the block's QBER, fixed vs optimised intensities,
    for the runs' block and for 4e6 pulses; blocks without key are drawn on the axis floor (open markers)."""
    points = keyrate_points(specs)
    fig, ax = plt.subplots(figsize=(6.8, 4.2))
    positive = points.loc[points["secret_bits"] > 0, "secret_bits"]
    floor = 10 ** math.floor(math.log10(positive.min())) / 10 if not positive.empty else 1.0
    styles = {"optimise": ("-", "o", "optimised per point"), "fixed": ("--", "s", "fixed mu=0.5, nu=0.1")}
    colors = dict(zip(sorted(points["pulses"].unique(), reverse=True), ("#1f77b4", "#ff7f0e"), strict=False))
    for (pulses, mode), group in points.groupby(["pulses", "intensities"], sort=False):
        line, marker, label = styles[mode]
        keys = group["secret_bits"].to_numpy(dtype=float)
        qber = 100 * group["qber"].to_numpy()
        color = colors[pulses]
        ax.plot(qber, np.where(keys > 0, keys, floor), line, color=color, alpha=0.6)
        ax.plot(qber[keys > 0], keys[keys > 0], marker, color=color, label=f"{pulses:.0e} pulses, {label}")
        ax.plot(qber[keys <= 0], np.full((keys <= 0).sum(), floor), marker, color=color, mfc="none")
    ax.set_yscale("log")
    ax.set_xlabel("QBER of the block (%)")
    ax.set_ylabel("Secret key per round (bits, one block)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax.set_title(
        "Figure 9: finite-key secret key per block (QKD engine, one sampled block per point)\n"
        f"open markers on the floor: no key; intrinsic error 0-11 %, {len(points)} blocks",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def _channel_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    attrs = tidy.run_attributes(table)
    wide = tidy.scalars(table).join(attrs[["channel", "scheme"]])
    rows = []
    order = {name: i for i, name in enumerate(CHANNEL_LABELS)}
    for channel, runs in sorted(wide.groupby("channel"), key=lambda item: (order.get(item[0], 99), item[0])):
        if "qkd/blocks" not in runs or runs["qkd/blocks"].sum() <= 0:
            continue
        blocks = float(runs["qkd/blocks"].sum())
        qesif = runs[runs["scheme"].str.lower() == "qesif"]
        sessions = qesif if not qesif.empty else runs
        total = sum(
            float(sessions.get(f"hybrid/{mode}_sessions", pd.Series(dtype=float)).sum())
            for mode in ("quantum", "classical", "pq_hybrid")
        )
        rows.append(
            {
                "channel": channel,
                "runs": len(runs),
                "pulses": sorted(runs["qkd/pulses_per_block"].unique()),
                "mu": sorted(set(zip(runs["qkd/mu_signal"], runs["qkd/mu_decoy"], strict=True))),
                "optimised": bool(runs["qkd/intensities_optimised"].fillna(0).all()),
                "expected": float(runs["qkd/expected_secret_bits"].mean()),
                "secret_per_block": float(runs["qkd/secret_bits"].sum()) / blocks,
                "key_per_block": float(runs["qkd/key_bits"].sum()) / blocks,
                "with_key": float(runs["qkd/blocks_with_key"].sum()) / blocks,
                "blocks": int(blocks),
                "qber": float(runs["qkd/qber_mean"].mean()),
                "qkd_share": float(sessions["hybrid/quantum_sessions"].sum()) / total if total else math.nan,
                "sessions": int(total),
                "sessions_of": "QESIF" if not qesif.empty else "all schemes",
            }
        )
    return rows


def keyrate_section(table: pd.DataFrame) -> str:
    """The report's key-rate section (HTML), or an empty string when the runs carry no ``qkd/blocks``."""
    rows = _channel_rows(table)
    if not rows:
        return ""
    esc = html.escape
    out = [
        "<h2>QKD key rate per channel (Figure 9)</h2>",
        "<p>Per channel, over all its runs: the source intensities chosen at commissioning (or fixed), the "
        "pulses per block, the finite-key length per block, the key bits materialised per block (the "
        "reconciled sub-frame's share, docs/qkd.md) and the share of sessions keyed by QKD. Computed by "
        "the runs; n = blocks or sessions counted.</p>",
        "<table><tr><th>channel</th><th>mu signal / decoy</th><th>pulses per block</th><th>mean QBER</th>"
        "<th>secret bits per block</th><th>blocks with key</th><th>key bits materialised per block</th>"
        "<th>sessions on QKD keys</th><th>why no key</th></tr>",
    ]
    for row in rows:
        mus = "; ".join(f"{mu:.4g} / {nu:.4g}" for mu, nu in row["mu"] if np.isfinite(mu))
        if mus:
            mus += " (optimised)" if row["optimised"] else " (fixed or none better)"
        else:
            mus = "n/a (pair source)"
        pulses = ", ".join(f"{p:.3g}" for p in row["pulses"])
        why = ""
        if row["with_key"] == 0:
            why = (
                f"the finite-key length was 0 in all {row['blocks']} blocks at QBER "
                f"{100 * row['qber']:.2f} %; "
                + (
                    f"the link without its attacker would give {row['expected']:.0f} bits per block at "
                    "these intensities (commissioning estimate)"
                    if row["expected"] > 0
                    else "no intensities give this link a positive expected key at this block size"
                )
            )
        share = "n/a" if math.isnan(row["qkd_share"]) else f"{100 * row['qkd_share']:.1f} %"
        out.append(
            f"<tr><td>{esc(str(row['channel']))}</td><td>{esc(mus)}</td><td>{pulses}</td>"
            f"<td>{100 * row['qber']:.2f} %</td><td>{row['secret_per_block']:.4g}</td>"
            f"<td>{100 * row['with_key']:.1f} % (n={row['blocks']})</td><td>{row['key_per_block']:.4g}</td>"
            f"<td>{share} (n={row['sessions']}, {row['sessions_of']})</td><td>{esc(why)}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)
