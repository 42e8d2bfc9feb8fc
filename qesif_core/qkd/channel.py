"""Physical settings of one QKD link: source, fibre, detectors, misalignment and the eavesdropper.

The paper's channel conditions (Table 2) are *physical settings*, not target QBERs (see
``docs/interpretations.md``): ``clean`` has 1% intrinsic (misalignment/depolarising) error, ``noisy`` 7%, and
``eavesdropped`` is ``clean`` plus an intercept-resend attacker on a fraction 0.56 of the pulses. The
QBER is always measured from simulated sifted bits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from qesif_core.errors import UserInputError

EVE_MODES = ("none", "intercept-resend", "pns")


@dataclass(frozen=True)
class ChannelParams:
    """One link of weak-coherent-pulse BB84 with vacuum + weak decoy states (or, for BBM92, the same
    fibre and detectors on both arms of a pair source placed mid-link).

    ``dark_count_prob`` is the probability of a dark (or background) click per detection gate at Bob,
    ``intrinsic_error`` (e_d) the probability that a photon reaching Bob's detectors hits the wrong one.
    ``eve_fraction`` is the fraction of pulses (pairs) Eve attacks with ``eve``.
    """

    distance_km: float = 10.0
    fibre_loss_db_per_km: float = 0.2
    detector_efficiency: float = 0.2
    dark_count_prob: float = 1e-6
    intrinsic_error: float = 0.01
    mu_signal: float = 0.5
    mu_decoy: float = 0.1
    prob_signal: float = 0.8
    prob_decoy: float = 0.1
    prob_vacuum: float = 0.1
    z_basis_prob: float = 0.5
    eve: str = "none"
    eve_fraction: float = 0.0

    def __post_init__(self) -> None:
        _check_finite(self)
        _at_least("distance_km", self.distance_km, 0.0)
        _at_least("fibre_loss_db_per_km", self.fibre_loss_db_per_km, 0.0)
        for name in ("detector_efficiency", "dark_count_prob", "eve_fraction"):
            _fraction(name, getattr(self, name))
        for name in ("prob_signal", "prob_decoy", "prob_vacuum"):
            _fraction(name, getattr(self, name))
        _in_range("intrinsic_error", self.intrinsic_error, 0.0, 0.5)
        _in_range("z_basis_prob", self.z_basis_prob, 0.0, 1.0, open_ends=True)
        if self.detector_efficiency == 0.0:
            raise UserInputError("channel field detector_efficiency must be > 0 (got 0)")
        if self.mu_signal <= 0.0:
            raise UserInputError(f"channel field mu_signal must be > 0 (got {self.mu_signal!r})")
        if not 0.0 < self.mu_decoy < self.mu_signal:
            raise UserInputError(
                f"channel field mu_decoy must lie in (0, mu_signal={self.mu_signal!r}) "
                f"(got {self.mu_decoy!r})"
            )
        total = self.prob_signal + self.prob_decoy + self.prob_vacuum
        if not math.isclose(total, 1.0, abs_tol=1e-9):
            raise UserInputError(
                f"channel fields prob_signal + prob_decoy + prob_vacuum must sum to 1 (got {total!r})"
            )
        if self.prob_signal == 0.0:
            raise UserInputError("channel field prob_signal must be > 0 (got 0)")
        if self.eve not in EVE_MODES:
            raise UserInputError(
                f"channel field eve must be one of {', '.join(EVE_MODES)} (got {self.eve!r})"
            )

    @property
    def channel_transmittance(self) -> float:
        """Fibre transmittance 10^(-alpha L / 10)."""
        return 10.0 ** (-self.fibre_loss_db_per_km * self.distance_km / 10.0)

    @property
    def transmittance(self) -> float:
        """Overall single-photon transmittance eta = fibre x detector efficiency."""
        return self.channel_transmittance * self.detector_efficiency

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ChannelParams:
        """Build from a scenario's ``channel`` mapping (a ``name`` key selects a preset to start from)."""
        values = dict(values)
        base = preset(values.pop("name")) if "name" in values else cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserInputError(
                f"unknown channel field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return replace(base, **values)


def _check_finite(params: ChannelParams) -> None:
    for f in fields(params):
        value = getattr(params, f.name)
        if f.name == "eve":
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserInputError(f"channel field {f.name} must be a number (got {value!r})")
        if not math.isfinite(value):
            raise UserInputError(f"channel field {f.name} must be finite (got {value!r})")


def _at_least(name: str, value: float, low: float) -> None:
    if value < low:
        raise UserInputError(f"channel field {name} must be >= {low} (got {value!r})")


def _fraction(name: str, value: float) -> None:
    _in_range(name, value, 0.0, 1.0)


def _in_range(name: str, value: float, low: float, high: float, open_ends: bool = False) -> None:
    bad = (value <= low or value >= high) if open_ends else (value < low or value > high)
    if bad:
        brackets = ("(", ")") if open_ends else ("[", "]")
        raise UserInputError(
            f"channel field {name} must lie in {brackets[0]}{low}, {high}{brackets[1]} (got {value!r})"
        )


#: Intercept-resend fraction of the ``eavesdropped`` preset: Q = e_d + p (1/4 - e_d/2) = 14.7% at e_d = 1%.
EAVESDROPPED_FRACTION = 0.56

CHANNEL_PRESETS: dict[str, ChannelParams] = {
    "clean": ChannelParams(intrinsic_error=0.01),
    "noisy": ChannelParams(intrinsic_error=0.07),
    "eavesdropped": ChannelParams(
        intrinsic_error=0.01, eve="intercept-resend", eve_fraction=EAVESDROPPED_FRACTION
    ),
}


def preset(name: str) -> ChannelParams:
    """The preset called ``name`` (``clean``, ``noisy``, ``eavesdropped``)."""
    try:
        return CHANNEL_PRESETS[name]
    except KeyError:
        raise UserInputError(
            f"unknown channel preset {name!r}; known: {', '.join(CHANNEL_PRESETS)}"
        ) from None
