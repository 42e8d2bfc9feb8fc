"""Bot-IoT (Koroniotis et al., FGCS 100, 2019): Argus flow records, in the layouts users meet.

Layouts: the 35-column schema (``data_t.csv``-style files, the 5% extract's 46 columns, which add
``*_number`` codes and per-host aggregates), the "10-best" release (``pkSeqID, proto, saddr, sport, daddr,
dport, seq, stddev, N_IN_Conn_P_SrcIP, min, state_number, mean, N_IN_Conn_P_DstIP, drate, srate, max,
attack, category, subcategory``) and preprocessed projections without addresses or an ``attack`` column
(for example ``flgs,proto,pkts,bytes,dur,mean,stddev,sum,min,max,rate,category``). The label is ``attack``
when the file has it, else ``category != Normal``.

Device key = ``saddr`` (empty when absent), ``ts`` = ``stime``, bytes/packets each way from
``sbytes``/``dbytes`` and ``spkts``/``dpkts``; a file without the split (only ``bytes``/``pkts``) gives its
totals as bytes/packets out and NaN in (the mean bytes per packet, which sets a replayed message's
payload, is the same); duration ``dur``; attack type ``category``. Features: the flow statistics the file
has (``FEATURES``); never the columns of ``NEVER_FEATURES`` (row ids, times, Argus's ``seq`` capture
counter, addresses, ports, the per-host aggregates of the 5% and 10-best releases).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bridge.datasets.base import ChunkContext, Variant, assemble

NAME = "bot_iot"
TITLE = "Bot-IoT (Argus flows)"
CITATION = "Koroniotis et al., Future Generation Computer Systems 100 (2019)"

SCHEMA = (
    "pkSeqID", "stime", "flgs", "proto", "saddr", "sport", "daddr", "dport", "pkts", "bytes", "state",
    "ltime", "seq", "dur", "mean", "stddev", "smac", "dmac", "sum", "min", "max", "soui", "doui", "sco",
    "dco", "spkts", "dpkts", "sbytes", "dbytes", "rate", "srate", "drate", "attack", "category",
    "subcategory",
)  # fmt: skip
#: Per-host and per-port statistics of the 5% and 10-best releases (computed over the whole capture).
AGGREGATES = (
    "TnBPSrcIP", "TnBPDstIP", "TnP_PSrcIP", "TnP_PDstIP", "TnP_PerProto", "TnP_Per_Dport",
    "AR_P_Proto_P_SrcIP", "AR_P_Proto_P_DstIP", "N_IN_Conn_P_DstIP", "N_IN_Conn_P_SrcIP",
    "AR_P_Proto_P_Sport", "AR_P_Proto_P_Dport", "Pkts_P_State_P_Protocol_P_DestIP",
    "Pkts_P_State_P_Protocol_P_SrcIP",
)  # fmt: skip
NUMERIC = (
    "pkts", "bytes", "dur", "mean", "stddev", "sum", "min", "max", "spkts", "dpkts", "sbytes", "dbytes",
    "rate", "srate", "drate", "state_number",
)  # fmt: skip
CATEGORICAL = ("flgs", "proto", "state")
FEATURES = (*NUMERIC, *CATEGORICAL)
#: Columns never used as features, with the reason (``bridge.datasets.base.REASONS``).
NEVER_FEATURES: dict[str, str] = {
    "attack": "label", "category": "label", "subcategory": "label",
    "pkSeqID": "identifier", "stime": "timestamp", "ltime": "timestamp", "seq": "capture order",
    "saddr": "address", "daddr": "address", "smac": "address", "dmac": "address", "soui": "address",
    "doui": "address", "sco": "address", "dco": "address", "sport": "port", "dport": "port",
    "flgs_number": "identifier", "proto_number": "identifier",
    **{c: "address" for c in AGGREGATES if "IP" in c},
    **{c: "aggregate" for c in AGGREGATES if "IP" not in c},
}  # fmt: skip


def _flows(chunk: pd.DataFrame, ctx: ChunkContext) -> pd.DataFrame:
    split = "sbytes" in chunk.columns or "spkts" in chunk.columns
    common = {
        "device_key": ctx.text(chunk, "saddr"),
        "ts": ctx.numeric(chunk, "stime"),
        "bytes_out": ctx.numeric(chunk, "sbytes" if split else "bytes"),
        "bytes_in": ctx.numeric(chunk, "dbytes"),
        "pkts_out": ctx.numeric(chunk, "spkts" if split else "pkts"),
        "pkts_in": ctx.numeric(chunk, "dpkts"),
        "duration": ctx.numeric(chunk, "dur"),
        "protocol": ctx.text(chunk, "proto").str.lower(),
    }
    return assemble(common, chunk, ctx, _variant_of(chunk))


def _variant(label_column: str | None) -> Variant:
    return Variant(
        name="flows" if label_column else "flows, labelled by category",
        schema=SCHEMA,
        required=(label_column or "category",),
        label_column=label_column,
        type_column="category",
        numeric_features=NUMERIC,
        categorical_features=CATEGORICAL,
        to_flows=_flows,
        extra_columns=("saddr", "stime", "sbytes", "dbytes", "spkts", "dpkts", "bytes", "pkts", "dur"),
    )


VARIANT = _variant("attack")
CATEGORY_LABELLED = _variant(None)
VARIANTS = (VARIANT, CATEGORY_LABELLED)


def _variant_of(chunk: pd.DataFrame) -> Variant:
    return VARIANT if "attack" in chunk.columns else CATEGORY_LABELLED


def choose_variant(header: list[str]) -> Variant:
    """``attack`` labels the rows when present; else ``category`` does (``attack`` = not Normal)."""
    return CATEGORY_LABELLED if "attack" not in header and "category" in header else VARIANT


ATTACK_TYPES = ("Normal", "DDoS", "DoS", "Reconnaissance", "Theft")
CLASS_WEIGHTS = (0.1, 0.4, 0.35, 0.13, 0.02)


def synthetic_raw(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` rows in the Bot-IoT schema with class-dependent flow statistics (not real data)."""
    from bridge.datasets.synthetic import class_profile, draw_classes

    classes = draw_classes(ATTACK_TYPES, CLASS_WEIGHTS, n, rng)
    out = {c: np.full(n, "", dtype=object) for c in SCHEMA}
    profile = class_profile(NAME, ATTACK_TYPES, ("dur", "spkts", "dpkts", "sbytes", "dbytes", "rate"))
    v = profile.sample(classes, rng)
    start = 1526344121.0 + np.cumsum(rng.exponential(0.05, n))
    out["pkSeqID"] = np.arange(1, n + 1).astype(str).astype(object)
    out["stime"] = np.round(start, 6).astype(str).astype(object)
    out["ltime"] = np.round(start + v["dur"] / 100, 6).astype(str).astype(object)
    out["dur"] = np.round(v["dur"] / 100, 6).astype(str).astype(object)
    out["flgs"] = np.array(["e", "e s", "e d"], dtype=object)[rng.integers(0, 3, n)]
    out["proto"] = np.array(["tcp", "udp", "arp", "icmp"], dtype=object)[
        (classes + (rng.random(n) < 0.2)) % 4
    ]
    out["saddr"] = np.char.add("192.168.100.", rng.integers(2, 160, n).astype(str)).astype(object)
    out["daddr"] = np.char.add("192.168.100.", rng.integers(2, 160, n).astype(str)).astype(object)
    out["sport"] = np.where(rng.random(n) < 0.05, "0x0303", rng.integers(1024, 65535, n).astype(str)).astype(
        object
    )
    out["dport"] = np.array(["80", "443", "1883", "53", "22"], dtype=object)[
        (classes + rng.integers(0, 2, n)) % 5
    ]
    spkts, dpkts = np.ceil(v["spkts"] / 10), np.floor(v["dpkts"] / 10)
    sbytes, dbytes = np.floor(v["sbytes"] * 10), np.floor(v["dbytes"] * 10)
    for col, values in (("spkts", spkts), ("dpkts", dpkts), ("sbytes", sbytes), ("dbytes", dbytes),
                        ("pkts", spkts + dpkts), ("bytes", sbytes + dbytes)):  # fmt: skip
        out[col] = values.astype(np.int64).astype(str).astype(object)
    out["state"] = np.array(["CON", "INT", "REQ", "RST", "URP"], dtype=object)[
        (classes + rng.integers(0, 2, n)) % 5
    ]
    for col in ("seq", "mean", "stddev", "sum", "min", "max"):
        out[col] = np.round(rng.exponential(1.0, n), 6).astype(str).astype(object)
    rate = v["rate"] / 100
    out["rate"], out["srate"], out["drate"] = (
        np.round(rate * f, 6).astype(str).astype(object) for f in (1, 0.6, 0.4)
    )
    out["attack"] = (classes > 0).astype(int).astype(str).astype(object)
    out["category"] = np.asarray(ATTACK_TYPES, dtype=object)[classes]
    out["subcategory"] = np.where(classes > 0, "TCP", "Normal").astype(object)
    return pd.DataFrame(out, columns=list(SCHEMA))
