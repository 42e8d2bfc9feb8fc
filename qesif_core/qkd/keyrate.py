"""Secret key length: Shor-Preskill / GLLP with vacuum + weak decoy estimates and a finite-key correction.

Statistics (stated once, used everywhere):
- Every measured rate (a gain Q_k = detections/pulses, an error rate in a basis) is bounded by the exact
  binomial Clopper-Pearson interval at one-sided failure probability ``eps_pe``.
- Decoy bounds are those of Ma, Qi, Zhao & Lo, PRA 72, 012326 (2005), vacuum + weak decoy (Eqs. 34, 37),
  evaluated at the worst-case ends of those intervals. The vacuum-error term e0*Y0 is lower-bounded by 0;
  e1 is the smaller of the bounds from the decoy's and from the signal's X-basis errors.
- The phase error of the Z key bits is the X-basis error bound plus the random-sampling deviation
  gamma(n_Z, n_X, e, eps) of Lim, Curty, Walenta, Xu & Zbinden, PRA 89, 022307 (2014), Eq. (2) (with e kept
  >= 1/n_X so that a sample without errors still gets a deviation).
- Finite-key length (Lim et al. 2014, Eq. 1):
  l = s_Z0 + s_Z1 (1 - h2(phi_Z)) - leak_EC - 6 log2(21/eps_sec) - log2(2/eps_cor),
  with leak_EC the parities error correction disclosed and log2(2/eps_cor) the verification hash that
  Lim et al. reveal after it. Our hash is a ``tag_bits`` Toeplitz tag, whose collision bound is
  eps_cor = 2^-tag_bits: the term is tag_bits + 1 bits, so every disclosed tag bit is paid for.
- Security parameter of a key: eps_sec (smoothing and privacy amplification, budgeted by the
  6 log2(21/eps_sec) term) + eps_cor + eps_pe for every bound of the parameter estimation (each may fail with
  eps_pe; union bound). ``SinglePhotonEstimate.pe_bounds`` counts them; :func:`key_epsilon` adds it all up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from qesif_core.qkd.bb84 import SiftedCounts


@dataclass(frozen=True)
class SecurityParams:
    """Failure probabilities: parameter estimation per bound, secrecy; the verification tag's length, which
    sets the correctness failure probability ``eps_cor`` = 2^-tag_bits (a 2-universal hash's collision)."""

    eps_pe: float = 1e-10
    eps_sec: float = 1e-10
    tag_bits: int = 64

    def __post_init__(self) -> None:
        if isinstance(self.tag_bits, bool) or not isinstance(self.tag_bits, int) or self.tag_bits <= 0:
            raise ValueError(f"tag_bits must be a positive integer (got {self.tag_bits!r})")

    @property
    def eps_cor(self) -> float:
        return 2.0**-self.tag_bits


def h2(p: float | np.ndarray) -> float | np.ndarray:
    """Binary entropy in bits (0 at 0 and 1; inputs clipped to [0, 1])."""
    q = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = -q * np.log2(q) - (1.0 - q) * np.log2(1.0 - q)
    value = np.where((q <= 0.0) | (q >= 1.0), 0.0, value)
    return float(value) if np.ndim(value) == 0 else value


def clopper_pearson_upper(successes: int, trials: int, eps: float) -> float:
    """Upper end of the one-sided exact binomial interval: P(true rate > bound) <= eps."""
    from scipy.special import betaincinv  # here: SciPy is slow to import and only a QKD block needs it

    if trials <= 0 or successes >= trials:
        return 1.0
    return float(betaincinv(successes + 1, trials - successes, 1.0 - eps))


def clopper_pearson_lower(successes: int, trials: int, eps: float) -> float:
    """Lower end of the one-sided exact binomial interval: P(true rate < bound) <= eps."""
    from scipy.special import betaincinv

    if trials <= 0 or successes <= 0:
        return 0.0
    return float(betaincinv(successes, trials - successes + 1, eps))


def sampling_deviation(n_key: float, n_test: float, error_rate: float, eps: float) -> float:
    """gamma of Lim et al. (2014): how far the key's phase error may exceed the test sample's error rate."""
    if n_key <= 0 or n_test <= 0:
        return 0.5
    c = min(max(error_rate, 1.0 / n_test), 0.5)
    a, b = float(n_key), float(n_test)
    argument = (a + b) / (a * b * c * (1.0 - c) * eps * eps)
    return math.sqrt((a + b) * (1.0 - c) * c / (a * b * math.log(2.0)) * math.log2(argument))


@dataclass(frozen=True)
class SinglePhotonEstimate:
    """Lower bounds on the vacuum and single-photon Z key bits, and the upper bound on their phase error."""

    y0_upper: float
    y1_lower: float
    e1_upper: float
    vacuum_key_bits_lower: float
    single_key_bits_lower: float
    phase_error_upper: float
    #: Confidence bounds behind the estimate, each failing with probability eps_pe.
    pe_bounds: int


def decoy_estimate(counts: SiftedCounts, eps_pe: float) -> SinglePhotonEstimate:
    """Vacuum + weak decoy bounds (Ma et al. 2005) on the signal state's Z key bits."""
    mu, nu, _ = counts.intensities
    q_mu_up = clopper_pearson_upper(int(counts.detected[0]), int(counts.sent[0]), eps_pe)
    q_nu_low = clopper_pearson_lower(int(counts.detected[1]), int(counts.sent[1]), eps_pe)
    q_nu_up = clopper_pearson_upper(int(counts.detected[1]), int(counts.sent[1]), eps_pe)
    y0_up = clopper_pearson_upper(int(counts.detected[2]), int(counts.sent[2]), eps_pe)
    y0_low = clopper_pearson_lower(int(counts.detected[2]), int(counts.sent[2]), eps_pe)

    y1_low = (
        mu
        / (mu * nu - nu * nu)
        * (
            q_nu_low * math.exp(nu)
            - q_mu_up * math.exp(mu) * nu * nu / (mu * mu)
            - (mu * mu - nu * nu) / (mu * mu) * y0_up
        )
    )
    y1_low = max(0.0, y1_low)
    # e1 from the class (signal or decoy) that bounds it tighter; its X single photons are the test sample.
    gains_up = (q_mu_up, q_nu_up)
    e1_up, test_singles = min(
        (
            _single_photon_error_bound(counts, k, gains_up[k], y1_low, eps_pe),
            _single_photon_fraction(counts.intensities[k], gains_up[k], y1_low) * float(counts.sifted_x[k]),
        )
        for k in (0, 1)
    )
    single_z = float(counts.sifted_z[0]) * _single_photon_fraction(mu, q_mu_up, y1_low)
    vacuum_z = float(counts.sifted_z[0]) * (math.exp(-mu) * y0_low / q_mu_up if q_mu_up > 0 else 0.0)
    phase = min(0.5, e1_up + sampling_deviation(single_z, test_singles, e1_up, eps_pe))
    return SinglePhotonEstimate(
        y0_upper=y0_up,
        y1_lower=y1_low,
        e1_upper=e1_up,
        vacuum_key_bits_lower=vacuum_z,
        single_key_bits_lower=single_z,
        phase_error_upper=phase,
        pe_bounds=DECOY_PE_BOUNDS,
    )


#: Bounds of :func:`decoy_estimate`: Q_mu upper, Q_nu lower and upper, Y0 upper and lower, the X error rate of
#: each of the two classes (both are computed, the tighter is used), and the sampling deviation gamma.
DECOY_PE_BOUNDS = 8
#: Bounds of :func:`single_pair_estimate`: the X error rate and the sampling deviation.
PAIR_PE_BOUNDS = 2


def _single_photon_fraction(mu: float, gain_upper: float, y1_lower: float) -> float:
    """Lower bound on the fraction of a class's detections caused by single photons."""
    return mu * math.exp(-mu) * y1_lower / gain_upper if gain_upper > 0 else 0.0


def _single_photon_error_bound(
    counts: SiftedCounts, k: int, gain_upper: float, y1_lower: float, eps_pe: float
) -> float:
    """e1 <= E_k Q_k e^{mu_k} / (mu_k Y1) from class k's X-basis errors (E_k Q_k >= e1 Y1 mu_k e^{-mu_k})."""
    mu = counts.intensities[k]
    if y1_lower <= 0.0:
        return 0.5
    error_up = clopper_pearson_upper(int(counts.errors_x[k]), int(counts.sifted_x[k]), eps_pe)
    return min(0.5, error_up * gain_upper * math.exp(mu) / (y1_lower * mu))


def single_pair_estimate(n_key: int, n_test: int, test_errors: int, eps_pe: float) -> SinglePhotonEstimate:
    """Entanglement-based (BBM92) bounds: every coincidence counts as one pair (squashed detectors)."""
    e_up = clopper_pearson_upper(test_errors, n_test, eps_pe)
    phase = min(0.5, e_up + sampling_deviation(n_key, n_test, e_up, eps_pe))
    return SinglePhotonEstimate(
        y0_upper=0.0,
        y1_lower=1.0,
        e1_upper=e_up,
        vacuum_key_bits_lower=0.0,
        single_key_bits_lower=float(n_key),
        phase_error_upper=phase,
        pe_bounds=PAIR_PE_BOUNDS,
    )


def finite_key_overhead(security: SecurityParams) -> float:
    """Bits lost to the finite-key security terms 6 log2(21/eps_sec) + log2(2/eps_cor); the second is the
    verification tag (tag_bits + 1 bits, as eps_cor = 2^-tag_bits)."""
    return 6.0 * math.log2(21.0 / security.eps_sec) + math.log2(2.0 / security.eps_cor)


def key_epsilon(estimate: SinglePhotonEstimate, security: SecurityParams) -> float:
    """Security parameter of a key cut from this estimate: eps_sec + eps_cor + pe_bounds eps_pe."""
    return security.eps_sec + security.eps_cor + estimate.pe_bounds * security.eps_pe


def secret_key_length(estimate: SinglePhotonEstimate, leak_ec_bits: int, security: SecurityParams) -> int:
    """Lim et al. (2014) finite-key length, never negative."""
    length = (
        estimate.vacuum_key_bits_lower
        + estimate.single_key_bits_lower * (1.0 - h2(estimate.phase_error_upper))
        - leak_ec_bits
        - finite_key_overhead(security)
    )
    return max(0, math.floor(length))


def asymptotic_secret_fraction(qber: float, ec_efficiency: float) -> float:
    """Shor-Preskill secret fraction per sifted bit with symmetric errors: 1 - f h2(Q) - h2(Q)."""
    return 1.0 - ec_efficiency * h2(qber) - h2(qber)


def entropy_per_bit(errors_z: int, n_z: int, errors_x: int, n_x: int, eps_pe: float) -> float:
    """H_q = 1 - h2(e_Z^U) - h2(e_X^U), both at Clopper-Pearson upper bounds (negative above ~11%)."""
    e_z = clopper_pearson_upper(errors_z, n_z, eps_pe)
    e_x = clopper_pearson_upper(errors_x, n_x, eps_pe)
    return 1.0 - h2(min(e_z, 0.5)) - h2(min(e_x, 0.5))
