"""The baselines the paper compares with: QRHE [10], HyQuSec [21], QuIDS [22], QLSN [23].

Each is modelled from what the paper's Table 1 and the cited work describe, as far as the model needs:
how a session's key is established, which cipher protects the payload, whether QKD keys are used and
when, and which intrusion detector runs. No number reported in the QESIF paper is used anywhere.

Common choices, so that comparisons isolate what each scheme adds:
- Schemes whose source describes no specific intrusion detector run the same flow classifier as QESIF
  (``random_forest``) without the quantum anomaly score.
- Post-quantum key establishment is ML-KEM-768 (FIPS 203, the standardised lattice KEM), the concrete
  instance of the "post-quantum" / "lattice-based" operations the sources name.
- Sessions are never left unprotected: a scheme that uses QKD keys falls back as described below when
  the gateway's pool is empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qesif_core.hybrid import q_adapt
from qesif_core.qids.fusion import DetectorSpec
from qesif_core.schemes.base import SecurityScheme, SessionContext, SessionPlan, register_scheme
from qesif_core.schemes.qesif import FLOW_ONLY_DETECTOR, FUSION_NONE, hysteresis_from_params


class _BaselineScheme(SecurityScheme):
    """Baselines take no part in Eq. 5, but report its value for the Theorem 1 bookkeeping."""

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(params)
        self.epsilon_min = hysteresis_from_params(self.params).epsilon_min

    def _q(self, ctx: SessionContext) -> int:
        return q_adapt(ctx.k_iot, self.epsilon_min)


@register_scheme
class Qrhe(_BaselineScheme):
    """QRHE [10]: quantum-resistant hybrid encryption for smart-grid IoT (Xiong et al., Sci. Rep. 2025).

    Model: hybrid encryption in the KEM/DEM sense, a post-quantum KEM establishing a symmetric key per
    session (ML-KEM-768) and AES-256-GCM on the payload. No QKD keys, no entropy adaptation (Table 1:
    "No entropy adaptation; lacks real-time anomaly detection"), hence no switching and no quantum
    anomaly score: the generic flow detector only.
    Sources: QESIF paper Table 1 and Sec. 2; title and abstract of [10].
    """

    name = "QRHE"
    classical_handshake = "mlkem768"
    description = "Baseline [10]: post-quantum hybrid encryption (ML-KEM-768 + AES-256-GCM) every session"
    detector = FLOW_ONLY_DETECTOR

    def plan_session(self, ctx: SessionContext) -> SessionPlan:
        return SessionPlan(
            "pq-hybrid", "mlkem768", "aes-256-gcm", consumes_qkd_key=False, q_adapt=self._q(ctx)
        )


@register_scheme
class HyQuSec(_BaselineScheme):
    """HyQuSec [21]: hybrid quantum architecture for smart-city security (Santa Barletta et al., JSS 2024).

    Model: a static hybrid of QKD and post-quantum cryptography. Every session runs ML-KEM-768 and mixes
    in a QKD key whenever the gateway's pool has one; the protocol never adapts to the channel (Table 1:
    "Static protocol; no adaptability to channel conditions"): no key-rate threshold, no QBER or Q-IDS
    input to key selection. Generic flow detector without quantum score.
    Sources: QESIF paper Table 1 and Sec. 2; title and abstract of [21].
    """

    name = "HyQuSec"
    classical_handshake = "mlkem768"
    description = "Baseline [21]: static QKD + ML-KEM-768 hybrid, no adaptation to channel conditions"
    detector = FLOW_ONLY_DETECTOR

    def plan_session(self, ctx: SessionContext) -> SessionPlan:
        return SessionPlan(
            "pq-hybrid",
            "mlkem768",
            "aes-256-gcm",
            consumes_qkd_key=ctx.quantum_key_available,
            q_adapt=self._q(ctx),
        )


@register_scheme
class QuIds(_BaselineScheme):
    """QuIDS [22]: quantum intrusion detection using outlier analysis (Kim & Madhavi, Sci. Rep. 2024).

    Model: a detection scheme; its "quantum" is the learning model (quantum-kernel outlier analysis of
    traffic), not QKD-layer signals, so no quantum anomaly score (Eq. 3/4) is fused. The outlier model
    itself is not among the flow classifiers here; an MLP (a learned non-linear decision boundary) stands
    in for it. Key establishment is not part of [22]: classical X25519 + AES-128-GCM every session.
    Table 1 ("Limited scalability and lacks energy efficiency metrics") adds nothing to model.
    Sources: QESIF paper Table 1 and Sec. 2; title and abstract of [22].
    """

    name = "QuIDS"
    description = "Baseline [22]: learned outlier-style flow detector (MLP stand-in), classical X25519 keys"
    detector = DetectorSpec(classifier="mlp", uses_quantum_score=False, fusion=FUSION_NONE)

    def plan_session(self, ctx: SessionContext) -> SessionPlan:
        return SessionPlan("classical", "x25519", "aes-128-gcm", consumes_qkd_key=False, q_adapt=self._q(ctx))


@register_scheme
class Qlsn(_BaselineScheme):
    """QLSN [23]: QKD for large-scale networks (Mangla, Rani & Abdelsalam, Inf. Softw. Technol. 165, 2024).

    Model: QKD keys used whenever available, combined with lattice-based operations on every session
    (Table 1: "High computational cost and latency due to lattice operations"): each session runs the
    hybrid X25519 + ML-KEM-768 exchange and mixes in a QKD key when the pool has one. No adaptation and
    no quantum anomaly score; generic flow detector.
    Sources: QESIF paper Table 1 and Sec. 2; title and abstract of [23].
    """

    name = "QLSN"
    classical_handshake = "x25519-mlkem768"
    description = "Baseline [23]: QKD keys plus X25519+ML-KEM-768 lattice operations on every session"
    detector = FLOW_ONLY_DETECTOR

    def plan_session(self, ctx: SessionContext) -> SessionPlan:
        return SessionPlan(
            "pq-hybrid",
            "x25519-mlkem768",
            "aes-256-gcm",
            consumes_qkd_key=ctx.quantum_key_available,
            q_adapt=self._q(ctx),
        )
