"""Edge-IIoTset (Ferrag et al., IEEE Access 10, 2022): packet records with 63 Wireshark fields.

One row is one packet: device key = ``ip.src_host``, ``ts`` from ``frame.time`` (seconds when numeric,
else the time of day found in it, since the released strings drop the date), bytes out = ``tcp.len``,
one packet out, duration 0, protocol from the dissected layers (mqtt, modbus, http, dns, icmp, arp, tcp,
udp). Features follow the authors' preprocessing (addresses, ports, payloads, URIs and timestamps are
dropped) and also leave out the capture artefacts that behave like row ids: checksums, TCP sequence and
acknowledgement numbers, ICMP sequence numbers, Wireshark's UDP stream index, Modbus transaction ids and
frame references (``NEVER_FEATURES``). The remaining numeric fields are numbers (hex accepted), the text
fields are categorical.
The raw per-attack files name a class ``OS_Fingerprinting``, the ML files ``Fingerprinting``: both map to
``fingerprinting``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bridge.datasets.base import ChunkContext, Variant, assemble, broadcast

NAME = "edge_iiotset"
TITLE = "Edge-IIoTset (packet records)"
CITATION = "Ferrag et al., IEEE Access 10 (2022)"

SCHEMA = (
    "frame.time", "ip.src_host", "ip.dst_host", "arp.dst.proto_ipv4", "arp.opcode", "arp.hw.size",
    "arp.src.proto_ipv4", "icmp.checksum", "icmp.seq_le", "icmp.transmit_timestamp", "icmp.unused",
    "http.file_data", "http.content_length", "http.request.uri.query", "http.request.method", "http.referer",
    "http.request.full_uri", "http.request.version", "http.response", "http.tls_port", "tcp.ack",
    "tcp.ack_raw", "tcp.checksum", "tcp.connection.fin", "tcp.connection.rst", "tcp.connection.syn",
    "tcp.connection.synack",
    "tcp.dstport", "tcp.flags", "tcp.flags.ack", "tcp.len", "tcp.options", "tcp.payload", "tcp.seq",
    "tcp.srcport", "udp.port", "udp.stream", "udp.time_delta", "dns.qry.name", "dns.qry.name.len",
    "dns.qry.qu", "dns.qry.type", "dns.retransmission", "dns.retransmit_request", "dns.retransmit_request_in",
    "mqtt.conack.flags", "mqtt.conflag.cleansess", "mqtt.conflags", "mqtt.hdrflags", "mqtt.len",
    "mqtt.msg_decoded_as", "mqtt.msg", "mqtt.msgtype", "mqtt.proto_len", "mqtt.protoname", "mqtt.topic",
    "mqtt.topic_len", "mqtt.ver", "mbtcp.len", "mbtcp.trans_id", "mbtcp.unit_id", "Attack_label",
    "Attack_type",
)  # fmt: skip
NUMERIC = (
    "arp.opcode", "arp.hw.size", "icmp.unused", "http.content_length", "http.response",
    "tcp.connection.fin", "tcp.connection.rst", "tcp.connection.syn", "tcp.connection.synack", "tcp.flags",
    "tcp.flags.ack", "tcp.len", "udp.time_delta", "dns.qry.name.len", "dns.qry.qu", "dns.qry.type",
    "dns.retransmission", "dns.retransmit_request", "mqtt.conflag.cleansess", "mqtt.conflags",
    "mqtt.hdrflags", "mqtt.len", "mqtt.msg_decoded_as", "mqtt.msgtype", "mqtt.proto_len", "mqtt.topic_len",
    "mqtt.ver", "mbtcp.len", "mbtcp.unit_id",
)  # fmt: skip
CATEGORICAL = (
    "http.request.method", "http.referer", "http.request.version", "dns.qry.name", "mqtt.conack.flags",
    "mqtt.protoname", "mqtt.topic",
)  # fmt: skip
#: Columns never used as features, with the reason (``bridge.datasets.base.REASONS``).
NEVER_FEATURES: dict[str, str] = {
    "Attack_label": "label", "Attack_type": "label", "frame.time": "timestamp",
    "icmp.transmit_timestamp": "timestamp", "ip.src_host": "address", "ip.dst_host": "address",
    "arp.src.proto_ipv4": "address", "arp.dst.proto_ipv4": "address", "tcp.srcport": "port",
    "tcp.dstport": "port", "udp.port": "port", "http.tls_port": "port", "icmp.checksum": "checksum",
    "tcp.checksum": "checksum", "tcp.seq": "capture order", "tcp.ack": "capture order",
    "tcp.ack_raw": "capture order", "icmp.seq_le": "capture order", "udp.stream": "identifier",
    "mbtcp.trans_id": "identifier", "dns.retransmit_request_in": "identifier",
    "http.request.uri.query": "identifier", "http.request.full_uri": "identifier",
    "http.file_data": "payload", "tcp.payload": "payload", "tcp.options": "payload", "mqtt.msg": "payload",
}  # fmt: skip
_TIME_OF_DAY = r"(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)"


def frame_seconds(chunk: pd.DataFrame, ctx: ChunkContext) -> np.ndarray:
    """``frame.time`` as seconds: the number itself when numeric, else the time of day it contains."""
    text = ctx.text(chunk, "frame.time")
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    parts = text.str.extract(_TIME_OF_DAY)
    of_day = (
        pd.to_numeric(parts[0], errors="coerce") * 3600
        + pd.to_numeric(parts[1], errors="coerce") * 60
        + pd.to_numeric(parts[2], errors="coerce")
    ).to_numpy(dtype=np.float64)
    return np.where(np.isfinite(numbers), numbers, of_day)


def _protocol(chunk: pd.DataFrame, ctx: ChunkContext) -> np.ndarray:
    n = len(chunk)
    protocol = broadcast("other", n, object)
    layers = (  # lowest priority first: later layers overwrite
        ("udp", "udp.stream"), ("tcp", "tcp.flags"), ("arp", "arp.opcode"), ("icmp", "icmp.checksum"),
        ("dns", "dns.qry.type"), ("http", "http.response"), ("modbus", "mbtcp.len"), ("mqtt", "mqtt.msgtype"),
    )  # fmt: skip
    for name, column in layers:
        present = np.nan_to_num(ctx.numeric(chunk, column).to_numpy(), nan=0.0) != 0
        protocol[present] = name
    return protocol


def _flows(chunk: pd.DataFrame, ctx: ChunkContext) -> pd.DataFrame:
    n = len(chunk)
    common = {
        "device_key": ctx.text(chunk, "ip.src_host"),
        "ts": frame_seconds(chunk, ctx),
        "bytes_out": ctx.numeric(chunk, "tcp.len"),
        "bytes_in": broadcast(np.nan, n),
        "pkts_out": broadcast(1.0, n),
        "pkts_in": broadcast(0.0, n),
        "duration": broadcast(0.0, n),
        "protocol": _protocol(chunk, ctx),
    }
    return assemble(common, chunk, ctx, VARIANT)


VARIANT = Variant(
    name="packets",
    schema=SCHEMA,
    required=("frame.time", "ip.src_host", "ip.dst_host", "Attack_label", "Attack_type"),
    label_column="Attack_label",
    type_column="Attack_type",
    numeric_features=NUMERIC,
    categorical_features=CATEGORICAL,
    to_flows=_flows,
    extra_columns=("frame.time", "ip.src_host", "udp.stream", "icmp.checksum"),
)
VARIANTS = (VARIANT,)


def choose_variant(header: list[str]) -> Variant:
    return VARIANT


ATTACK_TYPES = (
    "Normal", "DDoS_UDP", "DDoS_ICMP", "SQL_injection", "Password", "Vulnerability_scanner", "DDoS_TCP",
    "DDoS_HTTP", "Uploading", "Backdoor", "Port_Scanning", "XSS", "Ransomware", "MITM", "Fingerprinting",
)  # fmt: skip
CLASS_WEIGHTS = (0.6, *([0.4 / 14] * 14))


def synthetic_raw(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` rows in the Edge-IIoTset schema with class-dependent packet fields (not real data)."""
    from bridge.datasets.synthetic import class_choice, class_profile, draw_classes

    classes = draw_classes(ATTACK_TYPES, CLASS_WEIGHTS, n, rng)
    out = {c: np.full(n, "0", dtype=object) for c in SCHEMA}
    profile = class_profile(
        NAME, ATTACK_TYPES, ("tcp.len", "dns.qry.name.len", "mqtt.topic_len", "udp.time_delta", "mqtt.len")
    )
    v = profile.sample(classes, rng)
    seconds = 15 * 3600 + np.cumsum(rng.exponential(0.01, n))
    hh, mm, ss = seconds // 3600 % 24, seconds // 60 % 60, seconds % 60
    out["frame.time"] = np.array(
        [f" 2021 {int(h):02d}:{int(m):02d}:{s:012.9f} " for h, m, s in zip(hh, mm, ss, strict=True)],
        dtype=object,
    )
    out["ip.src_host"] = np.char.add("192.168.0.", rng.integers(100, 200, n).astype(str)).astype(object)
    out["ip.dst_host"] = np.char.add("192.168.0.", rng.integers(100, 200, n).astype(str)).astype(object)
    for col in ("tcp.len", "dns.qry.name.len", "mqtt.topic_len", "mqtt.len"):
        out[col] = np.floor(v[col]).astype(np.int64).astype(str).astype(object)
    for col in ("tcp.seq", "tcp.ack"):  # per-stream counters: unrelated to the class
        out[col] = rng.integers(1, 2**20, n).astype(str).astype(object)
    out["udp.time_delta"] = np.round(v["udp.time_delta"] / 1e4, 6).astype(str).astype(object)
    out["tcp.flags"] = class_choice(("16.0", "24.0", "2.0", "17.0", "4.0"), classes, rng)
    out["mqtt.msgtype"] = class_choice(("3.0", "0.0", "4.0"), classes, rng)
    out["mqtt.protoname"] = class_choice(("MQTT", "0"), classes, rng)
    out["http.request.method"] = class_choice(("0", "GET", "0", "POST"), classes, rng)
    out["Attack_label"] = (classes > 0).astype(int).astype(str).astype(object)
    out["Attack_type"] = np.asarray(ATTACK_TYPES, dtype=object)[classes]
    return pd.DataFrame(out, columns=list(SCHEMA))
