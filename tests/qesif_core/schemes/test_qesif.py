"""QESIF and its ablations: what each plans under key availability, Q-IDS flags and K_IoT."""

from __future__ import annotations

import pytest

from qesif_core.errors import UserInputError
from qesif_core.schemes import SessionContext, get_scheme
from qesif_core.schemes.qesif import hysteresis_from_params

PARAMS = {"epsilon_min": 1.0, "hysteresis": False}


def ctx(k_iot: float, available: bool = True, flagged: bool = False, device: int = 0) -> SessionContext:
    return SessionContext(device, 0, 0.0, k_iot, available, flagged)


def test_qesif_uses_qkd_keys_only_when_allowed():
    qesif = get_scheme("QESIF")(PARAMS)
    assert qesif.plan_session(ctx(2.0)).mode == "quantum"
    assert qesif.plan_session(ctx(0.5, device=1)).mode == "classical"
    assert qesif.plan_session(ctx(2.0, available=False, device=2)).mode == "classical"
    assert qesif.plan_session(ctx(2.0, flagged=True, device=3)).mode == "classical"
    plan = qesif.plan_session(ctx(2.0, device=4))
    assert (plan.handshake, plan.cipher, plan.consumes_qkd_key, plan.q_adapt) == (
        "qkd-psk",
        "aes-256-gcm",
        True,
        1,
    )


def test_qesif_hysteresis_holds_the_mode_through_a_dip():
    qesif = get_scheme("QESIF")(
        {"epsilon_min": 1.0, "hysteresis": {"band": 0.2, "smoothing": 1.0, "min_dwell": 1}}
    )
    modes = [qesif.plan_session(ctx(k)).mode for k in (1.5, 0.9, 0.85, 0.7, 1.1, 1.3)]
    # stays quantum until K_IoT < 0.8, returns only at >= 1.2
    assert modes == ["quantum", "quantum", "quantum", "classical", "classical", "quantum"]
    assert qesif.mode_switches() == 2


def test_ablations():
    no_qkd = get_scheme("QESIF-QKD")(PARAMS)
    assert all(no_qkd.plan_session(ctx(k)).mode == "classical" for k in (0.1, 5.0))
    no_switch = get_scheme("QESIF-hybrid")(PARAMS)
    assert no_switch.plan_session(ctx(0.01, flagged=True)).mode == "quantum"  # ignores K_IoT and flags
    assert no_switch.plan_session(ctx(5.0, available=False)).mode == "classical"
    no_scoring = get_scheme("QESIF-QIDS")
    assert not no_scoring.detector.uses_quantum_score and get_scheme("QESIF").detector.uses_quantum_score
    assert no_scoring(PARAMS).plan_session(ctx(2.0)).mode == "quantum"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"epsilon_min": -1}, "keys.epsilon_min"),
        ({"epsilon_min": "high"}, "keys.epsilon_min"),
        ({"hysteresis": 3}, "keys.hysteresis"),
        ({"hysteresis": {"width": 0.1}}, "keys.hysteresis"),
        ({"hysteresis": {"band": 2.0}}, "keys.hysteresis"),
    ],
)
def test_bad_parameters_name_the_field(params, field):
    with pytest.raises(UserInputError, match=field.replace(".", r"\.")):
        hysteresis_from_params(params)
