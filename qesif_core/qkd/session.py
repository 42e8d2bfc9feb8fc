"""One QKD block end to end: detection, sifting, parameter estimation, Cascade, verification, privacy
amplification, and the secret key length.

Protocol of a block: the Z-basis sifted bits of the key class (BB84: signal intensity; BBM92: all pairs)
form the raw key; every X-basis sifted bit (and every decoy/vacuum bit) is announced to estimate errors.
Cascade's block sizes come from the X-basis error rate (the only estimate available before correction).
After Cascade, a 64-bit Toeplitz tag (``privacy.verification_tag``) verifies the keys: a mismatch is a
frame error and the block is discarded. Otherwise both sides hash their key with the same seeded Toeplitz
matrix down to the finite-key length of ``keyrate``. Z-basis errors are then known exactly (Bob counts the
bits Cascade flipped), so ``qber_z`` is the error fraction of the whole raw key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from qesif_core import entropy_keys
from qesif_core.errors import UserInputError
from qesif_core.qkd import bb84, cascade, entangled, keyrate, privacy
from qesif_core.qkd.channel import ChannelParams

PROTOCOLS = ("bb84", "bbm92")


@dataclass(frozen=True)
class BlockResult:
    """Figures of one block. Keys are kept out of ``repr``.

    ``sifted_bits``: detections whose bases agreed (all intensity classes); ``reconciled_bits``: the raw
    key bits that went through Cascade; ``qber``: error fraction of the key class over both bases;
    ``loss_fraction``: emitted pulses (pairs) without a detection (coincidence); ``keys_match``: the block
    passed verification and Alice's and Bob's final keys are identical bit for bit.
    """

    protocol: str
    pulses: int
    qber: float
    qber_z: float
    qber_x: float
    sifted_bits: int
    reconciled_bits: int
    disclosed_bits: int
    ec_efficiency: float
    frame_error: bool
    secret_bits: int
    h_q: float
    basis_mismatch_entropy: float
    loss_fraction: float
    keys_match: bool
    phase_error_upper: float
    single_photon_yield_lower: float
    single_photon_error_upper: float
    chsh_s: float
    chsh_standard_error: float
    alice_key: np.ndarray = field(repr=False)
    bob_key: np.ndarray = field(repr=False)

    @property
    def secret_fraction(self) -> float:
        """Secret bits per reconciled raw-key bit."""
        return self.secret_bits / self.reconciled_bits if self.reconciled_bits else 0.0

    def figures(self) -> dict[str, float | int | bool | str]:
        """Every figure except the keys (safe to log or store)."""
        return {
            name: getattr(self, name)
            for name in self.__dataclass_fields__
            if name not in ("alice_key", "bob_key")
        }


def run_block(
    params: ChannelParams,
    pulses: int,
    rng: np.random.Generator,
    protocol: str = "bb84",
    *,
    bell_model: entangled.BellPairModel | None = None,
    security: keyrate.SecurityParams | None = None,
    cascade_variant: str = "yanetal",
) -> BlockResult:
    """Run one block of ``pulses`` emitted pulses (BB84) or distributed pairs (BBM92)."""
    if protocol not in PROTOCOLS:
        raise UserInputError(f"protocol must be one of {', '.join(PROTOCOLS)} (got {protocol!r})")
    if cascade_variant not in cascade.VARIANTS:
        raise UserInputError(
            f"Cascade variant must be one of {', '.join(cascade.VARIANTS)} (got {cascade_variant!r})"
        )
    security = security or keyrate.SecurityParams()
    chsh_s, chsh_se = math.nan, math.nan
    if protocol == "bb84":
        if bell_model is not None:
            raise UserInputError("a Bell-pair model applies to protocol bbm92, not bb84")
        detections = bb84.simulate(params, pulses, rng)
    else:
        pair_run = entangled.simulate(params, pulses, rng, bell_model=bell_model)
        detections = pair_run.detections
        chsh_s, chsh_se = pair_run.chsh.s_value, pair_run.chsh.standard_error
    counts = detections.counts
    raw = detections.raw_key
    n_key = len(raw)

    estimated_qber = _rate(int(counts.errors_x[0]), int(counts.sifted_x[0]), default=0.5)
    if n_key:
        reconciled = cascade.reconcile(raw.alice, raw.bob, min(estimated_qber, 0.5), rng, cascade_variant)
        corrected, disclosed, efficiency = (
            reconciled.corrected,
            reconciled.disclosed_bits,
            reconciled.efficiency,
        )
    else:
        corrected, disclosed, efficiency = raw.bob, 0, math.nan

    tag_seed = _shared_seed(rng, privacy.seed_bits_needed(n_key, security.tag_bits))
    frame_error = bool(n_key) and privacy.verification_tag(
        raw.alice, tag_seed, security.tag_bits
    ) != privacy.verification_tag(corrected, tag_seed, security.tag_bits)

    if protocol == "bb84":
        estimate = keyrate.decoy_estimate(counts, security.eps_pe)
    else:
        estimate = keyrate.single_pair_estimate(
            n_key, int(counts.sifted_x[0]), int(counts.errors_x[0]), security.eps_pe
        )
    secret_bits = 0 if frame_error else keyrate.secret_key_length(estimate, disclosed, security)
    pa_seed = _shared_seed(rng, privacy.seed_bits_needed(n_key, secret_bits))
    alice_key = privacy.toeplitz_hash(raw.alice, secret_bits, pa_seed)
    bob_key = privacy.toeplitz_hash(corrected, secret_bits, pa_seed)

    errors_z, errors_x = int(counts.errors_z[0]), int(counts.errors_x[0])
    n_x = int(counts.sifted_x[0])
    sifted = int(counts.sifted_z.sum() + counts.sifted_x.sum())
    detected = int(counts.detected.sum())
    return BlockResult(
        protocol=protocol,
        pulses=detections.pulses,
        qber=_rate(errors_z + errors_x, n_key + n_x, default=math.nan),
        qber_z=_rate(errors_z, n_key, default=math.nan),
        qber_x=_rate(errors_x, n_x, default=math.nan),
        sifted_bits=sifted,
        reconciled_bits=n_key,
        disclosed_bits=int(disclosed),
        ec_efficiency=float(efficiency),
        frame_error=frame_error,
        secret_bits=int(secret_bits),
        h_q=entropy_keys.quantum_entropy(errors_z, n_key, errors_x, n_x, security.eps_pe),
        basis_mismatch_entropy=entropy_keys.basis_mismatch_entropy(int(counts.mismatched.sum()), detected),
        loss_fraction=1.0 - detected / detections.pulses,
        keys_match=not frame_error and bool(np.array_equal(alice_key, bob_key)),
        phase_error_upper=estimate.phase_error_upper,
        single_photon_yield_lower=estimate.y1_lower,
        single_photon_error_upper=estimate.e1_upper,
        chsh_s=chsh_s,
        chsh_standard_error=chsh_se,
        alice_key=alice_key,
        bob_key=bob_key,
    )


def _rate(numerator: int, denominator: int, default: float) -> float:
    return numerator / denominator if denominator else default


def _shared_seed(rng: np.random.Generator, n_bits: int) -> np.ndarray:
    """Public random bits both sides use (sent over the authenticated classical channel)."""
    return rng.integers(0, 2, n_bits, dtype=np.uint8)
