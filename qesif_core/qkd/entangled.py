"""BBM92 / E91: entanglement-based QKD from a Bell-pair error model, with a CHSH check.

A source emits Phi+ pairs; the pairs Alice and Bob share suffer a Pauli channel with X, Y and Z error
probabilities (this is what QuISP's tomography reports as Xerror, Yerror, Zerror). For Phi+, a Z-basis
measurement disagrees after an X or Y error and an X-basis measurement after a Z or Y error:
QBER_Z = x + y, QBER_X = z + y, fidelity F = 1 - x - y - z. The correlation matrix in the X-Z plane is
T_zz = 1 - 2 QBER_Z, T_xx = 1 - 2 QBER_X, and CHSH with Alice {0, pi/2}, Bob {pi/4, -pi/4} gives
S = sqrt(2) (T_zz + T_xx) (2 sqrt(2) for a perfect pair, <= 2 for any local model).

Detection: both arms (the source sits mid-link) have transmittance 10^(-alpha L/20) eta_det and dark clicks
Y0; a coincidence where either side clicked only in the dark (or double-clicked) carries a random bit.
Intercept-resend on a fraction p of the pairs (Eve measures Bob's photon in Z or X and resends) keeps the
sifted-basis correlation when her basis matches and randomises it otherwise: an attacked sifted bit is wrong
with (q + 1/2)/2, and attacked pairs have T halved. Multi-pair emissions of the source are not modelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from qesif_core.errors import UserInputError
from qesif_core.qkd.bb84 import Detections, SiftedCounts, check_pulses, draw_key_frame
from qesif_core.qkd.channel import ChannelParams

CHSH_ALICE = (0.0, math.pi / 2)
CHSH_BOB = (math.pi / 4, -math.pi / 4)
#: Sign of each setting pair's correlator in S = E00 + E01 + E10 - E11.
_CHSH_SIGNS = ((1, 1), (1, -1))

#: Heralded pairs held in quantum memories and measured by ideal detectors (QuISP's links, repeater chains):
#: the fibre is already applied (its loss shows in the pair rate), so the engine adds no fibre loss or dark
#: counts again.
HERALDED_PAIRS = ChannelParams(
    distance_km=0.0, detector_efficiency=1.0, dark_count_prob=0.0, intrinsic_error=0.0
)


def phi_plus_qbers(x_error: float, y_error: float, z_error: float) -> tuple[float, float]:
    """(QBER_Z, QBER_X) of a Phi+ pair with Pauli error rates X, Y, Z: X and Y flip the ZZ parity, Z and
    Y flip the XX parity. The one place this mapping lives (QuISP's tomography enters through it too)."""
    return x_error + y_error, z_error + y_error


@dataclass(frozen=True)
class BellPairModel:
    """Pauli errors of the shared pairs (probabilities) and, optionally, the pair rate in pairs/s."""

    x_error: float
    y_error: float
    z_error: float
    pair_rate_hz: float | None = None

    def __post_init__(self) -> None:
        for name in ("x_error", "y_error", "z_error"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise UserInputError(f"Bell-pair field {name} must lie in [0, 1] (got {value!r})")
        if self.x_error + self.y_error + self.z_error > 1.0 + 1e-12:
            raise UserInputError("Bell-pair fields x_error + y_error + z_error must not exceed 1")
        if self.pair_rate_hz is not None and not self.pair_rate_hz > 0:
            raise UserInputError(f"Bell-pair field pair_rate_hz must be > 0 (got {self.pair_rate_hz!r})")

    @property
    def fidelity(self) -> float:
        return 1.0 - self.x_error - self.y_error - self.z_error

    @property
    def qber_z(self) -> float:
        return phi_plus_qbers(self.x_error, self.y_error, self.z_error)[0]

    @property
    def qber_x(self) -> float:
        return phi_plus_qbers(self.x_error, self.y_error, self.z_error)[1]

    @classmethod
    def from_fidelity(cls, fidelity: float, pair_rate_hz: float | None = None) -> BellPairModel:
        """A Werner (depolarised) pair: x = y = z = (1 - F)/3."""
        if not 0.25 <= fidelity <= 1.0:
            raise UserInputError(f"Bell-pair fidelity must lie in [0.25, 1] (got {fidelity!r})")
        error = (1.0 - fidelity) / 3.0
        return cls(error, error, error, pair_rate_hz)

    @classmethod
    def from_channel(cls, params: ChannelParams) -> BellPairModel:
        """Misalignment e_d as bit and phase flips (x = z = e_d, y = 0): QBER_Z = QBER_X = e_d."""
        return cls(x_error=params.intrinsic_error, y_error=0.0, z_error=params.intrinsic_error)


@dataclass(frozen=True)
class ChshResult:
    """Measured CHSH value and its standard error from the rounds set aside for the test."""

    s_value: float
    standard_error: float
    rounds: int

    @property
    def violates_local_bound(self) -> bool:
        """S exceeds 2 by more than three standard errors."""
        return self.s_value - 3.0 * self.standard_error > 2.0


@dataclass(frozen=True)
class EntangledDetections:
    detections: Detections
    chsh: ChshResult


def simulate(
    params: ChannelParams,
    pairs: int,
    rng: np.random.Generator,
    bell_model: BellPairModel | None = None,
    chsh_fraction: float = 0.1,
    frame_bits: int | None = None,
) -> EntangledDetections:
    """Distribute ``pairs`` pairs; return counts and raw key (one class, index 0; its first ``frame_bits``
    bits if given) plus the CHSH check."""
    pairs = check_pulses(pairs, "pairs")
    if not 0.0 <= chsh_fraction < 1.0:
        raise UserInputError(f"chsh_fraction must lie in [0, 1) (got {chsh_fraction!r})")
    if params.eve == "pns":
        raise UserInputError("channel field eve='pns' applies to weak coherent pulses (bb84), not to bbm92")
    model = bell_model or BellPairModel.from_channel(params)
    arm = 10.0 ** (-params.fibre_loss_db_per_km * params.distance_km / 20.0) * params.detector_efficiency
    y0 = params.dark_count_prob
    click = 1.0 - (1.0 - y0) * (1.0 - arm)
    genuine = ((1.0 - y0) * arm) ** 2
    attacked = params.eve_fraction if params.eve == "intercept-resend" else 0.0
    # Coincidence cells: genuine honest, genuine attacked, accidental (dark or double click on a side).
    cell_probs = np.array([genuine * (1.0 - attacked), genuine * attacked, click * click - genuine])
    cell_counts = rng.multinomial(pairs, np.append(cell_probs, 1.0 - cell_probs.sum()))[:3]

    pz = params.z_basis_prob
    keep = 1.0 - chsh_fraction
    basis_pvals = [keep * pz * pz, keep * (1 - pz) * (1 - pz), keep * 2 * pz * (1 - pz), chsh_fraction]
    by_basis = rng.multinomial(cell_counts, basis_pvals)
    q_z, q_x = model.qber_z, model.qber_x
    errors_z = rng.binomial(by_basis[:, 0], [q_z, 0.5 * (q_z + 0.5), 0.5])
    errors_x = rng.binomial(by_basis[:, 1], [q_x, 0.5 * (q_x + 0.5), 0.5])

    correlation_scale = np.array([1.0, 0.5, 0.0])
    chsh = _chsh_test(by_basis[:, 3], correlation_scale, 1.0 - 2.0 * q_z, 1.0 - 2.0 * q_x, rng)

    n_key, key_errors = int(by_basis[:, 0].sum()), int(errors_z.sum())
    counts = SiftedCounts(
        intensities=(1.0,),
        sent=np.array([pairs], dtype=np.int64),
        detected=np.array([cell_counts.sum()], dtype=np.int64),
        sifted_z=np.array([n_key], dtype=np.int64),
        sifted_x=np.array([by_basis[:, 1].sum()], dtype=np.int64),
        errors_z=np.array([key_errors], dtype=np.int64),
        errors_x=np.array([errors_x.sum()], dtype=np.int64),
        mismatched=np.array([by_basis[:, 2].sum()], dtype=np.int64),
    )
    raw_key = draw_key_frame(n_key, key_errors, frame_bits, rng)
    detections = Detections(counts=counts, raw_key=raw_key, pulses=pairs)
    return EntangledDetections(detections=detections, chsh=chsh)


def _chsh_test(
    rounds_per_cell: np.ndarray,
    correlation_scale: np.ndarray,
    t_zz: float,
    t_xx: float,
    rng: np.random.Generator,
) -> ChshResult:
    """Each CHSH round picks one of the four setting pairs; outcomes agree with probability (1 + E)/2."""
    per_setting = rng.multinomial(rounds_per_cell, [0.25] * 4)  # cells x settings
    s_value, variance = 0.0, 0.0
    for i, a in enumerate(CHSH_ALICE):
        for j, b in enumerate(CHSH_BOB):
            column = 2 * i + j
            ideal = math.cos(a) * math.cos(b) * t_zz + math.sin(a) * math.sin(b) * t_xx
            agree = rng.binomial(per_setting[:, column], (1.0 + correlation_scale * ideal) / 2.0)
            trials = int(per_setting[:, column].sum())
            if trials == 0:
                return ChshResult(s_value=float("nan"), standard_error=float("inf"), rounds=0)
            correlator = 2.0 * agree.sum() / trials - 1.0
            s_value += _CHSH_SIGNS[i][j] * correlator
            variance += (1.0 - correlator * correlator) / trials
    return ChshResult(
        s_value=float(s_value), standard_error=math.sqrt(variance), rounds=int(rounds_per_cell.sum())
    )
