"""Eq. (5) with hysteresis (switch-count bound) and Theorem 1 at every session of long traces."""

from __future__ import annotations

import numpy as np
import pytest

from qesif_core.hybrid import (
    HysteresisParams,
    ModeSwitch,
    SecurityLedger,
    band_traversals,
    q_adapt,
    raw_switches,
    smoothed_trace,
)
from qesif_core.keys import DeviceKeyService, KeyPool
from qesif_core.schemes import SecurityScheme, SessionContext, SessionPlan, available_schemes
from qesif_core.schemes.base import _reset_registry_for_tests

EPSILON_TARGET = 1e-10


def test_eq5_is_a_threshold():
    assert q_adapt(1.0, 1.0) == 1 and q_adapt(0.999, 1.0) == 0 and q_adapt(5.0, 1.0) == 1


def hovering_trace(rng: np.random.Generator, n: int, epsilon_min: float) -> np.ndarray:
    """K_IoT hovering around epsilon_min: slow drift plus session-to-session noise of +-15 %."""
    drift = 0.05 * np.sin(np.arange(n) / 200.0)
    return epsilon_min * (1.0 + drift + 0.15 * rng.standard_normal(n))


@pytest.mark.parametrize(
    ("band", "smoothing", "min_dwell"), [(0.1, 0.3, 5), (0.05, 0.5, 10), (0.0, 1.0, 20), (0.2, 0.2, 1)]
)
def test_switches_are_bounded_on_a_trace_hovering_around_epsilon_min(rng, band, smoothing, min_dwell):
    params = HysteresisParams(epsilon_min=2.0, band=band, smoothing=smoothing, min_dwell=min_dwell)
    trace = hovering_trace(rng, 20_000, params.epsilon_min)
    switch = ModeSwitch(params)
    modes = [switch.update(k) for k in trace]
    counted = int(np.count_nonzero(np.diff(modes)))
    assert counted == switch.switches
    assert switch.switches <= params.switch_bound(len(trace))
    assert switch.switches <= 1 + band_traversals(
        smoothed_trace(trace, smoothing), params.lower, params.upper
    )
    assert switch.switches < raw_switches(trace, params.epsilon_min)  # the raw Eq. 5 flaps far more


def test_min_dwell_is_respected_between_switches(rng):
    params = HysteresisParams(epsilon_min=1.0, band=0.0, smoothing=1.0, min_dwell=7)
    switch = ModeSwitch(params)
    modes = np.array([switch.update(k) for k in hovering_trace(rng, 5000, 1.0)])
    switch_at = np.flatnonzero(np.diff(modes)) + 1
    assert len(switch_at) > 10
    assert np.all(np.diff(switch_at) >= 7)


def test_without_hysteresis_the_switch_is_eq5(rng):
    params = HysteresisParams(epsilon_min=1.0, band=0.0, smoothing=1.0, min_dwell=1)
    trace = hovering_trace(rng, 3000, 1.0)
    switch = ModeSwitch(params)
    assert [switch.update(k) for k in trace] == [q_adapt(k, 1.0) for k in trace]


def test_hysteresis_parameters_are_validated():
    for bad in ({"band": 1.0}, {"smoothing": 0.0}, {"min_dwell": 0}):
        with pytest.raises(ValueError):
            HysteresisParams(epsilon_min=1.0, **bad)
    with pytest.raises(ValueError):
        HysteresisParams(epsilon_min=0.0)


def run_trace(
    scheme: SecurityScheme, rng: np.random.Generator, n_sessions: int
) -> tuple[SecurityLedger, dict]:
    """A long simulated trace: 4 gateway links fed by QKD blocks, 24 devices, attack bursts that
    starve key production and flag links; every QKD key used is a real pool key with its provenance."""
    n_gateways, n_devices = 4, 24
    pools = [
        KeyPool(
            link=f"gw{g}",
            source_kme_id=f"K{g}",
            target_kme_id="Kcc",
            master_sae_id=f"S{g}",
            slave_sae_id="Scc",
            rng=rng,
            key_size=256,
            max_key_count=50,
            key_lifetime_s=30.0,
        )
        for g in range(n_gateways)
    ]
    services = [DeviceKeyService(pool, rng) for pool in pools]
    ledger = SecurityLedger(scheme.classical_handshake, EPSILON_TARGET)
    k_level = np.ones(n_devices)
    attacked = np.zeros(n_gateways, dtype=bool)
    modes: dict[str, int] = {}
    previous: dict[int, str] = {}
    for step in range(n_sessions):
        now = step * 0.1
        if step % 10 == 0:
            for g, pool in enumerate(pools):
                attacked[g] = attacked[g] ^ (rng.random() < 0.02)
                if not attacked[g] and rng.random() < 0.6:  # blocks under attack exceed the QBER bound
                    bits = rng.integers(0, 2, int(rng.integers(0, 1200)), dtype=np.uint8)
                    eps = EPSILON_TARGET * rng.uniform(0.01, 1.0)
                    pool.add_block(bits, block=step, qber=rng.uniform(0.005, 0.05), epsilon=eps, now=now)
        device = int(rng.integers(n_devices))
        gateway = device % n_gateways
        k_level[device] = max(0.0, k_level[device] + 0.1 * rng.standard_normal())
        k_iot = 0.0 if attacked[gateway] else k_level[device]
        pool = pools[gateway]
        pool.expire(now)
        ctx = SessionContext(
            device=device,
            gateway=gateway,
            time=now,
            k_iot=float(k_iot),
            quantum_key_available=pool.stored_key_count > 0,
            link_flagged=bool(attacked[gateway] and rng.random() < 0.9),
            previous_mode=previous.get(device),
        )
        plan: SessionPlan = scheme.plan_session(ctx)
        key_epsilon = None
        if plan.consumes_qkd_key and pool.stored_key_count > 0:
            key_id, _ = services[gateway].session_key_for(f"dev{device}", now=now)
            key_epsilon = pool.provenance(key_id).epsilon
        entry = ledger.record(
            q_adapt=plan.q_adapt,
            mode=plan.mode,
            handshake=plan.handshake,
            key_epsilon=key_epsilon,
            consumes_qkd_key=plan.consumes_qkd_key,
        )
        assert entry.s_session >= entry.bound or not entry.holds
        modes[plan.mode] = modes.get(plan.mode, 0) + 1
        previous[device] = plan.mode
    return ledger, modes


@pytest.mark.parametrize("name", sorted(available_schemes()))
def test_theorem1_holds_at_every_session_of_a_long_trace(name, rng):
    scheme = available_schemes()[name]({"epsilon_min": 1.0, "hysteresis": {"band": 0.1, "min_dwell": 3}})
    ledger, modes = run_trace(scheme, rng, 6000)
    assert len(ledger.sessions) == 6000
    assert ledger.violations() == []
    q_values = {s.q_adapt for s in ledger.sessions}
    assert q_values == {0, 1}  # the trace exercised both branches of Eq. 5
    if name == "QESIF":
        assert modes.get("quantum", 0) > 500 and modes.get("classical", 0) > 500


def test_the_ledger_catches_a_scheme_that_plans_quantum_without_a_key(rng):
    restore = _reset_registry_for_tests()
    try:

        class Reckless(SecurityScheme):
            name = "Reckless"
            description = "quantum mode regardless of key availability"
            detector = available_schemes()["QESIF"].detector

            def plan_session(self, ctx: SessionContext) -> SessionPlan:
                return SessionPlan("quantum", "qkd-psk", "aes-256-gcm", consumes_qkd_key=True, q_adapt=1)

        ledger, _ = run_trace(Reckless(), rng, 3000)
        assert len(ledger.violations()) > 0
    finally:
        restore()


def test_the_ledger_catches_keys_weaker_than_the_target():
    ledger = SecurityLedger("x25519", EPSILON_TARGET)
    ok = ledger.record(
        q_adapt=1, mode="quantum", handshake="qkd-psk", key_epsilon=1e-11, consumes_qkd_key=True
    )
    weak = ledger.record(
        q_adapt=1, mode="quantum", handshake="qkd-psk", key_epsilon=1e-6, consumes_qkd_key=True
    )
    below = ledger.record(
        q_adapt=0, mode="quantum", handshake="qkd-psk", key_epsilon=1e-6, consumes_qkd_key=True
    )
    assert ok.holds and not weak.holds and below.holds  # with Q_adapt = 0 the bound is 0
    assert ledger.violations() == [1]


def test_against_a_quantum_adversary_x25519_gives_no_security():
    ledger = SecurityLedger("x25519", EPSILON_TARGET, adversary="quantum")
    entry = ledger.record(
        q_adapt=1, mode="classical", handshake="x25519", key_epsilon=None, consumes_qkd_key=False
    )
    assert entry.s_session == 0.0 and entry.bound == 0.0 and entry.holds
