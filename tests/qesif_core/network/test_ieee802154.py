import numpy as np
import pytest

from qesif_core.network.ieee802154 import Ieee802154

PHY = Ieee802154()


def test_fragmentation_follows_rfc4944_sizes():
    owner, mpdu = PHY.fragment(np.array([50, 116, 117, 300]))
    assert owner.tolist() == [0, 1, 2, 2, 3, 3, 3]
    # 117 bytes: FRAG1 (4 + 112) then FRAGN (5 + 5); 300: 112, 104, 84 payload bytes.
    assert mpdu.tolist() == [61, 127, 127, 21, 127, 120, 100]
    assert (mpdu <= PHY.max_mpdu_bytes).all()


def test_a_clean_channel_takes_one_attempt_and_the_standard_timings(rng):
    clean = Ieee802154(bit_error_rate=0.0)
    out = clean.transmit(np.full(1000, 100), 0.0, rng)
    assert out["delivered"].all() and (out["attempts"] == 1).all()
    airtime = 106 * 32e-6
    expected = PHY.cca_s + 2 * PHY.turnaround_s + airtime + PHY.ack_airtime_s()
    np.testing.assert_allclose(out["service_s"], expected)
    assert out["lead_s"].max() <= 7 * PHY.unit_backoff_s and out["gap_s"].max() <= 15 * PHY.unit_backoff_s
    # macMaxCSMABackoffs further backoffs with BE 4, 5, 5, 5 bound the patience.
    assert out["patience_s"].max() <= (15 + 31 * 3) * PHY.unit_backoff_s + 4 * PHY.cca_s


def test_a_lossy_channel_retries_and_drops_after_max_retries(rng):
    out = PHY.transmit(np.full(20000, 100), 0.5, rng)
    q = float(PHY.attempt_failure_probability(np.array([100]), 0.5)[0])  # collision or bit error
    assert out["attempts"].mean() == pytest.approx(1 + q + q**2 + q**3, abs=0.03)  # truncated geometric
    dropped = 1 - out["delivered"].mean()
    assert dropped == pytest.approx(q**4, abs=0.01)
    assert out["attempts"].max() == PHY.max_frame_retries + 1


def test_collision_probability_grows_with_the_frame_rate():
    p = PHY.collision_probability(np.array([0.0, 100.0, 1000.0]))
    assert p[0] == 0.0 and 0 < p[1] < p[2] < 1
