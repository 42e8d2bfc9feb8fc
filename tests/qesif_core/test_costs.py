"""Cost model: every parameter cited, every plan costed, overrides checked, formulas consistent."""

from __future__ import annotations

import pytest

from qesif_core import crypto
from qesif_core.costs import load_cost_model
from qesif_core.errors import UserInputError
from qesif_core.schemes import CIPHERS, HANDSHAKES, SessionPlan


def test_every_parameter_has_a_value_unit_and_source():
    params = load_cost_model().parameters()
    assert len(params) > 30
    for name, entry in params.items():
        assert set(entry) == {"value", "unit", "source"}, name
        assert isinstance(entry["source"], str) and len(entry["source"]) > 10, name


@pytest.mark.parametrize("kind", HANDSHAKES)
def test_every_handshake_has_a_cost_and_the_real_wire_size(kind):
    cost = load_cost_model().handshake(kind)
    assert cost.device_cycles > 0 and cost.gateway_seconds > 0
    assert (cost.bytes_device_to_gateway, cost.bytes_gateway_to_device) == crypto.handshake_wire_bytes(kind)
    assert cost.device_seconds == pytest.approx(cost.device_cycles / 32e6)


def test_relative_costs_follow_the_published_cycle_counts():
    model = load_cost_model()
    cycles = {kind: model.handshake(kind).device_cycles for kind in HANDSHAKES}
    assert cycles["qkd-psk"] < cycles["mlkem768"] < cycles["x25519"] < cycles["x25519-mlkem768"]
    assert cycles["x25519-mlkem768"] == pytest.approx(
        cycles["x25519"] + cycles["mlkem768"] - 8 * model.value("device.sha256_block_cycles")
    )


def test_mixing_a_qkd_key_into_a_pq_exchange_pays_both():
    model = load_cost_model()
    plan = SessionPlan("pq-hybrid", "mlkem768", "aes-128-gcm", consumes_qkd_key=True)
    setup = model.session_setup(plan)
    assert setup.device_cycles == pytest.approx(
        model.handshake("mlkem768").device_cycles + model.handshake("qkd-psk").device_cycles
    )
    assert setup.bytes_gateway_to_device == 1088 + crypto.handshake_wire_bytes("qkd-psk")[1]


@pytest.mark.parametrize("cipher", CIPHERS)
def test_record_cost_grows_with_payload(cipher):
    model = load_cost_model()
    small, large = model.record(cipher, 16), model.record(cipher, 160)
    assert large.device_cycles > small.device_cycles and large.gateway_seconds > small.gateway_seconds
    assert large.wire_bytes == 160 + crypto.AEAD_RECORD_OVERHEAD


def test_radio_energy_is_volts_times_current_times_airtime():
    model = load_cost_model()
    expected = 3.0 * 17.4e-3 * (8 * 100 / 250_000) + 3.0 * 18.8e-3 * (8 * 50 / 250_000)
    assert model.radio_energy_j(tx_air_bytes=100, rx_air_bytes=50) == pytest.approx(expected)


def test_air_bytes_fragment_into_802154_frames():
    model = load_cost_model()
    per_frame_payload = 127 - 11
    assert model.frames(per_frame_payload) == 1 and model.frames(per_frame_payload + 1) == 2
    assert model.air_bytes(per_frame_payload + 1) == per_frame_payload + 1 + 2 * 17


def test_overrides_apply_and_are_checked():
    model = load_cost_model({"device.ghash_block_cycles": 100.0, "radio": {"tx_ma": 10.0}})
    assert model.value("device.ghash_block_cycles") == 100.0 and model.value("radio.tx_ma") == 10.0
    assert load_cost_model().value("device.ghash_block_cycles") != 100.0  # defaults untouched
    with pytest.raises(UserInputError, match=r"device\.no_such"):
        load_cost_model({"device.no_such": 1})
    with pytest.raises(UserInputError, match=r"radio\.tx_ma"):
        load_cost_model({"radio.tx_ma": "fast"})
    with pytest.raises(UserInputError, match="must be >= 0"):
        load_cost_model({"radio.tx_ma": -1})


def test_unknown_handshake_or_cipher_is_a_user_error():
    model = load_cost_model()
    with pytest.raises(UserInputError, match="rsa"):
        model.handshake("rsa")
    with pytest.raises(UserInputError, match="chacha"):
        model.record("chacha20-poly1305", 10)
