"""BB84 with weak coherent pulses and vacuum + weak decoy states, simulated by sampling detection events.

Model (per emitted pulse): Alice picks an intensity class (signal mu, decoy nu, vacuum) and a basis
(Z with ``z_basis_prob``) and a bit; the photon number is Poisson(mu). Each photon reaches Bob's detectors
with eta = 10^(-alpha L/10) * eta_det; Bob's detector also fires in the dark with Y0 per gate. A detection
from n photons therefore has yield Y_n = 1 - (1 - Y0)(1 - eta)^n. A photon detection is wrong with the
intrinsic (misalignment) error e_d; a dark click (with or without a photon, a double click is given a random
bit) is wrong with probability 1/2, so e_n Y_n = (1 - Y0) eta_n e_d + Y0/2 with eta_n = 1 - (1 - eta)^n.

Attackers, on a fraction ``eve_fraction`` of pulses:
- ``intercept-resend``: Eve at Alice's output measures each non-empty pulse in a random basis and resends
  the same number of photons prepared in her result (so the detection statistics do not change). A sifted
  photon detection is wrong with (e_d + 1/2)/2, so Q = e_d + p (1/4 - e_d/2): exactly p/4 for e_d = 0.
- ``pns`` (photon-number splitting): Eve blocks single-photon pulses, keeps one photon of every multi-photon
  pulse and forwards the rest over her own channel of transmittance t_E, chosen so that the signal-state
  detection rate equals the honest one (she hides in the loss budget). The QBER stays at e_d, but the decoy
  state (few multi-photon pulses) loses detections: the decoy estimate of the single-photon yield collapses.

Sampling: pulses are grouped in cells (intensity class x photon number x attacked); the number of pulses per
cell is multinomial, detections per cell binomial, basis choices and errors per cell binomial, and only the
bits that enter the key (Z-basis signal detections) are drawn as arrays. This is exact for the i.i.d. model.
With ``frame_bits``, only the first ``frame_bits`` key bits are drawn (their error count hypergeometric given
the block's): the block's counts are exact, and the cost no longer grows with the pulses at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from qesif_core.errors import UserInputError
from qesif_core.qkd.channel import ChannelParams

INTENSITY_CLASSES = ("signal", "decoy", "vacuum")
#: Poisson tails beyond this many standard deviations (plus a margin) are folded into the last cell.
_TAIL_SIGMAS = 12.0
#: One block is held in memory: beyond these sizes, split the run into more blocks.
MAX_PULSES = 10**15
MAX_RAW_KEY_BITS = 2 * 10**8
#: numpy's hypergeometric sampler takes populations below 1e9 per kind.
_HYPERGEOMETRIC_LIMIT = 10**9


@dataclass(frozen=True)
class SiftedCounts:
    """What Alice and Bob observe per intensity class (arrays indexed like ``intensities``).

    ``sent`` pulses, ``detected`` clicks, ``sifted_z``/``sifted_x`` detections whose bases agree,
    ``errors_z``/``errors_x`` wrong bits among them, ``mismatched`` detections with different bases.
    """

    intensities: tuple[float, ...]
    sent: np.ndarray
    detected: np.ndarray
    sifted_z: np.ndarray
    sifted_x: np.ndarray
    errors_z: np.ndarray
    errors_x: np.ndarray
    mismatched: np.ndarray


@dataclass(frozen=True)
class RawKey:
    """The sifted key candidates: Z-basis bits of the key class, Alice's and Bob's (before correction)."""

    alice: np.ndarray = field(repr=False)
    bob: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return int(self.alice.size)


@dataclass(frozen=True)
class Detections:
    """Result of one simulated block: the observed counts and the raw key of the key class (index 0), or its
    first frame when the block was simulated with ``frame_bits`` (``len(raw_key) < counts.sifted_z[0]``)."""

    counts: SiftedCounts
    raw_key: RawKey
    pulses: int


def check_pulses(pulses: int, option: str = "pulses") -> int:
    """Emitted pulses (or pairs) must be a positive integer, at most ``MAX_PULSES`` per block."""
    if isinstance(pulses, bool) or not isinstance(pulses, int | np.integer) or pulses <= 0:
        raise UserInputError(f"{option} must be a positive integer (got {pulses!r})")
    if pulses > MAX_PULSES:
        raise UserInputError(f"{option} must be at most {MAX_PULSES:.0e} per block (got {pulses!r})")
    return int(pulses)


def photon_number_pmf(mu: float) -> np.ndarray:
    """Poisson(mu > 0) probabilities for n = 0..n_max, the tail folded into n_max (sums to 1)."""
    n_max = max(2, math.ceil(mu + _TAIL_SIGMAS * math.sqrt(mu) + 8))
    n = np.arange(n_max + 1)
    log_factorial = np.array([math.lgamma(k + 1) for k in n])
    pmf = np.exp(n * math.log(mu) - mu - log_factorial)
    pmf[-1] = max(0.0, 1.0 - pmf[:-1].sum())
    return pmf


def _click_probability(photons: np.ndarray, efficiency: float) -> np.ndarray:
    """Probability that at least one of ``photons`` photons is detected (eta_n)."""
    return -np.expm1(photons * math.log1p(-efficiency)) if efficiency < 1.0 else (photons > 0).astype(float)


def pns_transmittance(params: ChannelParams) -> float:
    """Eve's forwarding transmittance t_E that keeps the signal-state photon detection rate honest.

    Solves sum_{n>=2} P_mu(n) eta'_{n-1}(t_E eta_det) = sum_{n>=1} P_mu(n) eta_n(eta) by bisection; returns
    1 when even a lossless channel cannot match (short links: the attack then shows up as extra loss).
    """
    pmf = photon_number_pmf(params.mu_signal)
    n = np.arange(pmf.size)
    honest = float(pmf @ _click_probability(n, params.transmittance))

    def forwarded(t: float) -> float:
        return float(pmf[2:] @ _click_probability(n[2:] - 1, t * params.detector_efficiency))

    if forwarded(1.0) <= honest:
        return 1.0
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if forwarded(mid) < honest else (low, mid)
    return 0.5 * (low + high)


def cell_model(params: ChannelParams, mu: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells of one intensity class: (probability, yield, error probability of a sifted detection).

    Cells are photon numbers 0..n_max, honest then (if Eve attacks) attacked.
    """
    pmf = photon_number_pmf(mu)
    n = np.arange(pmf.size)
    y0, e_d = params.dark_count_prob, params.intrinsic_error
    honest_click = _click_probability(n, params.transmittance)
    yields = [1.0 - (1.0 - y0) * (1.0 - honest_click)]
    errors = [_error_probability((1.0 - y0) * honest_click * e_d + 0.5 * y0, yields[0])]
    probabilities = [pmf]
    if params.eve != "none" and params.eve_fraction > 0.0:
        f = params.eve_fraction
        probabilities = [pmf * (1.0 - f), pmf * f]
        if params.eve == "intercept-resend":
            attacked_click = honest_click
            photon_error = 0.5 * (e_d + 0.5)
        else:  # pns: singles blocked, n >= 2 forwarded as n - 1 photons through t_E
            t_eve = pns_transmittance(params)
            attacked_click = np.where(
                n >= 2, _click_probability(np.maximum(n - 1, 0), t_eve * params.detector_efficiency), 0.0
            )
            photon_error = e_d
        attacked_yield = 1.0 - (1.0 - y0) * (1.0 - attacked_click)
        yields.append(attacked_yield)
        errors.append(
            _error_probability((1.0 - y0) * attacked_click * photon_error + 0.5 * y0, attacked_yield)
        )
    return np.concatenate(probabilities), np.concatenate(yields), np.concatenate(errors)


def _error_probability(wrong: np.ndarray, yields: np.ndarray) -> np.ndarray:
    """P(wrong bit | detection); cells that never click get 1/2 (unused, but a valid probability)."""
    return np.divide(wrong, yields, out=np.full_like(yields, 0.5), where=yields > 0)


def single_photon_truth(params: ChannelParams) -> tuple[float, float]:
    """The model's true single-photon yield Y1 and single-photon error rate e1 (attacks included).

    Used by tests to check that the decoy-state estimates bound them.
    """
    pmf = photon_number_pmf(params.mu_signal)
    probabilities, yields, errors = cell_model(params, params.mu_signal)
    ones = np.flatnonzero(np.tile(np.arange(pmf.size), probabilities.size // pmf.size) == 1)
    weights = probabilities[ones] / probabilities[ones].sum()
    y1 = float(weights @ yields[ones])
    e1 = float(weights @ (yields[ones] * errors[ones])) / y1
    return y1, e1


def simulate(
    params: ChannelParams, pulses: int, rng: np.random.Generator, frame_bits: int | None = None
) -> Detections:
    """Emit ``pulses`` pulses and return the sifted counts and the raw key (Z-basis signal detections): all of
    it, or its first ``frame_bits`` bits."""
    pulses = check_pulses(pulses)
    pz = params.z_basis_prob
    basis_pvals = [pz * pz, (1.0 - pz) * (1.0 - pz), 2.0 * pz * (1.0 - pz)]
    intensities = (params.mu_signal, params.mu_decoy, 0.0)
    sent = rng.multinomial(pulses, [params.prob_signal, params.prob_decoy, params.prob_vacuum])
    rows = []
    key_errors = 0
    for k, mu in enumerate(intensities):
        probabilities, yields, errors = cell_model(params, mu) if mu > 0 else _vacuum_cells(params)
        cell_pulses = rng.multinomial(sent[k], probabilities / probabilities.sum())
        cell_detected = rng.binomial(cell_pulses, yields)
        by_basis = rng.multinomial(cell_detected, basis_pvals)
        cell_errors_z = rng.binomial(by_basis[:, 0], errors)
        cell_errors_x = rng.binomial(by_basis[:, 1], errors)
        if k == 0:
            key_errors = int(cell_errors_z.sum())
        rows.append(
            (
                cell_detected.sum(),
                by_basis[:, 0].sum(),
                by_basis[:, 1].sum(),
                cell_errors_z.sum(),
                cell_errors_x.sum(),
                by_basis[:, 2].sum(),
            )
        )
    table = np.array(rows, dtype=np.int64)
    counts = SiftedCounts(
        intensities=intensities,
        sent=np.asarray(sent, dtype=np.int64),
        detected=table[:, 0],
        sifted_z=table[:, 1],
        sifted_x=table[:, 2],
        errors_z=table[:, 3],
        errors_x=table[:, 4],
        mismatched=table[:, 5],
    )
    raw_key = draw_key_frame(int(table[0, 1]), key_errors, frame_bits, rng)
    return Detections(counts=counts, raw_key=raw_key, pulses=pulses)


def expected_counts(params: ChannelParams, pulses: int) -> SiftedCounts:
    """The counts :func:`simulate` draws, at their expected values (rounded): for planning (commissioning),
    never for a block's result."""
    pulses = check_pulses(pulses)
    pz = params.z_basis_prob
    intensities = (params.mu_signal, params.mu_decoy, 0.0)
    shares = (params.prob_signal, params.prob_decoy, params.prob_vacuum)
    rows = []
    for mu, share in zip(intensities, shares, strict=True):
        probabilities, yields, errors = cell_model(params, mu) if mu > 0 else _vacuum_cells(params)
        sent = pulses * share
        detected = sent * float(probabilities @ yields)
        wrong = sent * float(probabilities @ (yields * errors))
        z, x = pz * pz, (1 - pz) * (1 - pz)
        rows.append(
            (sent, detected, detected * z, detected * x, wrong * z, wrong * x, detected * (1 - z - x))
        )
    table = np.rint(np.array(rows)).astype(np.int64)
    return SiftedCounts(intensities, *(table[:, i] for i in range(7)))


def _vacuum_cells(params: ChannelParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y0 = params.dark_count_prob
    return np.array([1.0]), np.array([y0]), np.array([0.5])


def draw_key_frame(n_key: int, key_errors: int, frame_bits: int | None, rng: np.random.Generator) -> RawKey:
    """The first ``frame_bits`` of a raw key of ``n_key`` bits holding ``key_errors`` errors (all of it when
    ``frame_bits`` is None or not smaller). The frame's errors are hypergeometric given the block's (binomial
    at the block's error rate beyond numpy's 1e9 population limit, a difference below frame/n_key)."""
    if frame_bits is None or frame_bits >= n_key:
        return draw_raw_key(n_key, key_errors, rng)
    if isinstance(frame_bits, bool) or not isinstance(frame_bits, int | np.integer) or frame_bits <= 0:
        raise UserInputError(f"frame_bits must be a positive integer (got {frame_bits!r})")
    if max(key_errors, n_key - key_errors) < _HYPERGEOMETRIC_LIMIT:
        frame_errors = int(rng.hypergeometric(key_errors, n_key - key_errors, frame_bits))
    else:
        frame_errors = int(rng.binomial(frame_bits, key_errors / n_key))
    return draw_raw_key(int(frame_bits), frame_errors, rng)


def draw_raw_key(n_bits: int, n_errors: int, rng: np.random.Generator) -> RawKey:
    """Alice's uniformly random bits and Bob's copy with ``n_errors`` flips at uniformly random positions
    (detections are exchangeable, so this is the distribution of the sifted key given its error count)."""
    if n_bits > MAX_RAW_KEY_BITS:
        raise UserInputError(
            f"one block would hold {n_bits} raw key bits (at most {MAX_RAW_KEY_BITS:.0e}): "
            "reconcile it in frames (frame_bits), or emit fewer pulses per block"
        )
    alice = rng.integers(0, 2, n_bits, dtype=np.uint8)
    bob = alice.copy()
    if n_errors:
        bob[rng.choice(n_bits, n_errors, replace=False)] ^= 1
    return RawKey(alice=alice, bob=bob)
