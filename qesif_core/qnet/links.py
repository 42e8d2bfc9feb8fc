"""One QKD link of a network, block by block: the QKD engine, Algorithm 1 gating the key into the link's
pool, and the attacker's time window.

:func:`run_link_block` is the only place the network calls the QKD engine (``qesif_core.qkd.session``),
so a faster engine path is one change here. A direct link runs ``run_block`` on its channel; a repeater
link (``segments >= 2``) runs a BBM92 block on heralded pairs whose state comes from the built-in chain
model (``qesif_core.qnet.repeater``) or from QuISP (``pair_state``, supplied by the caller).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from qesif_core.entropy_keys import KeyPolicy, SlotObservation, generate_key
from qesif_core.errors import UserInputError
from qesif_core.qkd.channel import EVE_MODES, ChannelParams, preset
from qesif_core.qkd.entangled import HERALDED_PAIRS, BellPairModel
from qesif_core.qkd.session import DEFAULT_FRAME_BITS, BlockResult, run_block
from qesif_core.qnet.repeater import DEFAULT_MEMORIES, chain_pair_model, chain_pair_rate


@dataclass(frozen=True)
class AttackWindow:
    """An eavesdropper on one link from ``start_s`` (included) to ``end_s`` (excluded): ``mode`` on a
    ``fraction`` of the pulses (pairs) of every block that starts inside the window."""

    mode: str
    fraction: float
    start_s: float
    end_s: float

    def __post_init__(self) -> None:
        if self.mode not in EVE_MODES or self.mode == "none":
            known = ", ".join(m for m in EVE_MODES if m != "none")
            raise UserInputError(f"eve.mode must be one of {known} (got {self.mode!r})")
        if not 0.0 < self.fraction <= 1.0:
            raise UserInputError(f"eve.fraction must lie in (0, 1] (got {self.fraction!r})")
        if not 0.0 <= self.start_s < self.end_s:
            raise UserInputError(
                f"eve.start_s must be >= 0 and below eve.end_s (got {self.start_s!r}, {self.end_s!r})"
            )

    def active(self, time_s: float) -> bool:
        return self.start_s <= time_s < self.end_s


@dataclass(frozen=True)
class LinkModel:
    """What a link's blocks are made of.

    ``channel``: the fibre, detectors and misalignment (its ``distance_km`` is the link's length) and any
    attacker present for the whole run; ``attack``: an attacker on a time window; ``pulses_per_block``:
    pulses (BB84) or pairs (BBM92) per block of a direct link; a repeater link's pairs per block come from
    its chain rate x ``block_duration_s``; ``pair_state``: the end-to-end pair state of a repeater link
    from QuISP (None: the built-in chain model); ``frame_bits``: raw key bits per reconciled frame
    (``qesif_core.qkd.session``; a block reconciles one frame, more when its keys are wanted).
    """

    name: str
    channel: ChannelParams
    protocol: str
    pulses_per_block: int
    block_duration_s: float
    segments: int = 1
    memories: int = DEFAULT_MEMORIES
    attack: AttackWindow | None = None
    pair_state: BellPairModel | None = None
    frame_bits: int | None = DEFAULT_FRAME_BITS

    @property
    def is_repeater(self) -> bool:
        return self.segments >= 2

    @property
    def description(self) -> str:
        """How the link is simulated, as the results label it."""
        if not self.is_repeater:
            state = "pair state from QuISP" if self.pair_state is not None else "built-in QKD engine"
            return f"direct {self.protocol} link ({state})"
        state = "pair state from QuISP" if self.pair_state is not None else "built-in repeater-chain model"
        return f"repeater chain of {self.segments} segments, bbm92 ({state})"

    def pairs_per_block(self) -> int:
        """Pairs (pulses) the engine simulates per block."""
        if not self.is_repeater:
            return self.pulses_per_block
        rate = chain_pair_rate(self.channel, self.segments, self.memories)
        return max(1, math.floor(rate * self.block_duration_s)) if math.isfinite(rate) else 1

    def attacked(self, time_s: float) -> bool:
        """Ground truth: an attacker acts on the block that starts at ``time_s``."""
        whole_run = self.channel.eve != "none" and self.channel.eve_fraction > 0.0
        return whole_run or (self.attack is not None and self.attack.active(time_s))

    def benign(self) -> LinkModel:
        """The same link without any attacker (its commissioning state)."""
        channel = dataclasses.replace(self.channel, eve="none", eve_fraction=0.0)
        return dataclasses.replace(self, channel=channel, attack=None)

    def reference(self) -> LinkModel:
        """The noise-free trials of Algorithm 2's calibration: the clean preset at this link's length with
        its source intensities (and the built-in chain for a repeater link)."""
        channel = dataclasses.replace(
            preset("clean"),
            distance_km=self.channel.distance_km,
            mu_signal=self.channel.mu_signal,
            mu_decoy=self.channel.mu_decoy,
        )
        return dataclasses.replace(self, channel=channel, attack=None, pair_state=None)


def run_link_block(
    link: LinkModel, time_s: float, rng: np.random.Generator, min_key_bits: int = 0
) -> BlockResult:
    """One block of ``link`` starting at ``time_s`` through the QKD engine (the engine adapter).

    ``min_key_bits``: key bits wanted from the block (the room in the link's pool): the engine reconciles
    further frames of the block until it has materialised them, or its key is used up; the block's figures
    and ``rng`` do not depend on it (``qesif_core.qkd.session.run_block``)."""
    channel = link.channel
    if link.attack is not None and link.attack.active(time_s):
        channel = dataclasses.replace(channel, eve=link.attack.mode, eve_fraction=link.attack.fraction)
    frames = {"frame_bits": link.frame_bits, "min_key_bits": int(min_key_bits)}
    if not link.is_repeater:
        return run_block(
            channel, link.pulses_per_block, rng, link.protocol, bell_model=link.pair_state, **frames
        )
    heralded = dataclasses.replace(HERALDED_PAIRS, eve=channel.eve, eve_fraction=channel.eve_fraction)
    pairs = link.pair_state or chain_pair_model(link.channel, link.segments)
    return run_block(heralded, link.pairs_per_block(), rng, "bbm92", bell_model=pairs, **frames)


def accept_block(link: str, block: BlockResult, policy: KeyPolicy) -> tuple[bool, bool]:
    """Algorithm 1 on one block (a one-slot window, gamma = 1, eta = 0, as the orchestrator runs it).

    Returns (window accepted, key admitted): the block's key enters the link's pool(s) when the window is
    accepted, its slot appended (K_IoT > epsilon_min) and the two ends' keys verified equal. The caller adds
    ``block.alice_key`` / ``block.bob_key`` to the pool(s)."""
    slot = SlotObservation(h_q=block.h_q, theta=block.qber, loss=block.loss_fraction, key=block.alice_key)
    decision = generate_key(link, [slot], gamma=1.0, policy=policy)
    return decision.accepted, decision.accepted and decision.key_bits > 0 and block.keys_match
