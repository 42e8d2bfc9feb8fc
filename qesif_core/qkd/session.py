"""One QKD block end to end: detection, sifting, parameter estimation, Cascade, verification, privacy
amplification, and the secret key length.

Protocol of a block: the Z-basis sifted bits of the key class (BB84: signal intensity; BBM92: all pairs)
form the raw key; every X-basis sifted bit (and every decoy/vacuum bit) is announced to estimate errors.
Cascade's block sizes come from the X-basis error rate (the only estimate available before correction).
After Cascade, a 64-bit Toeplitz tag (``privacy.verification_tag``) verifies the keys: a mismatch is a
frame error and the frame is discarded. Otherwise both sides hash their key with the same seeded Toeplitz
matrix down to the finite-key length of ``keyrate``. Z-basis errors are then known exactly (Bob counts the
bits Cascade flipped), so ``qber_z`` is the error fraction of the whole raw key.

Sub-frame reconciliation (``frame_bits``, default :data:`DEFAULT_FRAME_BITS`): the block's counts, parameter
estimation and finite-key length are always those of the whole block, but only its first ``frame_bits`` raw
key bits are drawn and really go through Cascade, the tag and privacy amplification. The block is charged
``leak_EC`` = f_U n_key h2(e_Z) with f_U = f_frame + 2 c/sqrt(errors in the frame), an upper bound of
Cascade's efficiency on the whole block (Cascade's mean efficiency does not grow with the frame size at a
fixed error rate, and its frame-to-frame spread is below c/sqrt(errors), c = 0.5 for ``yanetal``;
docs/qkd.md gives the measurements). The keys
handed out are the frame's amplified bits, the frame's share ``floor(l frame_bits / n_key)`` of the block's
key length l: never more than was really reconciled. A frame that fails verification loses that share (the
block's other frames, not simulated, are counted as verified: their expected loss, the frame error rate of
about 0.3 % at 2^14 bits, is not deducted).
A block whose raw key fits in one frame runs whole, without approximation; ``frame_bits=None`` always does.
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
#: Raw key bits reconciled for real per block (Cascade on 2^14 bits: a few ms, docs/qkd.md).
DEFAULT_FRAME_BITS = 2**14
#: Per Cascade variant: its frame-to-frame efficiency spread stays below this / sqrt(errors in the frame)
#: (measured at 2^12-2^20 bits and 1-11 % errors, docs/qkd.md).
EFFICIENCY_SPREAD = {"original": 0.25, "yanetal": 0.5, "biconf": 0.75}
#: Standard deviations of that spread added to a frame's efficiency to bound the block's.
EFFICIENCY_MARGIN_SIGMAS = 2.0


@dataclass(frozen=True)
class BlockResult:
    """Figures of one block. Keys are kept out of ``repr``.

    ``sifted_bits``: detections whose bases agreed (all intensity classes); ``reconciled_bits``: the block's
    raw key bits (reconciled, in frames); ``frame_bits``: those that went through Cascade here;
    ``disclosed_bits``: leak_EC charged to the block (Cascade's parities when the frame is the block);
    ``ec_efficiency``: the frame's measured efficiency, ``ec_efficiency_bound``: f_U used for the block;
    ``secret_bits``: the block's finite-key length; ``key_bits``: the amplified bits in the keys, the frame's
    share of it; ``epsilon``: the keys' security parameter (``keyrate.key_epsilon``); ``qber``: error
    fraction of the key class over both bases; ``loss_fraction``: emitted pulses (pairs) without a detection
    (coincidence); ``keys_match``: the block passed verification and Alice's and Bob's final keys are
    identical bit for bit.
    """

    protocol: str
    pulses: int
    qber: float
    qber_z: float
    qber_x: float
    sifted_bits: int
    reconciled_bits: int
    frame_bits: int
    disclosed_bits: int
    ec_efficiency: float
    ec_efficiency_bound: float
    frame_error: bool
    secret_bits: int
    key_bits: int
    epsilon: float
    h_q: float
    basis_mismatch_entropy: float
    loss_fraction: float
    keys_match: bool
    phase_error_upper: float
    vacuum_key_bits_lower: float
    single_photon_key_bits_lower: float
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
    frame_bits: int | None = DEFAULT_FRAME_BITS,
    min_key_bits: int = 0,
) -> BlockResult:
    """Run one block of ``pulses`` emitted pulses (BB84) or distributed pairs (BBM92); Cascade, the tag and
    privacy amplification run on its first ``frame_bits`` raw key bits (None: on all of them).

    ``min_key_bits``: reconcile further frames of the block's raw key until at least this many key bits are
    materialised (or the raw key is used up). They come from a generator drawn from ``rng`` in every block,
    so the block's figures and ``rng`` do not depend on it; only ``key_bits`` and the keys do.
    """
    if protocol not in PROTOCOLS:
        raise UserInputError(f"protocol must be one of {', '.join(PROTOCOLS)} (got {protocol!r})")
    if cascade_variant not in cascade.VARIANTS:
        raise UserInputError(
            f"Cascade variant must be one of {', '.join(cascade.VARIANTS)} (got {cascade_variant!r})"
        )
    if frame_bits is not None and not _positive_int(frame_bits):
        raise UserInputError(f"frame_bits must be a positive integer or None (got {frame_bits!r})")
    if not (_positive_int(min_key_bits) or min_key_bits == 0):
        raise UserInputError(f"min_key_bits must be an integer >= 0 (got {min_key_bits!r})")
    security = security or keyrate.SecurityParams()
    chsh_s, chsh_se = math.nan, math.nan
    if protocol == "bb84":
        if bell_model is not None:
            raise UserInputError("a Bell-pair model applies to protocol bbm92, not bb84")
        detections = bb84.simulate(params, pulses, rng, frame_bits)
    else:
        pair_run = entangled.simulate(params, pulses, rng, bell_model=bell_model, frame_bits=frame_bits)
        detections = pair_run.detections
        chsh_s, chsh_se = pair_run.chsh.s_value, pair_run.chsh.standard_error
    counts = detections.counts
    n_key, n_frame = int(counts.sifted_z[0]), len(detections.raw_key)
    errors_z, errors_x = int(counts.errors_z[0]), int(counts.errors_x[0])
    n_x = int(counts.sifted_x[0])

    estimated_qber = min(_rate(errors_x, n_x, default=0.5), 0.5)
    frames = [_reconcile_frame(detections.raw_key, estimated_qber, rng, cascade_variant, security.tag_bits)]
    first = frames[0]
    if n_frame:
        # Bob knows the frame's errors after Cascade: the bits it flipped.
        disclosed, efficiency_bound = block_leak(
            first.disclosed, n_frame, first.flipped, n_key, errors_z, EFFICIENCY_SPREAD[cascade_variant]
        )
    else:
        disclosed, efficiency_bound = 0, math.nan

    if protocol == "bb84":
        estimate = keyrate.decoy_estimate(counts, security.eps_pe)
    else:
        estimate = keyrate.single_pair_estimate(n_key, n_x, errors_x, security.eps_pe)
    block_bits = keyrate.secret_key_length(estimate, disclosed, security)
    # A frame that fails verification is discarded: its share of the key is lost (all of it when the
    # frame is the whole block), the block's other frames are not.
    secret_bits = block_bits - _share(block_bits, n_frame, n_key) if not first.verified else block_bits
    # Further frames and the amplification seed come from a generator drawn in every block, so that what
    # ``rng`` yields next does not depend on ``min_key_bits``.
    extra_rng = np.random.default_rng(rng.integers(2**63))
    used, used_errors = n_frame, first.errors
    while block_bits > 0 and used < n_key:
        if _share(block_bits, sum(f.bits for f in frames if f.verified), n_key) >= min_key_bits:
            break
        raw = bb84.draw_key_frame(n_key - used, errors_z - used_errors, frame_bits, extra_rng)
        frames.append(_reconcile_frame(raw, estimated_qber, extra_rng, cascade_variant, security.tag_bits))
        used, used_errors = used + frames[-1].bits, used_errors + frames[-1].errors
    verified = [f for f in frames if f.verified]
    key_bits = _share(block_bits, sum(f.bits for f in verified), n_key)
    alice_bits = np.concatenate([f.alice for f in verified]) if verified else np.zeros(0, np.uint8)
    bob_bits = np.concatenate([f.corrected for f in verified]) if verified else np.zeros(0, np.uint8)
    pa_seed = _shared_seed(extra_rng, privacy.seed_bits_needed(alice_bits.size, key_bits))
    alice_key = privacy.toeplitz_hash(alice_bits, key_bits, pa_seed)
    bob_key = privacy.toeplitz_hash(bob_bits, key_bits, pa_seed)

    sifted = int(counts.sifted_z.sum() + counts.sifted_x.sum())
    detected = int(counts.detected.sum())
    frame_error = not first.verified  # a further frame that fails only adds no key
    return BlockResult(
        protocol=protocol,
        pulses=detections.pulses,
        qber=_rate(errors_z + errors_x, n_key + n_x, default=math.nan),
        qber_z=_rate(errors_z, n_key, default=math.nan),
        qber_x=_rate(errors_x, n_x, default=math.nan),
        sifted_bits=sifted,
        reconciled_bits=n_key,
        frame_bits=sum(f.bits for f in frames),
        disclosed_bits=int(disclosed),
        ec_efficiency=float(first.efficiency),
        ec_efficiency_bound=float(efficiency_bound),
        frame_error=frame_error,
        secret_bits=int(secret_bits),
        key_bits=int(key_bits),
        epsilon=keyrate.key_epsilon(estimate, security),
        h_q=entropy_keys.quantum_entropy(errors_z, n_key, errors_x, n_x, security.eps_pe),
        basis_mismatch_entropy=entropy_keys.basis_mismatch_entropy(int(counts.mismatched.sum()), detected),
        loss_fraction=1.0 - detected / detections.pulses,
        keys_match=not frame_error and bool(np.array_equal(alice_key, bob_key)),
        phase_error_upper=estimate.phase_error_upper,
        vacuum_key_bits_lower=estimate.vacuum_key_bits_lower,
        single_photon_key_bits_lower=estimate.single_key_bits_lower,
        single_photon_yield_lower=estimate.y1_lower,
        single_photon_error_upper=estimate.e1_upper,
        chsh_s=chsh_s,
        chsh_standard_error=chsh_se,
        alice_key=alice_key,
        bob_key=bob_key,
    )


@dataclass(frozen=True)
class _Frame:
    """One reconciled frame: Alice's bits, Bob's after Cascade, whether the tag verified them, and what
    Cascade disclosed and flipped (``errors``: the frame's true error count, for drawing later frames)."""

    alice: np.ndarray = field(repr=False)
    corrected: np.ndarray = field(repr=False)
    verified: bool
    disclosed: int
    flipped: int
    errors: int
    efficiency: float

    @property
    def bits(self) -> int:
        return int(self.alice.size)


def _reconcile_frame(
    raw: bb84.RawKey, estimated_qber: float, rng: np.random.Generator, variant: str, tag_bits: int
) -> _Frame:
    """Cascade on one frame, then the verification tag (seeded from ``rng`` after Cascade's shuffles)."""
    if not len(raw):
        return _Frame(raw.alice, raw.bob, True, 0, 0, 0, math.nan)
    reconciled = cascade.reconcile(raw.alice, raw.bob, estimated_qber, rng, variant)
    tag_seed = _shared_seed(rng, privacy.seed_bits_needed(len(raw), tag_bits))
    verified = privacy.verification_tag(raw.alice, tag_seed, tag_bits) == privacy.verification_tag(
        reconciled.corrected, tag_seed, tag_bits
    )
    errors = int(np.count_nonzero(raw.alice != raw.bob))
    return _Frame(
        raw.alice,
        reconciled.corrected,
        bool(verified),
        reconciled.disclosed_bits,
        reconciled.bits_flipped,
        errors,
        reconciled.efficiency,
    )


def _share(key_length: int, bits: int, n_key: int) -> int:
    """The part of a block's key length that ``bits`` of its ``n_key`` raw key bits carry."""
    return key_length if bits >= n_key else key_length * bits // n_key


def _positive_int(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | np.integer) and value > 0


def block_leak(
    frame_disclosed: int,
    n_frame: int,
    frame_errors: int,
    n_key: int,
    key_errors: int,
    spread: float = EFFICIENCY_SPREAD["yanetal"],
) -> tuple[int, float]:
    """leak_EC of a block whose first ``n_frame`` raw key bits Cascade reconciled, disclosing
    ``frame_disclosed`` parities: ``(bits charged, efficiency bound f_U)``.

    A frame that is the whole block is charged exactly what it disclosed. Otherwise f_U = the frame's
    efficiency + ``EFFICIENCY_MARGIN_SIGMAS`` x ``spread`` / sqrt(frame errors) (a frame without
    errors has no efficiency: f_U is then the margin at one error above f = 1), and the block is charged
    f_U n_key h2(e_Z), and never fewer parities per bit than the frame disclosed.
    """
    frame_entropy = n_frame * keyrate.h2(frame_errors / n_frame)
    efficiency = frame_disclosed / frame_entropy if frame_entropy > 0 else math.nan
    if n_frame >= n_key:
        return frame_disclosed, efficiency
    margin = EFFICIENCY_MARGIN_SIGMAS * spread / math.sqrt(max(frame_errors, 1))
    bound = (efficiency if frame_entropy > 0 else 1.0) + margin
    charged = max(bound * n_key * keyrate.h2(key_errors / n_key), frame_disclosed * n_key / n_frame)
    return math.ceil(charged), bound


def _rate(numerator: int, denominator: int, default: float) -> float:
    return numerator / denominator if denominator else default


def _shared_seed(rng: np.random.Generator, n_bits: int) -> np.ndarray:
    """Public random bits both sides use (sent over the authenticated classical channel)."""
    return rng.integers(0, 2, n_bits, dtype=np.uint8)
