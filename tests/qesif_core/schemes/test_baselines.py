"""Baselines: each follows its documented model; detectors use the Q-IDS classifier names."""

from __future__ import annotations

import pytest

from qesif_core.qids.flows import FLOW_CLASSIFIERS
from qesif_core.schemes import SessionContext, available_schemes, get_scheme


@pytest.mark.parametrize("name", sorted(available_schemes()))
def test_every_scheme_is_described_and_names_a_known_classifier(name):
    cls = get_scheme(name)
    assert cls.detector.classifier in FLOW_CLASSIFIERS
    assert cls.description and "\n" not in cls.description
    assert cls.__doc__ and len(cls.__doc__) > 40


@pytest.mark.parametrize("name", sorted(available_schemes()))
@pytest.mark.parametrize("available", [True, False])
@pytest.mark.parametrize("flagged", [True, False])
@pytest.mark.parametrize("k_iot", [0.0, 0.99, 1.0, 50.0])
def test_no_scheme_plans_a_qkd_key_the_pool_cannot_give(name, available, flagged, k_iot):
    plan = get_scheme(name)({"epsilon_min": 1.0}).plan_session(
        SessionContext(3, 1, 0.0, k_iot, available, flagged)
    )
    assert not plan.consumes_qkd_key or available
    assert plan.q_adapt == int(k_iot >= 1.0)


def test_baseline_models():
    def plan(name, available=True):
        return get_scheme(name)().plan_session(SessionContext(0, 0, 0.0, 0.0, available, True))

    assert (plan("QRHE").handshake, plan("QRHE").consumes_qkd_key) == ("mlkem768", False)
    assert (plan("HyQuSec").handshake, plan("HyQuSec").consumes_qkd_key) == ("mlkem768", True)  # static
    assert plan("HyQuSec", available=False).consumes_qkd_key is False
    assert (plan("QLSN").handshake, plan("QLSN").consumes_qkd_key) == ("x25519-mlkem768", True)
    assert (plan("QuIDS").handshake, plan("QuIDS").mode) == ("x25519", "classical")
    assert not any(get_scheme(n).detector.uses_quantum_score for n in ("QRHE", "HyQuSec", "QuIDS", "QLSN"))
