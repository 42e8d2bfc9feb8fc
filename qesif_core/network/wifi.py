"""IEEE 802.11 DCF access (2.4 GHz ERP-OFDM, i.e. 802.11g), the same interface as ``Ieee802154``.

Timing from IEEE Std 802.11-2016: ERP short slot aSlotTime = 9 us and aSIFSTime = 10 us (Clause 18, Table
18-5), DIFS = aSIFSTime + 2 x aSlotTime = 28 us (10.3.2.3.7), OFDM preamble 16 us + SIGNAL 4 us, 4 us
symbols with 16 SERVICE and 6 tail bits (Clause 17.3), the 6 us ERP signal extension (18.3.2.4), aCWmin =
15, aCWmax = 1023 (Table 18-5 / 17-21), ACKTimeout = aSIFSTime + aSlotTime + aRxPHYStartDelay (25 us,
Table 17-21) (10.3.2.9), dot11ShortRetryLimit = 7 transmission attempts (Annex C). A data frame carries a
MAC header of 24 bytes, FCS 4 and LLC/SNAP 8; the ACK (14 bytes) goes at the basic rate.

Mapped onto the shared-channel loop: a frame that finds the medium idle goes after DIFS without a backoff;
one that finds it busy waits for it and then its backoff (CW = aCWmin; the earliest of the waiting
stations wins). DCF has no channel-access failure (backoff counters freeze while the medium is busy), so
a frame never gives up waiting. Each attempt occupies the medium for DIFS, the PPDU and SIFS + ACK (or the
ACK timeout); a failed attempt doubles CW, and its backoff is part of the frame's channel occupancy.
Attempts fail by collision (another station's backoff ending in the same slot, Poisson in the channel's
frame rate) or bit errors. IPv6 packets above the 1500-byte MTU are fragmented (8-byte fragment header).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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

    def ack_tx_s(self) -> float:
        """Time a station transmits to acknowledge a frame it received (SIFS, then the ACK)."""
        return self.sifs_s + self.ack_airtime_s()

    def fragment(self, packet_bytes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Split IPv6 packets into MTU-sized fragments; returns ``(owner, mpdu_bytes)`` per frame."""
        packet_bytes = np.asarray(packet_bytes, dtype=np.int64)
        cap = (self.mtu_bytes - self.fragment_header_bytes) // 8 * 8
        fits = packet_bytes <= self.mtu_bytes
        n_frames = np.where(fits, 1, -(-packet_bytes // cap))
        owner = np.repeat(np.arange(packet_bytes.size), n_frames)
        position = np.arange(owner.size) - (np.cumsum(n_frames) - n_frames)[owner]
        size = packet_bytes[owner]
        piece = np.minimum(cap, size - position * cap) + self.fragment_header_bytes
        return owner, np.where(fits[owner], size, piece) + self.mac_overhead_bytes

    def transmit(
        self, mpdu_bytes: np.ndarray, collision_prob: np.ndarray | float, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """Sample the DCF attempts of each frame (same keys as ``Ieee802154.transmit``)."""
        mpdu_bytes = np.asarray(mpdu_bytes, dtype=np.float64)
        n = mpdu_bytes.size
        tries = self.max_attempts
        p_fail = self.attempt_failure_probability(mpdu_bytes, collision_prob)
        fails = rng.random((n, tries)) < np.broadcast_to(p_fail, (n,))[:, None]
        windows = np.minimum((self.cw_min + 1) * 2 ** np.arange(tries) - 1, self.cw_max)
        slots = rng.integers(0, windows[None, :] + 1, size=(n, tries))
        success = ~fails
        delivered = success.any(axis=1)
        attempts = np.where(delivered, success.argmax(axis=1) + 1, tries)
        used = np.arange(tries)[None, :] < attempts[:, None]
        retry_backoff = (slots[:, 1:] * used[:, 1:]).sum(axis=1) * self.slot_s
        airtime = self.ppdu_s(mpdu_bytes, self.phy_rate_bps)
        failed_attempts = attempts - delivered
        ack_s = self.sifs_s + self.ack_airtime_s()
        service = (
            retry_backoff
            + attempts * (self.difs_s + airtime)
            + failed_attempts * self.ack_timeout_s
            + delivered * ack_s
        )
        return {
            "lead_s": np.zeros(n),
            "gap_s": slots[:, 0] * self.slot_s,
            "patience_s": np.full(n, np.inf),
            "service_s": service,
            "delivered": delivered,
            "attempts": attempts,
            "tx_s": attempts * airtime,
            "rx_s": attempts * self.difs_s + failed_attempts * self.ack_timeout_s + delivered * ack_s,
            "idle_s": retry_backoff,
        }

    def attempt_failure_probability(
        self, mpdu_bytes: np.ndarray, collision_prob: np.ndarray | float
    ) -> np.ndarray:
        """Probability that one attempt fails: it collides, or a bit error corrupts the MPDU."""
        frame_error = 1.0 - (1.0 - self.bit_error_rate) ** (8.0 * np.asarray(mpdu_bytes))
        return 1.0 - (1.0 - np.asarray(collision_prob, dtype=np.float64)) * (1.0 - frame_error)

    def collision_probability(self, frames_per_s: np.ndarray) -> np.ndarray:
        """Probability that another station's backoff ends in the same slot (Poisson)."""
        return 1.0 - np.exp(-np.asarray(frames_per_s, dtype=np.float64) * self.slot_s)
