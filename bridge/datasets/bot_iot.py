"""Bot-IoT (Koroniotis et al., FGCS 100, 2019): Argus flow records, 35-column schema or column subsets.

Device key = ``saddr``, ``ts`` = ``stime``, bytes/packets each way from ``sbytes``/``dbytes`` and
``spkts``/``dpkts``, duration ``dur``, label ``attack``, attack type ``category``. Ports may be empty or hex.
``pkSeqID`` (row order, which follows the capture schedule and so leaks the class), times, addresses and
the always-empty MAC/OUI columns are not features.
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
NUMERIC = (
    "sport", "dport", "pkts", "bytes", "seq", "dur", "mean", "stddev", "sum", "min", "max", "spkts", "dpkts",
    "sbytes", "dbytes", "rate", "srate", "drate",
)  # fmt: skip
CATEGORICAL = ("flgs", "proto", "state")


def _flows(chunk: pd.DataFrame, ctx: ChunkContext) -> pd.DataFrame:
    common = {
        "device_key": ctx.text(chunk, "saddr"),
        "ts": ctx.numeric(chunk, "stime"),
        "bytes_out": ctx.numeric(chunk, "sbytes"),
        "bytes_in": ctx.numeric(chunk, "dbytes"),
        "pkts_out": ctx.numeric(chunk, "spkts"),
        "pkts_in": ctx.numeric(chunk, "dpkts"),
        "duration": ctx.numeric(chunk, "dur"),
        "protocol": ctx.text(chunk, "proto").str.lower(),
    }
    return assemble(common, chunk, ctx, VARIANT)


VARIANT = Variant(
    name="flows",
    schema=SCHEMA,
    required=("saddr", "daddr", "proto", "attack", "category"),
    label_column="attack",
    type_column="category",
    numeric_features=NUMERIC,
    categorical_features=CATEGORICAL,
    to_flows=_flows,
    extra_columns=("saddr", "stime"),
)


def choose_variant(header: list[str]) -> Variant:
    return VARIANT


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
