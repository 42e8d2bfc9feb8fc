"""Entropy-weighted key generation: the paper's Eq. (1) K_IoT, Eq. (2) S_QKD and Algorithm 1.

Binding interpretation (``docs/interpretations.md``): H_q is the secret fraction per sifted bit,
H_q = 1 - h2(e_Z^U) - h2(e_X^U), with both error rates at their Clopper-Pearson upper bounds for the block's
sample size (:func:`quantum_entropy`); it is 0 at about 11% QBER and negative above. The raw
basis-mismatch entropy h2(mismatched / detected) is kept beside it as a source-health signal.

Forms and defaults of the factors the paper leaves open (all in :class:`KeyPolicy`, set from a scenario's
``keys`` mapping):
- gamma(d) = w * integrity + (1 - w) * auth_success_rate, both in [0, 1] (w = ``trust_weight`` = 0.5);
  a device with no history has gamma = 1.
- eta(d, t) = communication energy the device spent in the window / its energy budget for the window (>= 0);
  0 when no energy figures are available.
- theta is the photon noise the receiver sees, measured as the block's QBER; delta(theta) = 1 + kappa theta
  (kappa = ``delta_slope`` = 10), increasing with delta(0) = 1.
- L(tau) is the quantum channel's loss: the fraction of emitted pulses without a detection.
- Time is counted in QKD blocks (slots): the integral of Eq. (2) is the sum over the window's slots.
- Defaults: epsilon_min = 0.01, Psi_secure = 0, lambda = 0.05 (a fully lossy slot costs at most 0.05).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from qesif_core.errors import UserInputError

# numpy, the key store and the key-rate module are imported where used: `qesif validate` reads KeyPolicy
# alone and should not pay for them (they are slow to import).
if TYPE_CHECKING:
    import numpy as np

    from qesif_core.keys import SecretBits


def __getattr__(name: str) -> Any:
    """``quantum_entropy``: H_q per block, defined once in ``keyrate`` (the QuISP backend uses it too)."""
    if name == "quantum_entropy":
        from qesif_core.qkd.keyrate import entropy_per_bit

        globals()[name] = entropy_per_bit
        return entropy_per_bit
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def basis_mismatch_entropy(mismatched: int, detected: int) -> float:
    """h2 of the fraction of detections whose bases differed (1 for unbiased, independent choices)."""
    from qesif_core.qkd.keyrate import h2

    return float(h2(mismatched / detected)) if detected else 0.0


@dataclass(frozen=True)
class KeyPolicy:
    """Thresholds and factor shapes of Algorithm 1."""

    epsilon_min: float = 0.01
    psi_secure: float = 0.0
    lambda_loss: float = 0.05
    delta_slope: float = 10.0
    trust_weight: float = 0.5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise UserInputError(f"keys field {f.name} must be a finite number (got {value!r})")
        for name in ("lambda_loss", "delta_slope"):
            if getattr(self, name) < 0:
                raise UserInputError(f"keys field {name} must be >= 0 (got {getattr(self, name)!r})")
        if not 0.0 <= self.trust_weight <= 1.0:
            raise UserInputError(f"keys field trust_weight must lie in [0, 1] (got {self.trust_weight!r})")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> KeyPolicy:
        """Read this policy's fields from a scenario's ``keys`` mapping (other parts' keys are left alone)."""
        names = {f.name for f in fields(cls)}
        return cls(**{name: value for name, value in values.items() if name in names})


def trust_factor(integrity: float = 1.0, auth_success_rate: float = 1.0, weight: float = 0.5) -> float:
    """gamma(d): device integrity and historical authentication success, both in [0, 1]."""
    for name, value in (
        ("integrity", integrity),
        ("auth_success_rate", auth_success_rate),
        ("weight", weight),
    ):
        if not 0.0 <= value <= 1.0:
            raise UserInputError(f"trust factor input {name} must lie in [0, 1] (got {value!r})")
    return weight * integrity + (1.0 - weight) * auth_success_rate


def communication_cost(energy_j: float, budget_j: float) -> float:
    """eta(d, t): the window's communication energy normalised by the device's energy budget."""
    if budget_j <= 0:
        raise UserInputError(f"energy budget must be > 0 J (got {budget_j!r})")
    if energy_j < 0:
        raise UserInputError(f"communication energy must be >= 0 J (got {energy_j!r})")
    return energy_j / budget_j


def decoherence_factor(theta: float | np.ndarray, slope: float = 10.0) -> float | np.ndarray:
    """delta(theta) = 1 + slope * theta: increasing in the photon noise theta, delta(0) = 1."""
    import numpy as np

    value = 1.0 + slope * np.maximum(np.asarray(theta, dtype=float), 0.0)
    return float(value) if np.ndim(value) == 0 else value


def k_iot(h_q: float, gamma: float, eta: float, delta: float) -> float:
    """Eq. (1): K_IoT = H_q gamma / (1 + eta delta)."""
    return h_q * gamma / (1.0 + eta * delta)


def s_qkd(
    h_q: Sequence[float] | np.ndarray,
    delta: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    lambda_loss: float,
) -> float:
    """Eq. (2) over a window of slots: sum of H_q / delta - lambda L (one slot = one time unit)."""
    import numpy as np

    h, d, lo = (np.asarray(a, dtype=float) for a in (h_q, delta, loss))
    return float(np.sum(h / d - lambda_loss * lo))


def _no_key_bits() -> np.ndarray:
    import numpy as np

    return np.zeros(0, dtype=np.uint8)


@dataclass(frozen=True)
class SlotObservation:
    """What one QKD block (time slot) of a device's link measured, plus the device's cost in that slot."""

    h_q: float
    theta: float
    loss: float
    eta: float = 0.0
    key: SecretBits = field(default_factory=_no_key_bits, repr=False)


@dataclass(frozen=True)
class KeyDecision:
    """Algorithm 1's outcome for one device and window. ``key`` is empty when the key was discarded."""

    device: str
    accepted: bool
    s_qkd: float
    k_iot: tuple[float, ...]
    appended_slots: tuple[int, ...]
    key: SecretBits = field(repr=False)

    @property
    def flagged(self) -> bool:
        """A discarded key flags the session for the Q-IDS."""
        return not self.accepted

    @property
    def key_bits(self) -> int:
        return int(self.key.size)


def generate_key(
    device: str, slots: Sequence[SlotObservation], gamma: float, policy: KeyPolicy | None = None
) -> KeyDecision:
    """Algorithm 1: append each slot's key bits when K_IoT > epsilon_min, accumulate S_QKD, and return
    the key if S_QKD >= Psi_secure at the end of the window, otherwise discard it and flag the session."""
    import numpy as np

    from qesif_core.keys import key_bits_of

    if not slots:
        raise ValueError("Algorithm 1 needs at least one slot in the window")
    if not 0.0 <= gamma <= 1.0:
        raise UserInputError(f"trust factor gamma must lie in [0, 1] (got {gamma!r})")
    policy = policy or KeyPolicy()
    deltas = [decoherence_factor(slot.theta, policy.delta_slope) for slot in slots]
    rates = tuple(k_iot(slot.h_q, gamma, slot.eta, d) for slot, d in zip(slots, deltas, strict=True))
    appended = tuple(i for i, rate in enumerate(rates) if rate > policy.epsilon_min)
    score = s_qkd([slot.h_q for slot in slots], deltas, [slot.loss for slot in slots], policy.lambda_loss)
    accepted = score >= policy.psi_secure
    parts = [slots[i].key for i in appended] if accepted else []
    if len(parts) == 1:
        key = parts[0]  # one slot's key as it is: deferred bits (qesif_core.keys.DeferredBits) stay deferred
    else:
        key = np.concatenate([key_bits_of(part) for part in parts]) if parts else np.zeros(0, dtype=np.uint8)
    return KeyDecision(
        device=device,
        accepted=accepted,
        s_qkd=score,
        k_iot=rates,
        appended_slots=appended,
        key=key,
    )
