"""IEEE 802.15.4 parameters as the MAC kernel receives them (the MAC itself: test_channel.py)."""

import pytest

from qesif_core.network import _channel_py as k
from qesif_core.network.ieee802154 import Ieee802154

PHY = Ieee802154()


def test_the_kernel_gets_the_standard_csma_ca_constants():
    acc_f, acc_i = PHY.kernel_params(ring_capacity=7)
    assert acc_i[k.I_KIND] == k.KIND_802154 and acc_i[k.I_RING] == 7
    # macMinBE 3, macMaxBE 5, macMaxCSMABackoffs 4, macMaxFrameRetries 3 (IEEE Std 802.15.4-2006 7.4.2)
    assert (acc_i[k.I_MIN_BE], acc_i[k.I_MAX_BE], acc_i[k.I_MAX_CSMA], acc_i[k.I_MAX_RETRIES]) == (3, 5, 4, 3)
    # aUnitBackoffPeriod 20 symbols, CCA 8, aTurnaroundTime 12, macAckWaitDuration 54 (16 us symbols)
    assert acc_f[k.F_UNIT] == pytest.approx(20 * 16e-6) and acc_f[k.F_CCA] == pytest.approx(8 * 16e-6)
    assert acc_f[k.F_TURN] == pytest.approx(12 * 16e-6) and acc_f[k.F_ACK_WAIT] == pytest.approx(54 * 16e-6)
    assert acc_f[k.F_ACK_AIR] == pytest.approx(11 * 32e-6)  # SHR + PHR 6 bytes, ACK MPDU 5 bytes
    assert acc_f[k.F_BYTE_S] == pytest.approx(32e-6) and acc_i[k.I_PHY_BYTES] == 6


def test_ack_bit_errors_follow_the_bit_error_rate():
    assert Ieee802154(bit_error_rate=0.0).ack_error_probability() == 0.0
    assert PHY.ack_error_probability() == pytest.approx(1 - (1 - 1e-5) ** 88)
