import numpy as np
import pytest

from qesif_core import entropy_keys as ek
from qesif_core.errors import UserInputError


def test_equation_1_k_iot():
    assert ek.k_iot(h_q=0.8, gamma=0.5, eta=2.0, delta=1.5) == pytest.approx(0.8 * 0.5 / (1 + 3.0))
    assert ek.k_iot(h_q=-0.2, gamma=1.0, eta=0.0, delta=2.0) == pytest.approx(-0.2)


def test_decoherence_factor_increasing_with_delta_zero_one():
    assert ek.decoherence_factor(0.0) == 1.0
    thetas = np.linspace(0, 0.5, 11)
    assert np.all(np.diff(ek.decoherence_factor(thetas, slope=10.0)) > 0)
    assert ek.decoherence_factor(0.1, slope=0.0) == 1.0


def test_equation_2_sums_over_slots():
    value = ek.s_qkd([0.8, 0.6], [1.1, 1.2], [0.9, 0.5], lambda_loss=0.1)
    assert value == pytest.approx(0.8 / 1.1 - 0.09 + 0.6 / 1.2 - 0.05)


def test_trust_and_cost_factors():
    assert ek.trust_factor() == 1.0
    assert ek.trust_factor(integrity=0.6, auth_success_rate=1.0, weight=0.5) == pytest.approx(0.8)
    assert ek.communication_cost(energy_j=0.02, budget_j=0.1) == pytest.approx(0.2)
    with pytest.raises(UserInputError, match="integrity"):
        ek.trust_factor(integrity=1.5)
    with pytest.raises(UserInputError, match="budget"):
        ek.communication_cost(1.0, 0.0)


def _slot(h_q, theta=0.01, loss=0.9, eta=0.0, bits=8):
    return ek.SlotObservation(h_q=h_q, theta=theta, loss=loss, eta=eta, key=np.ones(bits, dtype=np.uint8))


def test_algorithm_1_accepts_and_appends_only_rich_slots():
    policy = ek.KeyPolicy(epsilon_min=0.1, psi_secure=0.5, lambda_loss=0.05, delta_slope=10.0)
    slots = [_slot(0.8), _slot(0.05, bits=3), _slot(0.7)]
    decision = ek.generate_key("dev-1", slots, gamma=1.0, policy=policy)
    assert decision.accepted and not decision.flagged
    assert decision.appended_slots == (0, 2)
    assert decision.key_bits == 16
    deltas = [ek.decoherence_factor(0.01, 10.0)] * 3
    assert decision.s_qkd == pytest.approx(ek.s_qkd([0.8, 0.05, 0.7], deltas, [0.9] * 3, 0.05))
    assert decision.k_iot[1] == pytest.approx(0.05 / 1.0)


def test_algorithm_1_discards_and_flags_when_score_is_low():
    decision = ek.generate_key("dev-2", [_slot(0.8), _slot(-0.3, theta=0.15)], gamma=1.0)
    assert decision.s_qkd == pytest.approx(0.8 / 1.1 - 0.045 - 0.3 / 2.5 - 0.045)
    decision = ek.generate_key("dev-2", [_slot(-0.3, theta=0.15), _slot(-0.2, theta=0.14)], gamma=1.0)
    assert not decision.accepted and decision.flagged
    assert decision.key_bits == 0
    assert "key=" not in repr(decision)


def test_low_trust_or_high_cost_stops_appending_but_not_the_score():
    slots = [_slot(0.8, eta=100.0)]
    decision = ek.generate_key("dev-3", slots, gamma=1.0)
    assert decision.appended_slots == ()
    assert decision.accepted
    assert ek.generate_key("dev-3", [_slot(0.8)], gamma=0.0).appended_slots == ()


def test_policy_from_scenario_mapping_and_validation():
    policy = ek.KeyPolicy.from_mapping({"epsilon_min": 0.2, "psi_secure": 1.0, "hysteresis": 0.1})
    assert (policy.epsilon_min, policy.psi_secure) == (0.2, 1.0)
    with pytest.raises(UserInputError, match="lambda_loss"):
        ek.KeyPolicy(lambda_loss=-1.0)
    with pytest.raises(UserInputError, match="gamma"):
        ek.generate_key("dev", [_slot(0.5)], gamma=1.5)


def test_quantum_entropy_is_negative_above_eleven_percent():
    n = 10**8
    assert ek.quantum_entropy(round(0.10 * n), n, round(0.10 * n), n, 1e-10) > 0
    assert ek.quantum_entropy(round(0.12 * n), n, round(0.12 * n), n, 1e-10) < 0
    # Small samples are penalised: the same observed rate gives less entropy.
    assert ek.quantum_entropy(10, 1000, 10, 1000, 1e-10) < ek.quantum_entropy(
        10**5, 10**7, 10**5, 10**7, 1e-10
    )


def test_basis_mismatch_entropy():
    assert ek.basis_mismatch_entropy(500, 1000) == pytest.approx(1.0)
    assert ek.basis_mismatch_entropy(0, 1000) == 0.0
    assert ek.basis_mismatch_entropy(0, 0) == 0.0
