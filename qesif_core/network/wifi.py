"""IEEE 802.11 DCF access (2.4 GHz ERP-OFDM, i.e. 802.11g), the same interface as ``Ieee802154``.

Timing from IEEE Std 802.11-2016: ERP short slot aSlotTime = 9 us and aSIFSTime = 10 us (Clause 18, Table
18-5), DIFS = aSIFSTime + 2 x aSlotTime = 28 us (10.3.2.3.7), OFDM preamble 16 us + SIGNAL 4 us, 4 us
symbols with 16 SERVICE and 6 tail bits (Clause 17.3), the 6 us ERP signal extension (18.3.2.4), aCWmin =
15, aCWmax = 1023 (Table 18-5 / 17-21), ACKTimeout = aSIFSTime + aSlotTime + aRxPHYStartDelay (25 us,
Table 17-21) (10.3.2.9), dot11ShortRetryLimit = 7 transmission attempts (Annex C). A data frame carries a
MAC header of 24 bytes, FCS 4 and LLC/SNAP 8; the ACK (14 bytes) goes at the basic rate.

The DCF itself (backoff counted down while the medium is idle and frozen while it is busy, NAV, EIFS, ACKs,
contention window doubling, retry limit) runs event by event in ``qesif_core.network._channel_py``; this
class holds its parameters. IPv6 packets above the 1500-byte MTU are fragmented (8-byte fragment header).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qesif_core.network import _channel_py

#: Radio currents of a Wi-Fi IoT node, ESP32 (Espressif ESP32 Series Datasheet, RF power consumption):
#: transmit 802.11g 54 Mbit/s at +16 dBm 190 mA, receive 95-100 mA (95 mA; also while sensing the medium and
#: backing off), light sleep 0.8 mA. Used instead of the CC2420 figures of ``costs.yaml`` for Wi-Fi access.
ESP32_RADIO_A = {"radio_tx_a": 0.190, "radio_rx_a": 0.095, "radio_idle_a": 0.095, "radio_sleep_a": 0.8e-3}


@dataclass(frozen=True)
class Wifi80211:
    """PHY/MAC parameters (defaults: IEEE Std 802.11-2016 ERP-OFDM, short slot, 54 Mbit/s data)."""

    phy_rate_bps: float = 54e6
    basic_rate_bps: float = 24e6  # highest basic rate <= the data rate: ACKs go at it
    slot_s: float = 9e-6
    sifs_s: float = 10e-6
    preamble_s: float = 20e-6  # 16 us preamble + 4 us SIGNAL
    symbol_s: float = 4e-6
    signal_extension_s: float = 6e-6
    rx_phy_start_delay_s: float = 25e-6
    cw_min: int = 15
    cw_max: int = 1023
    max_attempts: int = 7  # dot11ShortRetryLimit
    mac_overhead_bytes: int = 36  # MAC header 24 + FCS 4 + LLC/SNAP 8
    ack_bytes: int = 14
    mtu_bytes: int = 1500
    fragment_header_bytes: int = 8  # IPv6 Fragment header
    ip_udp_bytes: int = 48  # IPv6 40 + UDP 8, uncompressed
    bit_error_rate: float = 1e-5

    @property
    def difs_s(self) -> float:
        return self.sifs_s + 2 * self.slot_s

    @property
    def ack_timeout_s(self) -> float:
        return self.sifs_s + self.slot_s + self.rx_phy_start_delay_s

    def ppdu_s(self, mpdu_bytes: np.ndarray | float, rate_bps: float) -> np.ndarray:
        """Airtime of a PPDU: preamble and SIGNAL, whole OFDM symbols (SERVICE, data, tail), extension."""
        bits_per_symbol = rate_bps * self.symbol_s
        symbols = np.ceil((16.0 + 8.0 * np.asarray(mpdu_bytes, dtype=np.float64) + 6.0) / bits_per_symbol)
        return self.preamble_s + symbols * self.symbol_s + self.signal_extension_s

    def ack_airtime_s(self) -> float:
        return float(self.ppdu_s(self.ack_bytes, self.basic_rate_bps))

    @property
    def eifs_s(self) -> float:
        """EIFS after a corrupted reception: SIFS + an ACK at the lowest basic rate (6 Mbit/s) + DIFS."""
        return self.sifs_s + float(self.ppdu_s(self.ack_bytes, 6e6)) + self.difs_s

    def kernel_params(self, ring_capacity: int) -> tuple[np.ndarray, np.ndarray]:
        """The float and integer parameter vectors of the MAC kernel (``_channel_py``'s ``F_*``/``I_*``)."""
        acc_f = np.zeros(_channel_py.N_ACC_F)
        acc_i = np.zeros(_channel_py.N_ACC_I, dtype=np.int64)
        acc_f[_channel_py.F_UNIT] = self.slot_s
        acc_f[_channel_py.F_TURN] = self.sifs_s
        acc_f[_channel_py.F_ACK_WAIT] = self.ack_timeout_s
        acc_f[_channel_py.F_ACK_AIR] = self.ack_airtime_s()
        acc_f[_channel_py.F_BER] = self.bit_error_rate
        acc_f[_channel_py.F_ACK_ERR] = 1.0 - (1.0 - self.bit_error_rate) ** (8.0 * self.ack_bytes)
        acc_f[_channel_py.F_DIFS] = self.difs_s
        acc_f[_channel_py.F_EIFS] = self.eifs_s
        acc_f[_channel_py.F_PREAMBLE] = self.preamble_s
        acc_f[_channel_py.F_SYMBOL] = self.symbol_s
        acc_f[_channel_py.F_SIG_EXT] = self.signal_extension_s
        cap = (self.mtu_bytes - self.fragment_header_bytes) // 8 * 8
        acc_i[_channel_py.I_KIND] = _channel_py.KIND_DCF
        acc_i[_channel_py.I_MIN_BE] = self.cw_min
        acc_i[_channel_py.I_MAX_BE] = self.cw_max
        acc_i[_channel_py.I_MAX_RETRIES] = self.max_attempts
        acc_i[_channel_py.I_ROOM] = self.mtu_bytes
        acc_i[_channel_py.I_FIRST_CAP] = cap
        acc_i[_channel_py.I_NEXT_CAP] = cap
        acc_i[_channel_py.I_FIRST_HDR] = self.fragment_header_bytes
        acc_i[_channel_py.I_NEXT_HDR] = self.fragment_header_bytes
        acc_i[_channel_py.I_MAC_OVH] = self.mac_overhead_bytes
        acc_i[_channel_py.I_PHY_BYTES] = round(self.phy_rate_bps * self.symbol_s)  # data bits per symbol
        acc_i[_channel_py.I_RING] = ring_capacity
        return acc_f, acc_i
