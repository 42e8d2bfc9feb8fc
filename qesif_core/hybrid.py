"""The hybrid protocol stack's decision: Q_adapt (Eq. 5) with hysteresis, and Theorem 1 bookkeeping.

Eq. (5) as written is a hard threshold, Q_adapt = 1 iff K_IoT(d, t) >= epsilon_min. The paper applies it
"at the session level with threshold smoothing"; :class:`ModeSwitch` does that with three mechanisms:

1. smoothing: an exponentially weighted average of K_IoT over sessions (weight ``smoothing`` on the
   newest value; 1.0 disables it);
2. a Schmitt band: switch to quantum only when the average reaches ``epsilon_min * (1 + band)``, back to
   classical only when it falls below ``epsilon_min * (1 - band)``;
3. a minimum dwell: after a switch the mode is held for at least ``min_dwell`` sessions.

Switch-count bound (tested): over N sessions of one device, the first session sets the mode without a
switch, and any two switches are at least ``min_dwell`` sessions apart, so

    switches <= floor((N - 1) / min_dwell);

moreover every switch after the first needs the smoothed rate to cross the whole band since the previous
switch (the first may start inside the band, where the initial mode is set by epsilon_min), so
switches <= 1 + the number of band traversals of the smoothed trace (:func:`band_traversals`).
Hysteresis only delays a *voluntary* switch: a session with no QKD key available, or on a link the Q-IDS
flags, falls back to classical at once (schemes do this in ``plan_session``; not counted as a switch of
the controller).

Theorem 1: S_QESIF(t) >= min(S_classical, S_quantum * Q_adapt(t)). :class:`SecurityLedger` records, per
session, the level actually achieved and the bound, with levels defined as S = 1 - delta where delta
bounds the adversary's advantage: for a QKD key, its composable epsilon (from the block's finite-size
privacy amplification); for a classical or post-quantum key exchange, 2^-b for its security strength b
against the chosen adversary (``classical``: X25519 b = 128; ``quantum``: X25519 b = 0, ML-KEM-768
b = 192 as NIST category 3). S_quantum uses the target epsilon of accepted keys. Comparisons are done
on delta (exactly representable) rather than on 1 - delta, which rounds to 1.0 in floating point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where used (slow to import; validation needs only the parameters)
    import numpy as np

#: Security strength in bits of each key-establishment path against a classical or a quantum adversary.
SECURITY_BITS: dict[str, dict[str, float]] = {
    "x25519": {"classical": 128.0, "quantum": 0.0},
    "x25519-mlkem768": {"classical": 192.0, "quantum": 192.0},
    "mlkem768": {"classical": 192.0, "quantum": 192.0},
}
ADVERSARIES = ("classical", "quantum")


def q_adapt(k_iot: float, epsilon_min: float) -> int:
    """Eq. (5): 1 when the device's dynamic key rate reaches epsilon_min, else 0."""
    return int(k_iot >= epsilon_min)


@dataclass(frozen=True)
class HysteresisParams:
    """Parameters of the session-level switch (see the module docstring)."""

    epsilon_min: float
    band: float = 0.1
    smoothing: float = 0.3
    min_dwell: int = 5

    def __post_init__(self) -> None:
        if not self.epsilon_min > 0:
            raise ValueError(f"hysteresis: epsilon_min must be > 0, got {self.epsilon_min}")
        if not 0 <= self.band < 1:
            raise ValueError(f"hysteresis: band must be in [0, 1), got {self.band}")
        if not 0 < self.smoothing <= 1:
            raise ValueError(f"hysteresis: smoothing must be in (0, 1], got {self.smoothing}")
        if self.min_dwell < 1:
            raise ValueError(f"hysteresis: min_dwell must be >= 1, got {self.min_dwell}")

    @property
    def upper(self) -> float:
        return self.epsilon_min * (1 + self.band)

    @property
    def lower(self) -> float:
        return self.epsilon_min * (1 - self.band)

    def switch_bound(self, n_sessions: int) -> int:
        """The documented upper bound on switches over ``n_sessions`` sessions."""
        return max(0, (n_sessions - 1) // self.min_dwell)


class ModeSwitch:
    """Q_adapt with hysteresis for one device; ``update`` is called once per session."""

    def __init__(self, params: HysteresisParams) -> None:
        self.params = params
        self.smoothed: float | None = None
        self.quantum: bool | None = None
        self.sessions_in_mode = 0
        self.switches = 0

    def update(self, k_iot: float) -> int:
        """Feed this session's K_IoT; returns the smoothed decision (1 quantum, 0 classical)."""
        p = self.params
        self.smoothed = (
            k_iot if self.smoothed is None else p.smoothing * k_iot + (1 - p.smoothing) * self.smoothed
        )
        if self.quantum is None:
            self.quantum = self.smoothed >= p.epsilon_min
            self.sessions_in_mode = 1
            return int(self.quantum)
        wants = self.smoothed < p.lower if self.quantum else self.smoothed >= p.upper
        if wants and self.sessions_in_mode >= p.min_dwell:
            self.quantum = not self.quantum
            self.switches += 1
            self.sessions_in_mode = 1
        else:
            self.sessions_in_mode += 1
        return int(self.quantum)


def smoothed_trace(k_iot: np.ndarray, smoothing: float) -> np.ndarray:
    """The exponentially weighted average that :class:`ModeSwitch` applies, over a whole trace."""
    import numpy as np

    out = np.empty(len(k_iot), dtype=float)
    value = None
    for i, k in enumerate(np.asarray(k_iot, dtype=float)):
        value = k if value is None else smoothing * k + (1 - smoothing) * value
        out[i] = value
    return out


def band_traversals(smoothed: np.ndarray, lower: float, upper: float) -> int:
    """How many times a trace goes from below ``lower`` to at/above ``upper`` or back (full crossings)."""
    side = None
    traversals = 0
    for value in smoothed:
        now = "high" if value >= upper else "low" if value < lower else None
        if now is not None:
            if side is not None and now != side:
                traversals += 1
            side = now
    return traversals


def raw_switches(k_iot: np.ndarray, epsilon_min: float) -> int:
    """Mode changes Eq. (5) would make without smoothing (for comparison with :class:`ModeSwitch`)."""
    import numpy as np

    modes = np.asarray(k_iot) >= epsilon_min
    return int(np.count_nonzero(modes[1:] != modes[:-1]))


@dataclass(frozen=True)
class SessionSecurity:
    """Theorem 1 at one session: achieved level and the bound, in both S and delta = 1 - S form."""

    q_adapt: int
    mode: str
    delta_session: float
    delta_classical: float
    delta_quantum: float

    @property
    def s_session(self) -> float:
        return 1.0 - self.delta_session

    @property
    def bound(self) -> float:
        """min(S_classical, S_quantum * Q_adapt)."""
        return min(1.0 - self.delta_classical, (1.0 - self.delta_quantum) * self.q_adapt)

    @property
    def holds(self) -> bool:
        """S_session >= bound, compared exactly on delta."""
        if self.q_adapt == 0:
            return self.delta_session <= 1.0  # the bound is min(S_classical, 0) = 0
        return self.delta_session <= max(self.delta_classical, self.delta_quantum)


def handshake_delta(handshake: str, adversary: str) -> float:
    """2^-b for the handshake's security strength b against ``adversary``."""
    if adversary not in ADVERSARIES:
        raise ValueError(f"adversary {adversary!r} is not one of {', '.join(ADVERSARIES)}")
    return float(2.0 ** -SECURITY_BITS[handshake][adversary])


class SecurityLedger:
    """Per-session Theorem 1 bookkeeping for one scheme in one run.

    ``classical_handshake`` is the scheme's classical fallback (it defines S_classical);
    ``epsilon_target`` the composable epsilon accepted QKD keys are built for (S_quantum = 1 - it).
    """

    def __init__(self, classical_handshake: str, epsilon_target: float, adversary: str = "classical") -> None:
        self.adversary = adversary
        self.delta_classical = handshake_delta(classical_handshake, adversary)
        self.delta_quantum = float(epsilon_target)
        self.sessions: list[SessionSecurity] = []

    def record(
        self, *, q_adapt: int, mode: str, handshake: str, key_epsilon: float | None, consumes_qkd_key: bool
    ) -> SessionSecurity:
        """Record one session. ``key_epsilon`` is the epsilon of the QKD key used (None if none was).

        A session that needed a QKD key and got none is unprotected (delta = 1). A session that mixes a
        QKD key into a post-quantum exchange is as strong as the stronger of the two.
        """
        if consumes_qkd_key:
            key_delta = 1.0 if key_epsilon is None else float(key_epsilon)
            delta = (
                key_delta
                if handshake == "qkd-psk"
                else min(key_delta, handshake_delta(handshake, self.adversary))
            )
        else:
            delta = handshake_delta(handshake, self.adversary)
        entry = SessionSecurity(int(q_adapt), mode, delta, self.delta_classical, self.delta_quantum)
        self.sessions.append(entry)
        return entry

    def violations(self) -> list[int]:
        """Indices of sessions where the Theorem 1 bound fails."""
        return [i for i, s in enumerate(self.sessions) if not s.holds]
