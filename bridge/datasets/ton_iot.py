"""TON_IoT (Moustafa; Alsaedi et al., IEEE Access 8, 2020): the network flows (Zeek conn/dns/ssl/http fields,
``Train_Test_Network``) and the per-device IoT telemetry files (``Train_Test_IoT_<device>``).

Network flows: device key = ``src_ip``, bytes/packets each way from ``src_bytes``/``dst_bytes`` and
``src_pkts``/``dst_pkts``, ``ts`` when the release has it (NaN otherwise). Never features
(``NEVER_FEATURES``): labels, addresses, ports (the service is in ``service``/``proto``), times and
identifiers (URIs, user agents, DNS query names, certificate names, free text).
Telemetry: one row per device reading; device key = the device name, ``ts`` from ``ts`` or ``date``+``time``
(UTC), no traffic volume in the records (bytes, packets, duration NaN), protocol "telemetry"; the device
readings are the features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bridge.datasets.base import ChunkContext, Variant, assemble, broadcast

NAME = "ton_iot"
TITLE = "TON_IoT (network flows and IoT telemetry)"
CITATION = "Alsaedi et al., IEEE Access 8 (2020); Moustafa, network TON_IoT; UNSW Canberra"

NETWORK_SCHEMA = (
    "src_ip", "src_port", "dst_ip", "dst_port", "proto", "service", "duration", "src_bytes", "dst_bytes",
    "conn_state", "missed_bytes", "src_pkts", "src_ip_bytes", "dst_pkts", "dst_ip_bytes", "dns_query",
    "dns_qclass", "dns_qtype", "dns_rcode", "dns_AA", "dns_RD", "dns_RA", "dns_rejected", "ssl_version",
    "ssl_cipher", "ssl_resumed", "ssl_established", "ssl_subject", "ssl_issuer", "http_trans_depth",
    "http_method", "http_uri", "http_version", "http_request_body_len", "http_response_body_len",
    "http_status_code", "http_user_agent", "http_orig_mime_types", "http_resp_mime_types", "weird_name",
    "weird_addl", "weird_notice", "label", "type",
)  # fmt: skip
NETWORK_NUMERIC = (
    "duration", "src_bytes", "dst_bytes", "missed_bytes", "src_pkts", "src_ip_bytes", "dst_pkts",
    "dst_ip_bytes", "dns_qclass", "dns_qtype", "dns_rcode", "http_trans_depth", "http_request_body_len",
    "http_response_body_len", "http_status_code",
)  # fmt: skip
NETWORK_CATEGORICAL = (
    "proto", "service", "conn_state", "dns_AA", "dns_RD", "dns_RA", "dns_rejected", "ssl_version",
    "ssl_cipher", "ssl_resumed", "ssl_established", "http_method", "http_version", "http_orig_mime_types",
    "http_resp_mime_types", "weird_name", "weird_notice",
)  # fmt: skip

#: Columns never used as features, with the reason (``bridge.datasets.base.REASONS``).
NEVER_FEATURES: dict[str, str] = {
    "label": "label", "type": "label", "src_ip": "address", "dst_ip": "address", "src_port": "port",
    "dst_port": "port", "ts": "timestamp", "date": "timestamp", "time": "timestamp",
    "dns_query": "identifier", "ssl_subject": "identifier", "ssl_issuer": "identifier",
    "http_uri": "identifier", "http_referrer": "identifier", "http_user_agent": "identifier",
    "weird_addl": "payload",
}  # fmt: skip

#: Telemetry devices: numeric readings, categorical readings.
DEVICES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "fridge": (("fridge_temperature",), ("temp_condition",)),
    "thermostat": (("current_temperature", "thermostat_status"), ()),
    "modbus": (
        ("FC1_Read_Input_Register", "FC2_Read_Discrete_Value", "FC3_Read_Holding_Register", "FC4_Read_Coil"),
        (),
    ),
    "gps_tracker": (("latitude", "longitude"), ()),
    "garage_door": ((), ("door_state", "sphone_signal")),
    "motion_light": (("motion_status",), ("light_status",)),
    "weather": (("temperature", "pressure", "humidity"), ()),
}


def _network_flows(chunk: pd.DataFrame, ctx: ChunkContext) -> pd.DataFrame:
    common = {
        "device_key": ctx.text(chunk, "src_ip"),
        "ts": ctx.numeric(chunk, "ts"),
        "bytes_out": ctx.numeric(chunk, "src_bytes"),
        "bytes_in": ctx.numeric(chunk, "dst_bytes"),
        "pkts_out": ctx.numeric(chunk, "src_pkts"),
        "pkts_in": ctx.numeric(chunk, "dst_pkts"),
        "duration": ctx.numeric(chunk, "duration"),
        "protocol": ctx.text(chunk, "proto").str.lower(),
    }
    return assemble(common, chunk, ctx, NETWORK)


def telemetry_timestamps(chunk: pd.DataFrame, ctx: ChunkContext) -> np.ndarray:
    """Seconds since the epoch from ``ts`` or from ``date`` (25-Apr-19) + ``time`` (padded, H:MM:SS)."""
    if "ts" in chunk.columns:
        return ctx.numeric(chunk, "ts").to_numpy()
    stamp = ctx.text(chunk, "date") + " " + ctx.text(chunk, "time")
    parsed = pd.to_datetime(stamp, format="%d-%b-%y %H:%M:%S", errors="coerce", utc=True)
    seconds = (parsed - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    return np.asarray(seconds, dtype=np.float64)


def _device_of(header: list[str]) -> str | None:
    for device, (numeric, categorical) in DEVICES.items():
        if set(numeric + categorical) <= set(header):
            return device
    return None


def _telemetry_variant(device: str) -> Variant:
    numeric, categorical = DEVICES[device]

    def to_flows(chunk: pd.DataFrame, ctx: ChunkContext) -> pd.DataFrame:
        n = len(chunk)
        nan = broadcast(np.nan, n)
        common = {
            "device_key": broadcast(device, n, object),
            "ts": telemetry_timestamps(chunk, ctx),
            "bytes_out": nan,
            "bytes_in": nan,
            "pkts_out": nan,
            "pkts_in": nan,
            "duration": nan,
            "protocol": broadcast("telemetry", n, object),
        }
        return assemble(common, chunk, ctx, variant)

    variant = Variant(
        name=f"telemetry:{device}",
        schema=("ts", "date", "time", *numeric, *categorical, "label", "type"),
        required=("date", "time", "label", "type", *numeric, *categorical),
        label_column="label",
        type_column="type",
        numeric_features=numeric,
        categorical_features=categorical,
        to_flows=to_flows,
        extra_columns=("ts", "date", "time"),
    )
    return variant


NETWORK = Variant(
    name="network",
    schema=NETWORK_SCHEMA,
    required=("src_ip", "dst_ip", "proto", "src_bytes", "dst_bytes", "label", "type"),
    label_column="label",
    type_column="type",
    numeric_features=NETWORK_NUMERIC,
    categorical_features=NETWORK_CATEGORICAL,
    to_flows=_network_flows,
    extra_columns=("ts", "src_ip", "src_pkts", "dst_pkts"),
)
TELEMETRY = {device: _telemetry_variant(device) for device in DEVICES}
VARIANTS = (NETWORK, *TELEMETRY.values())


def choose_variant(header: list[str]) -> Variant:
    """The network layout when the header has flow fields, else the telemetry layout of its device."""
    if "src_ip" in header or "dst_ip" in header or "date" not in header:
        return NETWORK
    device = _device_of(header)
    if device is None:  # telemetry-like header without a known device: name the network columns missing
        return NETWORK
    return TELEMETRY[device]


# --- synthetic, schema-compatible generator (network layout) -------------------------------------------
ATTACK_TYPES = (
    "normal",
    "backdoor",
    "ddos",
    "dos",
    "injection",
    "password",
    "ransomware",
    "scanning",
    "xss",
    "mitm",
)
CLASS_WEIGHTS = (0.3, *([0.7 / 9] * 9))


def synthetic_raw(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` rows in the TON_IoT network schema with class-dependent traffic statistics (not real data)."""
    from bridge.datasets.synthetic import class_profile, draw_classes

    classes = draw_classes(ATTACK_TYPES, CLASS_WEIGHTS, n, rng)
    out = {c: np.full(n, "-", dtype=object) for c in NETWORK_SCHEMA}
    host = rng.integers(2, 60, n)
    out["src_ip"] = np.char.add("192.168.1.", host.astype(str)).astype(object)
    out["dst_ip"] = np.char.add("192.168.1.", rng.integers(60, 250, n).astype(str)).astype(object)
    out["src_port"] = rng.integers(1024, 65535, n).astype(str).astype(object)
    profile = class_profile(
        NAME, ATTACK_TYPES, ("duration", "src_bytes", "dst_bytes", "src_pkts", "dst_pkts")
    )
    values = profile.sample(classes, rng)
    out["duration"] = np.round(values["duration"] / 1e3, 6).astype(str).astype(object)
    for col in ("src_bytes", "dst_bytes", "src_pkts", "dst_pkts"):
        out[col] = np.floor(values[col]).astype(np.int64).astype(str).astype(object)
    out["src_ip_bytes"] = (np.floor(values["src_bytes"]) + 40).astype(np.int64).astype(str).astype(object)
    out["dst_ip_bytes"] = (np.floor(values["dst_bytes"]) + 40).astype(np.int64).astype(str).astype(object)
    ports = np.array([80, 443, 1883, 53, 22, 8080, 445])
    out["dst_port"] = ports[(classes * 3 + rng.integers(0, 3, n)) % len(ports)].astype(str).astype(object)
    protos = np.array(["tcp", "udp", "icmp"], dtype=object)
    out["proto"] = protos[np.where(rng.random(n) < 0.8, (classes % 2), 2)]
    states = np.array(["SF", "REJ", "S0", "RSTR", "OTH"], dtype=object)
    out["conn_state"] = states[(classes + rng.integers(0, 2, n)) % len(states)]
    for col in ("missed_bytes", "dns_qclass", "dns_qtype", "dns_rcode", "http_request_body_len",
                "http_response_body_len", "http_status_code"):  # fmt: skip
        out[col] = np.full(n, "0", dtype=object)
    out["label"] = (classes > 0).astype(int).astype(str).astype(object)
    out["type"] = np.asarray(ATTACK_TYPES, dtype=object)[classes]
    return pd.DataFrame(out, columns=list(NETWORK_SCHEMA))
