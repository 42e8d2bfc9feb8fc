"""QKD engine speed: emitted pulses simulated per second for decoy-state BB84 at 10 km (target >= 1e8/s per
core), against a per-pulse numpy simulation of the same model measured in the same run, and the full
block (sifting, estimation, Cascade, verification, privacy amplification) per second."""

from __future__ import annotations

import numpy as np
from timing import median_seconds

from qesif_core.qkd import bb84, entangled, session
from qesif_core.qkd.channel import ChannelParams

LINK = ChannelParams(distance_km=10.0)
PULSES = 10**8
BASELINE_PULSES = 10**7
REPETITIONS = 5


def per_pulse_baseline(params: ChannelParams, pulses: int, rng: np.random.Generator) -> int:
    """The same model drawn pulse by pulse with vectorised numpy (the usual way); returns sifted errors."""
    intensities = np.array([params.mu_signal, params.mu_decoy, 0.0])
    klass = rng.choice(3, pulses, p=[params.prob_signal, params.prob_decoy, params.prob_vacuum])
    photons = rng.poisson(intensities[klass])
    photon_click = rng.random(pulses) < -np.expm1(photons * np.log1p(-params.transmittance))
    dark_click = rng.random(pulses) < params.dark_count_prob
    detected = photon_click | dark_click
    alice_basis = rng.random(pulses) < params.z_basis_prob
    bob_basis = rng.random(pulses) < params.z_basis_prob
    alice_bit = rng.integers(0, 2, pulses, dtype=np.uint8)
    wrong = np.where(dark_click, rng.random(pulses) < 0.5, rng.random(pulses) < params.intrinsic_error)
    bob_bit = alice_bit ^ wrong.astype(np.uint8)
    sifted = detected & (alice_basis == bob_basis)
    return int(np.count_nonzero(alice_bit[sifted] != bob_bit[sifted]))


def run() -> dict:
    rng = np.random.default_rng(2025)
    detections = bb84.simulate(LINK, PULSES, rng)
    sampled = median_seconds(lambda: bb84.simulate(LINK, PULSES, rng), REPETITIONS)
    baseline = median_seconds(lambda: per_pulse_baseline(LINK, BASELINE_PULSES, rng), 3)
    block = median_seconds(lambda: session.run_block(LINK, PULSES, rng), 3)
    pairs = median_seconds(lambda: entangled.simulate(LINK, PULSES, rng), REPETITIONS)
    sampled_rate = PULSES / sampled
    baseline_rate = BASELINE_PULSES / baseline
    return {
        "bb84_10km_pulses_per_s": round(sampled_rate),
        "bb84_10km_detections_per_pulse": round(float(detections.counts.detected.sum()) / PULSES, 5),
        "per_pulse_numpy_baseline_pulses_per_s": round(baseline_rate),
        "speedup_vs_per_pulse": round(sampled_rate / baseline_rate, 1),
        "run_block_bb84_10km_pulses_per_s": round(PULSES / block),
        "run_block_bb84_10km_s_per_1e8_pulses": round(block, 4),
        "bbm92_10km_pairs_per_s": round(PULSES / pairs),
        "pulses_per_repetition": PULSES,
        "repetitions": REPETITIONS,
    }
