"""Commissioning of a link, as an operator sets up a decoy-state BB84 system: the signal and decoy intensities
that maximise the link's expected finite-size key per block, and the block size the source gives per round.

The choice uses the link's commissioning values only (distance, fibre loss, detector efficiency, dark counts,
intrinsic error, basis and class probabilities, block size), never an attacker: the channel's ``eve`` is
removed first, so an eavesdropper that appears later meets the intensities chosen for the honest link.

Objective: the finite-key length of ``keyrate`` (decoy bounds, phase-error bound, Lim et al. 2014 terms)
evaluated at the block's *expected* counts (``bb84.expected_counts``), with error correction charged at
``PLANNING_EC_EFFICIENCY`` (about what sub-frame Cascade is charged, docs/qkd.md). It is maximised over
mu in [0.02, 1] and nu in (0, mu) by a coarse grid in log space refined with Nelder-Mead; the search is
deterministic. When no intensities give a positive expected key (short blocks, high error), the configured
values are kept and :class:`Intensities` says so.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from qesif_core.errors import UserInputError
from qesif_core.qkd import bb84, keyrate
from qesif_core.qkd.channel import ChannelParams

INTENSITY_MODES = ("optimise", "fixed")
#: Pulses per second of the source (``qkd.source_rate_hz``): a 1 GHz gated decoy-state source.
DEFAULT_SOURCE_RATE_HZ = 1e9
#: Error-correction efficiency assumed while choosing intensities (not used for any block's key).
PLANNING_EC_EFFICIENCY = 1.16
MU_RANGE = (0.02, 1.0)
#: Decoy intensity as a fraction of the signal's, searched in this range.
DECOY_RATIO_RANGE = (0.02, 0.8)
_GRID = (12, 6)


@dataclass(frozen=True)
class Intensities:
    """Signal and decoy intensities of a link, the expected secret bits per block at them, and whether they
    were optimised (False: the configured values, either by choice or because none give a key)."""

    mu_signal: float
    mu_decoy: float
    expected_secret_bits: float
    optimised: bool


def block_pulses(round_duration_s: float, source_rate_hz: float, pulses_per_block: int | None = None) -> int:
    """Pulses per block: ``pulses_per_block`` when given, else the source's pulses in one round."""
    if pulses_per_block is not None:
        return bb84.check_pulses(pulses_per_block, "qkd.pulses_per_block")
    if not (math.isfinite(source_rate_hz) and source_rate_hz > 0):
        raise UserInputError(f"qkd.source_rate_hz must be a positive number (got {source_rate_hz!r})")
    pulses = round(source_rate_hz * round_duration_s)
    if pulses < 1:
        raise UserInputError(
            f"qkd.source_rate_hz x round_duration_s = {source_rate_hz * round_duration_s:g}: "
            "less than one pulse per block"
        )
    return bb84.check_pulses(pulses, "qkd.source_rate_hz x round_duration_s")


def expected_secret_bits(
    params: ChannelParams,
    pulses: int,
    security: keyrate.SecurityParams | None = None,
    ec_efficiency: float = PLANNING_EC_EFFICIENCY,
) -> float:
    """Finite-key length of a block at its expected counts (may be negative: no key)."""
    security = security or keyrate.SecurityParams()
    counts = bb84.expected_counts(params, pulses)
    estimate = keyrate.decoy_estimate(counts, security.eps_pe)
    n_key = int(counts.sifted_z[0])
    leak = ec_efficiency * n_key * keyrate.h2(counts.errors_z[0] / n_key) if n_key else 0.0
    return (
        estimate.vacuum_key_bits_lower
        + estimate.single_key_bits_lower * (1.0 - keyrate.h2(estimate.phase_error_upper))
        - leak
        - keyrate.finite_key_overhead(security)
    )


def commission(
    params: ChannelParams,
    pulses: int,
    mode: str = "optimise",
    security: keyrate.SecurityParams | None = None,
) -> Intensities:
    """The intensities a link runs with: optimised for its honest settings, or the configured ones."""
    if mode not in INTENSITY_MODES:
        raise UserInputError(f"qkd.intensities must be one of {', '.join(INTENSITY_MODES)} (got {mode!r})")
    honest = dataclasses.replace(params, eve="none", eve_fraction=0.0)
    security = security or keyrate.SecurityParams()
    if mode == "optimise":
        return _optimise(honest, bb84.check_pulses(pulses), security)
    expected = expected_secret_bits(honest, pulses, security)
    return Intensities(honest.mu_signal, honest.mu_decoy, max(0.0, expected), optimised=False)


def apply(params: ChannelParams, intensities: Intensities) -> ChannelParams:
    """``params`` with the link's commissioned intensities (its attacker, if any, kept)."""
    return dataclasses.replace(params, mu_signal=intensities.mu_signal, mu_decoy=intensities.mu_decoy)


@functools.lru_cache(maxsize=512)
def _optimise(honest: ChannelParams, pulses: int, security: keyrate.SecurityParams) -> Intensities:
    def point_intensities(point: np.ndarray) -> tuple[float, float]:
        """(log mu, log nu/mu) -> (mu, nu), kept inside the searched ranges and rounded to 4 digits."""
        mu = math.exp(float(np.clip(point[0], *np.log(MU_RANGE))))
        ratio = math.exp(float(np.clip(point[1], *np.log(DECOY_RATIO_RANGE))))
        return round(mu, 4), round(mu * ratio, 4)

    def key(point: np.ndarray) -> float:
        mu, nu = point_intensities(point)
        return expected_secret_bits(dataclasses.replace(honest, mu_signal=mu, mu_decoy=nu), pulses, security)

    grid = [
        np.array([a, b])
        for a in np.linspace(*np.log(MU_RANGE), _GRID[0])
        for b in np.linspace(*np.log(DECOY_RATIO_RANGE), _GRID[1])
    ]
    values = [key(point) for point in grid]
    best = grid[int(np.argmax(values))]
    if max(values) <= 0.0:
        expected = expected_secret_bits(honest, pulses, security)
        return Intensities(honest.mu_signal, honest.mu_decoy, max(0.0, expected), optimised=False)
    refined = minimize(
        lambda p: -key(p), best, method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1.0, "maxiter": 200}
    )
    if -refined.fun > max(values):
        best = refined.x
    mu, nu = point_intensities(best)
    return Intensities(mu, nu, key(best), optimised=True)
