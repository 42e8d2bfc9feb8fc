"""A user-defined baseline: QKD keys when the link is healthy, ML-KEM-768 otherwise."""

from qesif_core.hybrid import q_adapt
from qesif_core.qids.fusion import DetectorSpec
from qesif_core.schemes import SecurityScheme, SessionContext, SessionPlan, register_scheme


@register_scheme
class KeyRateGate(SecurityScheme):
    """Uses a QKD key whenever K_IoT >= epsilon_min, the pool has one and the link is not flagged;
    otherwise a post-quantum ML-KEM-768 exchange. No hysteresis. Detector: gradient boosting on flows,
    fused with the quantum anomaly score."""

    name = "KeyRateGate"
    description = "Example: QKD key when K_IoT >= epsilon_min, else ML-KEM-768 (no hysteresis)"
    detector = DetectorSpec(classifier="gradient_boosting", uses_quantum_score=True, fusion="or")

    def __init__(self, params=None):
        super().__init__(params)
        self.epsilon_min = float(self.params.get("epsilon_min", 0.01))

    def plan_session(self, ctx: SessionContext) -> SessionPlan:
        q = q_adapt(ctx.k_iot, self.epsilon_min)
        if q and ctx.quantum_key_available and not ctx.link_flagged:
            return SessionPlan("quantum", "qkd-psk", "aes-256-gcm", consumes_qkd_key=True, q_adapt=q)
        return SessionPlan("pq-hybrid", "mlkem768", "aes-256-gcm", consumes_qkd_key=False, q_adapt=q)
