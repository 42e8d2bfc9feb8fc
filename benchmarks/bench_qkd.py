"""QKD engine speed: emitted pulses simulated per second for decoy-state BB84 at 10 km (target >= 1e8/s per
core), against a per-pulse numpy simulation of the same model measured in the same run, and the full
block (sifting, estimation, Cascade, verification, privacy amplification) per second.

Per-block cost (target: about 1 ms whatever the block size, for city-scale networks): ``run_block`` with the
default sub-frame (2^14 raw key bits through Cascade, tag and privacy amplification) on source-sized blocks
(1e9 pulses: one second of a 1 GHz source) of the clean and noisy presets at commissioned intensities,
against the whole-block reconciliation (``frame_bits=None``) of the former 4e6-pulse paper block, measured in
the same run."""

from __future__ import annotations

import dataclasses

import numpy as np
from timing import median_seconds

from qesif_core.qkd import bb84, commissioning, entangled, session
from qesif_core.qkd.channel import CHANNEL_PRESETS, ChannelParams

LINK = ChannelParams(distance_km=10.0)
PULSES = 10**8
BASELINE_PULSES = 10**7
REPETITIONS = 5
SOURCE_BLOCK = 10**9
FORMER_BLOCK = 4 * 10**6
BLOCK_REPETITIONS = 21


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
    per_block = {}
    for name in ("clean", "noisy"):
        preset = CHANNEL_PRESETS[name]
        link = commissioning.apply(preset, commissioning.commission(preset, SOURCE_BLOCK))
        per_block[f"run_block_{name}_1e9_subframe_ms"] = 1e3 * median_seconds(
            lambda link=link: session.run_block(link, SOURCE_BLOCK, rng), BLOCK_REPETITIONS
        )
        per_block[f"run_block_{name}_4e6_whole_ms"] = 1e3 * median_seconds(
            lambda preset=preset: session.run_block(preset, FORMER_BLOCK, rng, frame_bits=None),
            BLOCK_REPETITIONS,
        )
    # A new link each time (the choice is cached per link settings and block size).
    distances = iter(range(10, 10 + BLOCK_REPETITIONS))
    commission = median_seconds(
        lambda: commissioning.commission(
            dataclasses.replace(CHANNEL_PRESETS["noisy"], distance_km=float(next(distances))), SOURCE_BLOCK
        ),
        5,
    )
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
        **{name: round(value, 3) for name, value in per_block.items()},
        "noisy_1e9_subframe_speedup_vs_4e6_whole": round(
            per_block["run_block_noisy_4e6_whole_ms"] / per_block["run_block_noisy_1e9_subframe_ms"], 1
        ),
        "commission_intensities_ms": round(1e3 * commission, 1),
        "block_repetitions": BLOCK_REPETITIONS,
        "pulses_per_repetition": PULSES,
        "repetitions": REPETITIONS,
    }
