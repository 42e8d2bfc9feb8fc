import dataclasses

import pytest

from qesif_core.errors import UserInputError
from qesif_core.qkd.channel import CHANNEL_PRESETS, ChannelParams, preset


def test_presets_are_physical_settings_not_target_qbers():
    assert CHANNEL_PRESETS["clean"].intrinsic_error == 0.01
    assert CHANNEL_PRESETS["clean"].eve == "none"
    assert CHANNEL_PRESETS["noisy"].intrinsic_error == 0.07
    eavesdropped = CHANNEL_PRESETS["eavesdropped"]
    assert eavesdropped.intrinsic_error == 0.01
    assert (eavesdropped.eve, eavesdropped.eve_fraction) == ("intercept-resend", 0.56)


def test_transmittance_combines_fibre_loss_and_detector():
    params = ChannelParams(distance_km=50, fibre_loss_db_per_km=0.2, detector_efficiency=0.5)
    assert params.channel_transmittance == pytest.approx(0.1)
    assert params.transmittance == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("distance_km", -1.0),
        ("fibre_loss_db_per_km", -0.1),
        ("detector_efficiency", 1.5),
        ("detector_efficiency", 0.0),
        ("dark_count_prob", -1e-6),
        ("intrinsic_error", 0.6),
        ("eve_fraction", 1.2),
        ("eve_fraction", -0.1),
        ("mu_signal", 0.0),
        ("mu_decoy", 0.6),
        ("z_basis_prob", 1.0),
        ("eve", "man-in-the-middle"),
        ("distance_km", float("nan")),
    ],
)
def test_bad_field_raises_naming_it(field, value):
    with pytest.raises(UserInputError, match=field):
        dataclasses.replace(ChannelParams(), **{field: value})


def test_intensity_probabilities_must_sum_to_one():
    with pytest.raises(UserInputError, match="prob_signal"):
        ChannelParams(prob_signal=0.8, prob_decoy=0.3, prob_vacuum=0.1)


def test_from_dict_starts_from_named_preset_and_overrides():
    params = ChannelParams.from_dict({"name": "eavesdropped", "distance_km": 25.0})
    assert params.eve == "intercept-resend"
    assert params.distance_km == 25.0
    assert ChannelParams.from_dict(params.to_dict()) == params


def test_from_dict_rejects_unknown_fields_and_presets():
    with pytest.raises(UserInputError, match="lenght_km"):
        ChannelParams.from_dict({"lenght_km": 3})
    with pytest.raises(UserInputError, match="foggy"):
        preset("foggy")
