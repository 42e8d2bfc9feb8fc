"""802.11 DCF timing (IEEE Std 802.11-2016 ERP-OFDM) and its place in the network model."""

import numpy as np
import pytest

from qesif_core.network import _channel_py as k
from qesif_core.network.ieee802154 import Ieee802154
from qesif_core.network.wifi import Wifi80211

WIFI = Wifi80211(bit_error_rate=0.0)


def test_the_kernel_gets_the_dcf_timings():
    acc_f, acc_i = WIFI.kernel_params(ring_capacity=3)
    assert acc_i[k.I_KIND] == k.KIND_DCF
    assert (acc_i[k.I_MIN_BE], acc_i[k.I_MAX_BE], acc_i[k.I_MAX_RETRIES]) == (15, 1023, 7)
    assert acc_f[k.F_UNIT] == pytest.approx(9e-6) and acc_f[k.F_TURN] == pytest.approx(10e-6)  # slot, SIFS
    assert acc_f[k.F_DIFS] == pytest.approx(28e-6) and acc_f[k.F_ACK_WAIT] == pytest.approx(44e-6)
    # ACK (14 bytes) at 24 Mbit/s: ceil(134 / 96) = 2 symbols -> 20 + 8 + 6 = 34 us
    assert acc_f[k.F_ACK_AIR] == pytest.approx(34e-6)
    # EIFS = SIFS + ACK at 6 Mbit/s (ceil(134 / 24) = 6 symbols: 20 + 24 + 6 = 50 us) + DIFS
    assert acc_f[k.F_EIFS] == pytest.approx((10 + 50 + 28) * 1e-6)
    assert acc_i[k.I_PHY_BYTES] == 216  # data bits per 4 us OFDM symbol at 54 Mbit/s


def test_wifi_carries_table_2_load_faster_than_802_15_4(loaded_rounds):
    def run(access):
        return loaded_rounds(access, seed=4, devices=30, gateways=3, payload=80, handshake_bytes=32)

    wifi, zigbee = run(Wifi80211()), run(Ieee802154())
    latency = lambda results: np.median(np.concatenate([r.latency_s for r in results]))  # noqa: E731
    assert latency(wifi) < latency(zigbee)
    assert sum(r.messages_delivered for r in wifi) > sum(r.messages_delivered for r in zigbee)
