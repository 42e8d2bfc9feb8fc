"""IEEE 802.15.4 (2.4 GHz O-QPSK PHY, unslotted CSMA/CA, acknowledged frames) and 6LoWPAN fragmentation.

Constants are those of IEEE Std 802.15.4-2006 (sections 6.4, 7.4 and 7.5.1.4) and RFC 4944/6282. The shared
channel of one PAN is modelled as a FIFO server: a station that senses the channel busy defers, which is what
the queue represents. A frame's first random backoff delays it without occupying the channel; a frame that
finds the channel busy waits for it and then a contention backoff (BE = macMinBE + 1, as after one busy CCA;
the earliest of the waiting stations wins); each attempt occupies the channel for CCA, turnaround, airtime and
the acknowledgement (or the ACK wait). A
frame that would wait longer than its remaining CSMA backoffs (macMaxCSMABackoffs, BE up to macMaxBE) fails
channel access and is dropped without occupying the channel, as a saturated 802.15.4 PAN does. An attempt
fails when the frame collides or is corrupted: collisions when another station ends its backoff in the same
vulnerable period (Poisson in the PAN's frame rate), corruption from the bit error rate. After
``macMaxFrameRetries`` retries the frame is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ieee802154:
    """PHY/MAC parameters (defaults: IEEE Std 802.15.4-2006, 2.4 GHz band, non-beacon mode)."""

    bitrate_bps: float = 250_000.0
    unit_backoff_s: float = 320e-6  # aUnitBackoffPeriod = 20 symbols of 16 us
    cca_s: float = 128e-6  # 8 symbols
    turnaround_s: float = 192e-6  # aTurnaroundTime = 12 symbols
    ack_wait_s: float = 864e-6  # macAckWaitDuration = 54 symbols
    phy_overhead_bytes: int = 6  # preamble 4 + SFD 1 + PHR 1
    mac_overhead_bytes: int = 11  # FCF 2 + seq 1 + PAN id 2 + short dst/src 2+2 + FCS 2
    ack_mpdu_bytes: int = 5
    max_mpdu_bytes: int = 127  # aMaxPHYPacketSize
    mac_min_be: int = 3
    mac_max_be: int = 5
    max_csma_backoffs: int = 4  # macMaxCSMABackoffs: busy CCAs before a channel access failure
    max_frame_retries: int = 3
    frag1_header_bytes: int = 4  # RFC 4944 FRAG1
    fragn_header_bytes: int = 5  # RFC 4944 FRAGN
    bit_error_rate: float = 1e-5
    collision_window_s: float = 320e-6  # CCA + turnaround: stations ending backoff here both see idle
    ip_udp_bytes: int = 14  # 6LoWPAN IPHC 10 (hop limit, context-compressed addresses) + NHC UDP 4 (RFC 6282)

    @property
    def byte_s(self) -> float:
        return 8.0 / self.bitrate_bps

    @property
    def max_mac_payload(self) -> int:
        return self.max_mpdu_bytes - self.mac_overhead_bytes

    def ack_airtime_s(self) -> float:
        return (self.phy_overhead_bytes + self.ack_mpdu_bytes) * self.byte_s

    def ack_tx_s(self) -> float:
        """Time a station transmits to acknowledge a frame it received (turnaround, then the ACK)."""
        return self.turnaround_s + self.ack_airtime_s()

    def fragment(self, packet_bytes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Split 6LoWPAN packets (compressed IPv6 packet sizes) into link frames.

        Returns ``(owner, mpdu_bytes)``: for every frame the index of its packet and its MPDU size. A packet
        that fits one frame is sent whole; otherwise FRAG1 carries the first multiple of 8 bytes, FRAGNs the
        rest.
        """
        packet_bytes = np.asarray(packet_bytes, dtype=np.int64)
        room = self.max_mac_payload
        first_cap = (room - self.frag1_header_bytes) // 8 * 8
        next_cap = (room - self.fragn_header_bytes) // 8 * 8
        fits = packet_bytes <= room
        rest = np.maximum(packet_bytes - first_cap, 0)
        n_frames = np.where(fits, 1, 1 + -(-rest // next_cap))
        owner = np.repeat(np.arange(packet_bytes.size), n_frames)
        frame_starts = np.cumsum(n_frames) - n_frames
        position = np.arange(owner.size) - frame_starts[owner]
        size = packet_bytes[owner]
        whole = fits[owner]
        later = np.minimum(next_cap, size - first_cap - np.maximum(position - 1, 0) * next_cap)
        frag_payload = np.where(position == 0, first_cap, later)
        header = np.where(position == 0, self.frag1_header_bytes, self.fragn_header_bytes)
        mac_payload = np.where(whole, size, header + frag_payload)
        return owner, mac_payload + self.mac_overhead_bytes

    def transmit(
        self, mpdu_bytes: np.ndarray, collision_prob: np.ndarray | float, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """Sample the MAC attempts of each frame.

        Returns per frame: ``lead_s`` (the first random backoff, channel free for others meanwhile),
        ``gap_s`` (the backoff after finding the channel busy, BE = macMinBE + 1), ``patience_s`` (the
        backoffs and CCAs of macMaxCSMABackoffs further tries: a frame that cannot start within it fails
        channel access and is dropped), ``service_s`` (channel
        occupancy: CCA, turnaround, airtime, ACK or ACK wait of every attempt, and the backoffs between
        retransmissions), ``delivered`` (bool), ``attempts``, ``tx_s`` (sender transmit time), ``rx_s``
        (sender listening: CCA, ACK reception or ACK wait) and ``idle_s`` (backoffs, radio idle).
        """
        mpdu_bytes = np.asarray(mpdu_bytes, dtype=np.float64)
        n = mpdu_bytes.size
        tries = self.max_frame_retries + 1
        p_fail = self.attempt_failure_probability(mpdu_bytes, collision_prob)
        fails = rng.random((n, tries)) < np.broadcast_to(p_fail, (n,))[:, None]
        slots = rng.integers(0, 2**self.mac_min_be, size=(n, tries))
        gap_slots = rng.integers(0, 2 ** (self.mac_min_be + 1), size=n)
        patience_slots = sum(
            rng.integers(0, 2 ** min(self.mac_min_be + k, self.mac_max_be), size=n)
            for k in range(1, self.max_csma_backoffs + 1)
        )
        success = ~fails
        delivered = success.any(axis=1)
        attempts = np.where(delivered, success.argmax(axis=1) + 1, tries)
        used = np.arange(tries)[None, :] < attempts[:, None]
        lead = slots[:, 0] * self.unit_backoff_s
        retry_backoff = (slots[:, 1:] * used[:, 1:]).sum(axis=1) * self.unit_backoff_s
        airtime = (mpdu_bytes + self.phy_overhead_bytes) * self.byte_s
        failed_attempts = attempts - delivered
        ack_s = self.turnaround_s + self.ack_airtime_s()
        per_attempt = self.cca_s + self.turnaround_s + airtime
        service = (
            retry_backoff + attempts * per_attempt + failed_attempts * self.ack_wait_s + delivered * ack_s
        )
        return {
            "lead_s": lead,
            "gap_s": gap_slots * self.unit_backoff_s,
            "patience_s": patience_slots * self.unit_backoff_s + self.max_csma_backoffs * self.cca_s,
            "service_s": service,
            "delivered": delivered,
            "attempts": attempts,
            "tx_s": attempts * airtime,
            "rx_s": attempts * self.cca_s + failed_attempts * self.ack_wait_s + delivered * ack_s,
            "idle_s": lead + retry_backoff + attempts * self.turnaround_s,
        }

    def attempt_failure_probability(
        self, mpdu_bytes: np.ndarray, collision_prob: np.ndarray | float
    ) -> np.ndarray:
        """Probability that one attempt fails: it collides, or a bit error corrupts it."""
        frame_error = 1.0 - (1.0 - self.bit_error_rate) ** (
            8.0 * (np.asarray(mpdu_bytes) + self.phy_overhead_bytes)
        )
        return 1.0 - (1.0 - np.asarray(collision_prob, dtype=np.float64)) * (1.0 - frame_error)

    def collision_probability(self, frames_per_s: np.ndarray) -> np.ndarray:
        """Probability that another station's backoff ends in the same vulnerable window (Poisson)."""
        return 1.0 - np.exp(-np.asarray(frames_per_s, dtype=np.float64) * self.collision_window_s)
