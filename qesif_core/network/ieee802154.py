"""IEEE 802.15.4 (2.4 GHz O-QPSK PHY, unslotted CSMA/CA, acknowledged frames) and 6LoWPAN fragmentation.

Constants are those of IEEE Std 802.15.4-2006 (sections 6.4, 7.4 and 7.5.1.4) and RFC 4944/6282. The MAC
itself (backoffs, CCA against the channel's state, turnaround, ACKs, retries) runs event by event in
``qesif_core.network._channel_py``; this class holds its parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qesif_core.network import _channel_py


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
    max_csma_backoffs: int = 4  # macMaxCSMABackoffs: a busy CCA beyond these is a channel access failure
    max_frame_retries: int = 3
    frag1_header_bytes: int = 4  # RFC 4944 FRAG1
    fragn_header_bytes: int = 5  # RFC 4944 FRAGN
    bit_error_rate: float = 1e-5
    ip_udp_bytes: int = 14  # 6LoWPAN IPHC 10 (hop limit, context-compressed addresses) + NHC UDP 4 (RFC 6282)
    #: "rfc4944": 6LoWPAN fragments (FRAG1/FRAGN headers); "ipv4": IPv4 fragments of at most one frame, each
    #: with its own ``ipv4_header_bytes`` (how INET 4.5, which has no 6LoWPAN, sends over 802.15.4)
    fragmentation: str = "rfc4944"
    ipv4_header_bytes: int = 20

    @property
    def byte_s(self) -> float:
        return 8.0 / self.bitrate_bps

    @property
    def max_mac_payload(self) -> int:
        return self.max_mpdu_bytes - self.mac_overhead_bytes

    def ack_airtime_s(self) -> float:
        return (self.phy_overhead_bytes + self.ack_mpdu_bytes) * self.byte_s

    def ack_error_probability(self) -> float:
        """Probability that bit errors corrupt an ACK frame."""
        return 1.0 - (1.0 - self.bit_error_rate) ** (8.0 * (self.ack_mpdu_bytes + self.phy_overhead_bytes))

    def kernel_params(self, ring_capacity: int) -> tuple[np.ndarray, np.ndarray]:
        """The float and integer parameter vectors of the MAC kernel (``_channel_py``'s ``F_*``/``I_*``)."""
        room = self.max_mac_payload
        acc_f = np.zeros(_channel_py.N_ACC_F)
        acc_i = np.zeros(_channel_py.N_ACC_I, dtype=np.int64)
        acc_f[_channel_py.F_BYTE_S] = self.byte_s
        acc_f[_channel_py.F_UNIT] = self.unit_backoff_s
        acc_f[_channel_py.F_CCA] = self.cca_s
        acc_f[_channel_py.F_TURN] = self.turnaround_s
        acc_f[_channel_py.F_ACK_WAIT] = self.ack_wait_s
        acc_f[_channel_py.F_ACK_AIR] = self.ack_airtime_s()
        acc_f[_channel_py.F_BER] = self.bit_error_rate
        acc_f[_channel_py.F_ACK_ERR] = self.ack_error_probability()
        acc_i[_channel_py.I_KIND] = _channel_py.KIND_802154
        acc_i[_channel_py.I_MIN_BE] = self.mac_min_be
        acc_i[_channel_py.I_MAX_BE] = self.mac_max_be
        acc_i[_channel_py.I_MAX_CSMA] = self.max_csma_backoffs
        acc_i[_channel_py.I_MAX_RETRIES] = self.max_frame_retries
        acc_i[_channel_py.I_ROOM] = room  # a packet that fits one frame goes whole
        if self.fragmentation == "rfc4944":
            # FRAG1 carries the first multiple of 8 bytes that fits with its header, FRAGNs the rest
            acc_i[_channel_py.I_FIRST_CAP] = (room - self.frag1_header_bytes) // 8 * 8
            acc_i[_channel_py.I_NEXT_CAP] = (room - self.fragn_header_bytes) // 8 * 8
            acc_i[_channel_py.I_FIRST_HDR] = self.frag1_header_bytes
            acc_i[_channel_py.I_NEXT_HDR] = self.fragn_header_bytes
        elif self.fragmentation == "ipv4":
            # the first fragment is the packet's own header and 8-byte multiples of data; every later one
            # repeats the IPv4 header (RFC 791)
            data = (room - self.ipv4_header_bytes) // 8 * 8
            acc_i[_channel_py.I_FIRST_CAP] = self.ipv4_header_bytes + data
            acc_i[_channel_py.I_NEXT_CAP] = data
            acc_i[_channel_py.I_NEXT_HDR] = self.ipv4_header_bytes
        else:
            raise ValueError(f"Ieee802154.fragmentation: 'rfc4944' or 'ipv4', got {self.fragmentation!r}")
        acc_i[_channel_py.I_MAC_OVH] = self.mac_overhead_bytes
        acc_i[_channel_py.I_PHY_BYTES] = self.phy_overhead_bytes
        acc_i[_channel_py.I_RING] = ring_capacity
        return acc_f, acc_i
