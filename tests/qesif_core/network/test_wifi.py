"""802.11 DCF timing (IEEE Std 802.11-2016 ERP-OFDM) and its place in the network model."""

import numpy as np
import pytest

from qesif_core.network.ieee802154 import Ieee802154
from qesif_core.network.model import NetworkParams, QueueState, SessionCosts, simulate_round
from qesif_core.network.traffic import build_topology, poisson_arrivals, round_traffic
from qesif_core.network.wifi import Wifi80211

WIFI = Wifi80211(bit_error_rate=0.0)


def test_a_clean_attempt_occupies_difs_ppdu_sifs_and_the_ack(rng):
    # 100-byte MPDU at 54 Mbit/s: ceil((16 + 800 + 6) / 216) = 4 symbols -> 20 + 16 + 6 = 42 us;
    # ACK (14 bytes) at 24 Mbit/s: ceil(134 / 96) = 2 symbols -> 20 + 8 + 6 = 34 us; DIFS 28, SIFS 10.
    mac = WIFI.transmit(np.array([100.0]), 0.0, rng)
    assert mac["delivered"][0] and mac["attempts"][0] == 1
    assert mac["service_s"][0] == pytest.approx((28 + 42 + 10 + 34) * 1e-6)
    assert mac["lead_s"][0] == 0.0  # idle medium: no backoff before the first attempt
    assert np.isinf(mac["patience_s"][0])  # DCF freezes its backoff, it never gives up the medium
    assert 0.0 <= mac["gap_s"][0] <= 15 * 9e-6  # backoff after a busy medium: CW = aCWmin


def test_failed_attempts_double_the_contention_window_up_to_the_retry_limit(rng):
    mac = WIFI.transmit(np.full(4000, 100.0), 1.0, rng)  # every attempt collides
    assert not mac["delivered"].any()
    assert (mac["attempts"] == 7).all()  # dot11ShortRetryLimit
    per_attempt = (28 + 42) * 1e-6 + WIFI.ack_timeout_s
    backoff = mac["service_s"] - 7 * per_attempt
    windows = [31, 63, 127, 255, 511, 1023]  # CW after each failure, capped at aCWmax
    assert backoff.mean() == pytest.approx(sum(w / 2 for w in windows) * 9e-6, rel=0.05)
    assert backoff.max() <= sum(windows) * 9e-6


def test_packets_above_the_mtu_are_fragmented():
    owner, mpdu = WIFI.fragment(np.array([1500, 3000]))
    assert owner.tolist() == [0, 1, 1, 1]
    assert mpdu[0] == 1500 + WIFI.mac_overhead_bytes
    assert (mpdu[1:] - WIFI.mac_overhead_bytes - 8).sum() == 3000  # 1488 + 1488 + 24, each + fragment header


def test_wifi_carries_table_2_load_faster_than_802_15_4():
    def run(access):
        params = NetworkParams(access=access)
        rng = np.random.default_rng(4)
        topology = build_topology(30, 3, 0.5, rng)
        state = QueueState.idle(3, params)
        out = []
        for r in range(3):
            device, time = poisson_arrivals(30, float(r), 1.0, 0.1, rng)
            traffic = round_traffic(device, time, np.full(device.size, 80))
            n = traffic.session_device.size
            full = lambda v, n=n: np.full(n, float(v))  # noqa: E731
            costs = SessionCosts(
                np.full(n, 32), np.full(n, 32), full(0.01), full(1e-4), np.full(n, 28), full(3e-5),
                full(4e-5), full(1e-6), full(1e-9),
            )  # fmt: skip
            out.append(
                simulate_round(
                    params, topology.gateway, topology.protocol, traffic, costs, 1.0, state, rng, r
                )
            )
        return out

    wifi, zigbee = run(Wifi80211()), run(Ieee802154())
    latency = lambda results: np.median(np.concatenate([r.latency_s for r in results]))  # noqa: E731
    assert latency(wifi) < latency(zigbee)
    assert sum(r.messages_delivered for r in wifi) > sum(r.messages_delivered for r in zigbee)
