"""Cost model: CPU cycles, bytes on the wire and energy per handshake and per protected record.

Parameters live in ``qesif_core/data/costs.yaml``, each with its unit and source (publications and
datasheets; the few estimates are marked ASSUMPTION there). A run overrides any of them through its
``costs:`` section, by dotted name (``{"device.ghash_block_cycles": 650}``) or nested mapping.

Device side (Table 2's Cortex-M3 at 32 MHz): cycle counts of the published primitives composed per
handshake (below). Gateway side (quad-core 1.4 GHz): the real ``cryptography`` calls timed on a host,
converted to cycles at the host clock, multiplied by ``host_to_gateway_cycle_ratio`` and divided by the
gateway clock (``benchmarks/bench_crypto.py`` re-measures the host figures).

Composition per key-establishment path (device = initiator, gateway = responder):

- ``x25519``: device 2 scalar multiplications (key generation, shared secret) + HKDF; gateway the same.
- ``mlkem768``: device key generation + decapsulation + HKDF; gateway encapsulation + HKDF.
- ``x25519-mlkem768``: the sum of the two.
- ``qkd-psk``: gateway HKDF + AES key wrap; device AES-128 key expansion + RFC 3394 unwrap
  (6 * key_bytes/8 block decryptions).
- A plan that mixes a QKD key into a post-quantum exchange pays ``qkd-psk`` on top.

HKDF-SHA256 (one extract + one expand block) is counted as 8 SHA-256 compressions (two HMACs, each with
inner and outer key blocks and one message block). An AES-GCM record of n payload bytes costs
ceil(n/16) + 1 CTR blocks and ceil(n/16) + 1 GHASH blocks (data + length block), and carries 28 bytes of
nonce and tag. Radio energy is V * I * airtime with airtime = 8 * bytes / bitrate.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from qesif_core.errors import UserInputError
from qesif_core.schemes.base import CIPHERS, HANDSHAKES, SessionPlan

HKDF_SHA256_COMPRESSIONS = 8
DEFAULT_COSTS_RESOURCE = "costs.yaml"


def _load_default_yaml() -> dict[str, dict[str, dict[str, Any]]]:
    """The packaged table, parsed once per process (every run and every scenario check builds a cost
    model), copied down to its parameters: a model replaces a parameter's entry, never edits it."""
    return {section: dict(parameters) for section, parameters in _parsed_default_yaml().items()}


@functools.cache
def _parsed_default_yaml() -> dict[str, dict[str, dict[str, Any]]]:
    text = resources.files("qesif_core.data").joinpath(DEFAULT_COSTS_RESOURCE).read_text(encoding="utf-8")
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml when built


def flatten_overrides(overrides: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and "value" not in value:
            flat.update(flatten_overrides(value, name + "."))
        else:
            flat[name] = value["value"] if isinstance(value, Mapping) else value
    return flat


@dataclass(frozen=True)
class HandshakeCost:
    """One key establishment: cycles and seconds on each side, application bytes each way."""

    kind: str
    device_cycles: float
    gateway_seconds: float
    bytes_device_to_gateway: int
    bytes_gateway_to_device: int
    device_seconds: float


@dataclass(frozen=True)
class RecordCost:
    """One AEAD-protected record: device cycles/seconds to seal or open it, gateway seconds, wire bytes."""

    cipher: str
    payload_bytes: int
    wire_bytes: int
    device_cycles: float
    device_seconds: float
    gateway_seconds: float


class CostModel:
    """The parameters of ``costs.yaml`` (plus overrides) and the cost functions built on them."""

    def __init__(self, overrides: Mapping[str, Any] | None = None) -> None:
        self._table = _load_default_yaml()
        for name, value in flatten_overrides(overrides or {}).items():
            section, _, field_name = name.partition(".")
            if section not in self._table or field_name not in self._table[section]:
                raise UserInputError(f"costs: unknown parameter {name!r}")
            current = self._table[section][field_name]["value"]
            if isinstance(current, int | float) and not isinstance(value, int | float):
                raise UserInputError(f"costs: {name} must be a number, got {value!r}")
            if isinstance(value, int | float) and value < 0:
                raise UserInputError(f"costs: {name} must be >= 0, got {value!r}")
            self._table[section][field_name] = {**self._table[section][field_name], "value": value}

    def value(self, name: str) -> Any:
        section, _, field_name = name.partition(".")
        return self._table[section][field_name]["value"]

    def source(self, name: str) -> str:
        section, _, field_name = name.partition(".")
        return self._table[section][field_name]["source"]

    def parameters(self) -> dict[str, dict[str, Any]]:
        """Every parameter as ``{"section.name": {"value", "unit", "source"}}`` (for reports)."""
        return {f"{s}.{n}": dict(entry) for s, fields in self._table.items() for n, entry in fields.items()}

    # ------------------------------------------------------------------ building blocks
    def _dev(self, name: str) -> float:
        return float(self.value(f"device.{name}"))

    def _gw_seconds(self, host_seconds_name: str) -> float:
        host_cycles = float(self.value(f"gateway.{host_seconds_name}")) * float(
            self.value("gateway.host_cpu_hz")
        )
        cycles = host_cycles * float(self.value("gateway.host_to_gateway_cycle_ratio"))
        return cycles / float(self.value("gateway.cpu_hz"))

    def _device_hkdf_cycles(self) -> float:
        return HKDF_SHA256_COMPRESSIONS * self._dev("sha256_block_cycles")

    def _device_cycles(self, kind: str, key_bytes: int) -> float:
        if kind == "x25519":
            return 2 * self._dev("x25519_scalarmult_cycles") + self._device_hkdf_cycles()
        if kind == "mlkem768":
            return (
                self._dev("mlkem768_keygen_cycles")
                + self._dev("mlkem768_decaps_cycles")
                + self._device_hkdf_cycles()
            )
        if kind == "x25519-mlkem768":
            return (
                2 * self._dev("x25519_scalarmult_cycles")
                + self._dev("mlkem768_keygen_cycles")
                + self._dev("mlkem768_decaps_cycles")
                + self._device_hkdf_cycles()
            )
        if kind == "qkd-psk":
            unwrap_blocks = 6 * (key_bytes // 8)
            return self._dev("aes128_key_expansion_cycles") + unwrap_blocks * self._dev(
                "aes128_single_block_cycles"
            )
        raise UserInputError(f"costs: unknown handshake {kind!r}; known: {', '.join(HANDSHAKES)}")

    def _gateway_seconds(self, kind: str) -> float:
        parts = {
            "x25519": ["x25519_keygen_host_s", "x25519_exchange_host_s", "hkdf_host_s"],
            "mlkem768": ["mlkem768_encaps_host_s", "hkdf_host_s"],
            "x25519-mlkem768": [
                "x25519_keygen_host_s",
                "x25519_exchange_host_s",
                "mlkem768_encaps_host_s",
                "hkdf_host_s",
            ],
            "qkd-psk": ["hkdf_host_s", "key_wrap_host_s"],
        }[kind]
        return sum(self._gw_seconds(p) for p in parts)

    # ------------------------------------------------------------------ public cost functions
    def handshake(self, kind: str, key_bytes: int = 16) -> HandshakeCost:
        """Cost of one key establishment of ``kind`` for a session key of ``key_bytes``."""
        from qesif_core import crypto  # here: `cryptography` is slow to import and validation needs no costs

        device_cycles = self._device_cycles(kind, key_bytes)
        up, down = crypto.handshake_wire_bytes(kind, key_bytes)
        return HandshakeCost(
            kind=kind,
            device_cycles=device_cycles,
            gateway_seconds=self._gateway_seconds(kind),
            bytes_device_to_gateway=up,
            bytes_gateway_to_device=down,
            device_seconds=device_cycles / self._dev("cpu_hz"),
        )

    def session_setup(self, plan: SessionPlan) -> HandshakeCost:
        """Key establishment of a session plan, including a QKD key mixed into a PQ exchange."""
        from qesif_core import crypto

        key_bytes = crypto.SESSION_KEY_BYTES[plan.cipher]
        main = self.handshake(plan.handshake, key_bytes)
        if not plan.consumes_qkd_key or plan.handshake == "qkd-psk":
            return main
        extra = self.handshake("qkd-psk", key_bytes)
        return HandshakeCost(
            kind=f"{plan.handshake}+qkd-psk",
            device_cycles=main.device_cycles + extra.device_cycles,
            gateway_seconds=main.gateway_seconds + extra.gateway_seconds,
            bytes_device_to_gateway=main.bytes_device_to_gateway + extra.bytes_device_to_gateway,
            bytes_gateway_to_device=main.bytes_gateway_to_device + extra.bytes_gateway_to_device,
            device_seconds=main.device_seconds + extra.device_seconds,
        )

    def record(self, cipher: str, payload_bytes: int, aad_bytes: int = 0) -> RecordCost:
        """Sealing (or opening) one AES-GCM record with ``payload_bytes`` of application data."""
        from qesif_core import crypto

        if cipher not in CIPHERS:
            raise UserInputError(f"costs: unknown cipher {cipher!r}; known: {', '.join(CIPHERS)}")
        if payload_bytes < 0:
            raise ValueError("payload_bytes must be >= 0")
        blocks = math.ceil(payload_bytes / 16)
        ctr_block = self._dev(
            "aes128_ctr_block_cycles" if cipher == "aes-128-gcm" else "aes256_ctr_block_cycles"
        )
        ghash_blocks = blocks + math.ceil(aad_bytes / 16) + 1
        cycles = (blocks + 1) * ctr_block + ghash_blocks * self._dev("ghash_block_cycles")
        gateway = self._gw_seconds("aead_record_host_s") + payload_bytes * self._gw_seconds(
            "aead_per_byte_host_s"
        )
        return RecordCost(
            cipher=cipher,
            payload_bytes=payload_bytes,
            wire_bytes=payload_bytes + crypto.AEAD_RECORD_OVERHEAD,
            device_cycles=cycles,
            device_seconds=cycles / self._dev("cpu_hz"),
            gateway_seconds=gateway,
        )

    def session_key_setup_cycles(self, cipher: str) -> float:
        """AES key expansion once per session key on the device."""
        return self._dev(
            "aes128_key_expansion_cycles" if cipher == "aes-128-gcm" else "aes256_key_expansion_cycles"
        )

    def frames(self, app_bytes: int) -> int:
        """802.15.4 frames needed for ``app_bytes`` of payload (at least one)."""
        per_frame = int(self.value("radio.max_psdu_bytes")) - int(self.value("radio.mac_overhead_bytes"))
        return max(1, math.ceil(app_bytes / per_frame))

    def air_bytes(self, app_bytes: int) -> int:
        """Bytes on air for ``app_bytes`` of payload, with PHY and MAC overhead per frame."""
        overhead = int(self.value("radio.phy_overhead_bytes")) + int(self.value("radio.mac_overhead_bytes"))
        return app_bytes + self.frames(app_bytes) * overhead

    def airtime_s(self, air_bytes: int) -> float:
        return 8.0 * air_bytes / float(self.value("radio.bitrate_bps"))

    def radio_energy_j(self, *, tx_air_bytes: int = 0, rx_air_bytes: int = 0) -> float:
        """Device radio energy to send and receive the given bytes on air (CC2420 currents)."""
        volts = self._dev("supply_v")
        tx = self.airtime_s(tx_air_bytes) * volts * float(self.value("radio.tx_ma")) * 1e-3
        rx = self.airtime_s(rx_air_bytes) * volts * float(self.value("radio.rx_ma")) * 1e-3
        return tx + rx

    def cpu_energy_j(self, cycles: float) -> float:
        """Device CPU energy for ``cycles`` at the active current."""
        amps = self._dev("cpu_active_ua_per_mhz") * 1e-6 * self._dev("cpu_hz") / 1e6
        return cycles / self._dev("cpu_hz") * self._dev("supply_v") * amps

    def idle_power_w(self) -> float:
        """Device power while idle: MCU deep sleep + radio idle (listening is charged per byte received)."""
        return self._dev("supply_v") * (
            self._dev("cpu_sleep_ua") * 1e-6 + float(self.value("radio.idle_ma")) * 1e-3
        )

    def active_cpu_power_w(self) -> float:
        return self._dev("supply_v") * self._dev("cpu_active_ua_per_mhz") * 1e-6 * self._dev("cpu_hz") / 1e6


def load_cost_model(overrides: Mapping[str, Any] | None = None) -> CostModel:
    """The default cost model with a run's ``costs:`` overrides applied."""
    return CostModel(overrides)
