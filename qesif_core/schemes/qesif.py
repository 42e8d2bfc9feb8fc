"""QESIF (the paper's framework) and its ablations QESIF-QKD, QESIF-QIDS and QESIF-hybrid.

QESIF (paper Sec. 3): gateways hold QKD keys; per session the hybrid stack evaluates Q_adapt (Eq. 5) on
the device's K_IoT (Eq. 1) with session-level smoothing (:class:`qesif_core.hybrid.ModeSwitch`). In
quantum mode the gateway derives the device's session key from a fresh QKD key (HKDF) and sends it
wrapped (``qkd-psk``), with AES-256-GCM on the payloads. In classical mode, or whenever no QKD key is
available or the Q-IDS flags the gateway link, the session runs a real X25519 exchange with
AES-128-GCM (the paper names "AES or RSA"; X25519 is the modern choice at 128-bit strength). The
detector fuses a flow classifier with the quantum anomaly score (Eq. 3/4, Algorithm 2) by the ``boost``
rule (``qesif_core.qids.fusion``): on a gateway link Algorithm 2 flags, the flow classifier's threshold
drops from 0.5 to 0.3 (heightened scrutiny); the quantum verdict never labels a record by itself.

Parameters (the run's ``keys`` section): ``epsilon_min`` (Eq. 5 threshold, in the units of Eq. (1)'s
K_IoT as computed by :mod:`qesif_core.entropy_keys`), ``hysteresis`` (a mapping with ``band``,
``smoothing``, ``min_dwell``, or ``false`` to switch on the raw Eq. 5).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qesif_core.entropy_keys import KeyPolicy
from qesif_core.errors import UserInputError
from qesif_core.hybrid import HysteresisParams, ModeSwitch, q_adapt
from qesif_core.qids.fusion import DetectorSpec
from qesif_core.schemes.base import SecurityScheme, SessionContext, SessionPlan, register_scheme

#: Eq. 5 threshold used when a run does not set ``keys.epsilon_min``: the same default as Algorithm 1's.
DEFAULT_EPSILON_MIN = KeyPolicy.epsilon_min
#: Fusion rule names (``qesif_core.qids.fusion``): the flow detector at a lower threshold on links the
#: quantum detector flags; flow detector alone.
FUSION_BOOST = "boost"
FUSION_NONE = "none"

QESIF_DETECTOR = DetectorSpec(classifier="random_forest", uses_quantum_score=True, fusion=FUSION_BOOST)
FLOW_ONLY_DETECTOR = DetectorSpec(classifier="random_forest", uses_quantum_score=False, fusion=FUSION_NONE)


def hysteresis_from_params(params: Mapping[str, Any]) -> HysteresisParams:
    """HysteresisParams from a run's ``keys`` section; user mistakes name the field."""
    epsilon_min = params.get("epsilon_min", DEFAULT_EPSILON_MIN)
    if not isinstance(epsilon_min, int | float) or isinstance(epsilon_min, bool) or epsilon_min <= 0:
        raise UserInputError(f"keys.epsilon_min must be a number > 0, got {epsilon_min!r}")
    setting = params.get("hysteresis", {})
    if setting is False:
        return HysteresisParams(float(epsilon_min), band=0.0, smoothing=1.0, min_dwell=1)
    if setting is True or setting is None:
        setting = {}
    if not isinstance(setting, Mapping):
        raise UserInputError(f"keys.hysteresis must be a mapping or false, got {setting!r}")
    unknown = set(setting) - {"band", "smoothing", "min_dwell"}
    if unknown:
        raise UserInputError(f"keys.hysteresis: unknown field(s) {', '.join(sorted(unknown))}")
    try:
        return HysteresisParams(float(epsilon_min), **dict(setting))
    except (TypeError, ValueError) as exc:
        raise UserInputError(f"keys.hysteresis: {exc}") from None


class AdaptiveHybridScheme(SecurityScheme):
    """Shared machinery: one :class:`ModeSwitch` per device, fallback rules, and the two plans."""

    quantum_cipher = "aes-256-gcm"
    classical_handshake = "x25519"
    classical_cipher = "aes-128-gcm"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(params)
        self.hysteresis = hysteresis_from_params(self.params)
        self._switches: dict[int, ModeSwitch] = {}

    def mode_switches(self) -> int:
        """Voluntary (hysteresis) switches summed over devices so far."""
        return sum(s.switches for s in self._switches.values())

    def _smoothed_decision(self, ctx: SessionContext) -> int:
        switch = self._switches.get(ctx.device)
        if switch is None:
            switch = self._switches[ctx.device] = ModeSwitch(self.hysteresis)
        return switch.update(ctx.k_iot)

    def _quantum_plan(self, q: int) -> SessionPlan:
        return SessionPlan("quantum", "qkd-psk", self.quantum_cipher, consumes_qkd_key=True, q_adapt=q)

    def _classical_plan(self, q: int) -> SessionPlan:
        mode = "classical" if self.classical_handshake == "x25519" else "pq-hybrid"
        return SessionPlan(
            mode, self.classical_handshake, self.classical_cipher, consumes_qkd_key=False, q_adapt=q
        )


@register_scheme
class Qesif(AdaptiveHybridScheme):
    """QESIF: Eq. 5 with hysteresis, QKD-derived keys when allowed, cross-layer Q-IDS (flows boosted by
    Eq. 3/4 on flagged links)."""

    name = "QESIF"
    description = (
        "Entropy-aware hybrid: QKD keys when Q_adapt=1 (with hysteresis), X25519 otherwise; fused Q-IDS"
    )
    detector = QESIF_DETECTOR

    def plan_session(self, ctx: SessionContext) -> SessionPlan:
        q = q_adapt(ctx.k_iot, self.hysteresis.epsilon_min)
        wants_quantum = self._smoothed_decision(ctx)
        if wants_quantum and ctx.quantum_key_available and not ctx.link_flagged:
            return self._quantum_plan(q)
        return self._classical_plan(q)


@register_scheme
class QesifClassicalKeysOnly(AdaptiveHybridScheme):
    """QESIF-QKD ablation: no QKD keys at all (every session X25519 + AES-128-GCM); same Q-IDS as QESIF."""

    name = "QESIF-QKD"
    description = "Ablation: QESIF without QKD keys (classical X25519 key exchange every session)"
    detector = QESIF_DETECTOR

    def plan_session(self, ctx: SessionContext) -> SessionPlan:
        return self._classical_plan(q_adapt(ctx.k_iot, self.hysteresis.epsilon_min))


@register_scheme
class QesifNoAnomalyScoring(Qesif):
    """QESIF-QIDS ablation: QESIF's key management, but the Q-IDS without the quantum anomaly score."""

    name = "QESIF-QIDS"
    description = "Ablation: QESIF without quantum anomaly scoring (flow detector only)"
    detector = FLOW_ONLY_DETECTOR


@register_scheme
class QesifNoSwitching(AdaptiveHybridScheme):
    """QESIF-hybrid ablation: no adaptive switching.

    Q_adapt and its hysteresis are not consulted and Q-IDS verdicts do not steer key selection: a QKD
    key is used whenever the gateway's pool has one, X25519 only when the pool is empty (sessions cannot
    go unprotected). The Q-IDS is QESIF's.
    """

    name = "QESIF-hybrid"
    description = "Ablation: QESIF without the adaptive hybrid switch (QKD key whenever one is in the pool)"
    detector = QESIF_DETECTOR

    def plan_session(self, ctx: SessionContext) -> SessionPlan:
        q = q_adapt(ctx.k_iot, self.hysteresis.epsilon_min)
        if ctx.quantum_key_available:
            return self._quantum_plan(q)
        return self._classical_plan(q)
