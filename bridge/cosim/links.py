"""The QKD side of a run's gateway links: one block per link and round, and the Q-IDS calibration traces.

Live (no shared cache active, or ``qkd.source: quisp``): each link's block runs through the full QKD
post-processing when its round comes (``qesif_core.qkd.session.run_block`` on the link's own stream, with
the further key frames the round's sessions need, ``min_key_bits``), and Alice's final key, the
privacy-amplification output, goes to the link's key pool.

Shared (a batch's cache is active, ``bridge.cache``): the figures of every block of every link (QBER, H_q,
secret bits, loss, epsilon, the key bits of its first frame) and the calibration traces are computed once
per seed, commissioned channel, block size, frame size, gateways, rounds and calibration settings, with the
same streams as a live run, and every run with those inputs reads them back: the schemes and datasets of a
grid share a channel's QKD. A block's figures do not depend on how many further frames a run reconciles
(``run_block``'s contract), only its key bits do: when a run needs more key from a block than its first
frame gave, that block is run again, exactly, from the state its link's generator had before it (kept in
the entry), with the run's ``min_key_bits``. Key bytes are never cached: a run that takes a block's figures
from the entry hands its key pool the block's key as deferred bits (``qesif_core.keys.DeferredBits``),
which run the block again from that saved state when a key cut from them is first delivered. Sessions
are therefore keyed with the block's own reconciled and amplified bits, the very bits a live run gets,
and only the blocks whose keys are used are run again. The generator states are no more secret than the
run's seed, which every stored result carries in its spec.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from bridge.cache import active, shared_arrays
from qesif_core.errors import UserInputError
from qesif_core.keys import DeferredBits, SecretBits
from qesif_core.qids.anomaly import CALIBRATION_MODES, Calibration, QidsParams, calibrate, calibrate_link
from qesif_core.qkd.channel import ChannelParams, preset
from qesif_core.qkd.session import DEFAULT_FRAME_BITS, BlockResult, run_block

if TYPE_CHECKING:
    import pandas as pd

    from bridge.scenario import QidsSpec, QkdSpec
    from qesif_core.qkd.entangled import BellPairModel

DEFAULT_CALIBRATION_BLOCKS = 20
#: ``qids.calibration`` when a spec does not set it (one of ``anomaly.CALIBRATION_MODES``).
DEFAULT_CALIBRATION_MODE = "link-baseline"
#: The figures of a block a run uses (besides the key), and those that decide whether a run needs more of it.
BLOCK_FIGURES = ("qber", "h_q", "secret_bits", "loss_fraction", "epsilon", "key_bits")
_FRAME_FIGURES = ("frame_bits", "reconciled_bits")
_INTEGER_FIGURES = ("secret_bits", "key_bits", "frame_bits", "reconciled_bits")


def calibration_settings(section: Mapping[str, Any]) -> tuple[str, int]:
    """``qids.calibration`` and ``qids.calibration_blocks`` of a spec, checked."""
    mode = section.get("calibration", DEFAULT_CALIBRATION_MODE)
    if mode not in CALIBRATION_MODES:
        raise UserInputError(
            f"qids.calibration: unknown mode {mode!r}; known: {', '.join(CALIBRATION_MODES)}"
        )
    blocks = section.get("calibration_blocks", DEFAULT_CALIBRATION_BLOCKS)
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 2:
        raise UserInputError(f"qids.calibration_blocks: must be an integer >= 2, got {blocks!r}")
    return mode, blocks


def calibration_traces(
    channel: ChannelParams,
    mode: str,
    blocks: int,
    pulses: int,
    qkd_protocol: str,
    n_links: int,
    rng: np.random.Generator,
    benign_pairs: Sequence[BellPairModel] | None = None,
    frame_bits: int | None = DEFAULT_FRAME_BITS,
) -> tuple[pd.DataFrame, list[pd.DataFrame] | None]:
    """The traces Algorithm 2 is calibrated on: noise-free trials of the clean preset with the link's source
    intensities, and (``link-baseline``) each link's commissioning blocks on the run's channel without its
    attacker (None for ``noise-free``)."""
    from qesif_core.qkd.trace import link_trace

    clean = dataclasses.replace(
        preset("clean"),
        distance_km=channel.distance_km,
        mu_signal=channel.mu_signal,
        mu_decoy=channel.mu_decoy,
    )
    reference = link_trace(clean, blocks, pulses, rng.spawn(1)[0], qkd_protocol, frame_bits=frame_bits)
    if mode == "noise-free":
        return reference, None
    benign = dataclasses.replace(channel, eve="none", eve_fraction=0.0)
    pairs = benign_pairs or [None] * n_links
    return reference, [
        link_trace(benign, blocks, pulses, link_rng, qkd_protocol, pairs[g], frame_bits=frame_bits)
        for g, link_rng in enumerate(rng.spawn(n_links))
    ]


def calibrate_from(
    params: QidsParams, reference: pd.DataFrame, benign: Sequence[pd.DataFrame] | None
) -> Calibration | list[Calibration]:
    """One calibration for all links (no benign traces) or one per link (see ``calibration_traces``)."""
    calibration = calibrate([reference], params)
    if benign is None:
        return calibration
    return [calibrate_link(calibration, [trace], params) for trace in benign]


@dataclass(frozen=True)
class LinkBlock:
    """What a run uses of one QKD block: its figures and Alice's final key (never shown in repr)."""

    qber: float
    h_q: float
    secret_bits: int
    loss_fraction: float
    epsilon: float
    key_bits: int
    alice_key: SecretBits = field(repr=False)

    @classmethod
    def of(cls, result: BlockResult) -> LinkBlock:
        return cls(*(getattr(result, name) for name in BLOCK_FIGURES), alice_key=result.alice_key)


class GatewayLinks:
    """The QKD blocks and the Q-IDS calibration of a run's gateway links (module docstring).

    The run's ``qkd`` section and ``channel`` (with its commissioned intensities), blocks of ``pulses``
    pulses; Algorithm 2's ``params`` and the ``qids`` section's calibration settings. ``rng`` is the run's
    ``qkd`` stream: each link's blocks come from its own child stream, spawned first; the calibration traces
    (and QuISP's runs) from children spawned after them. ``seed`` only names the shared entry.
    """

    def __init__(
        self,
        qkd: QkdSpec,
        channel: ChannelParams,
        params: QidsParams,
        qids: QidsSpec,
        rng: np.random.Generator,
        *,
        n_links: int,
        rounds: int,
        seed: int,
        pulses: int,
    ) -> None:
        self.n_links = n_links
        self.rounds = rounds
        self.protocol = qkd.protocol
        self.pulses = pulses
        self.frame_bits = frame_bits = qkd.frame_bits
        #: Blocks this run ran again from their generator state for further key frames (shared mode).
        self.blocks_rerun = 0
        mode, blocks = qids.calibration, qids.calibration_blocks
        self._rngs = rng.spawn(self.n_links)
        self._channel, self._pairs, benign_pairs = channel, [None] * self.n_links, None
        source = qkd.source
        if source == "quisp":  # each link's pair state comes from QuISP runs done now
            from bridge.backends.quisp import quisp_links

            links = quisp_links(channel, self.n_links, self.protocol, rng.spawn(1)[0])
            self._channel, self._pairs, benign_pairs = links.channel, links.attacked, links.benign
        self._figures: dict[str, np.ndarray] | None = None
        if source != "builtin" or active() is None:
            reference, benign = calibration_traces(
                channel, mode, blocks, pulses, self.protocol, self.n_links, rng, benign_pairs, frame_bits
            )
        else:
            inputs = {
                "seed": seed,
                "channel": channel.to_dict(),
                "protocol": self.protocol,
                "pulses": pulses,
                "frame_bits": frame_bits,
                "gateways": self.n_links,
                "rounds": self.rounds,
                "calibration": mode,
                "calibration_blocks": blocks,
            }
            self._figures = shared_arrays(
                "qkd-links", inputs, lambda: self._all_figures(channel, mode, blocks, rng)
            )
            reference = _trace_from(self._figures, "reference")
            benign = None if mode == "noise-free" else _traces_from(self._figures, "benign", self.n_links)
        self.calibration = calibrate_from(params, reference, benign)

    def block(self, link: int, round_index: int, min_key_bits: int = 0) -> LinkBlock:
        """The block of ``link`` in round ``round_index`` (rounds in order, each once), with at least
        ``min_key_bits`` key bits materialised if its raw key allows (``run_block``)."""
        if self._figures is None:
            return LinkBlock.of(
                run_block(
                    self._channel,
                    self.pulses,
                    self._rngs[link],
                    self.protocol,
                    bell_model=self._pairs[link],
                    frame_bits=self.frame_bits,
                    min_key_bits=min_key_bits,
                )
            )
        figures = {name: self._figures[name][link, round_index] for name in (*BLOCK_FIGURES, *_FRAME_FIGURES)}
        if min_key_bits > figures["key_bits"] and figures["frame_bits"] < figures["reconciled_bits"]:
            self.blocks_rerun += 1  # this run needs further frames of the block: run it again, exactly
            generator = self._generator_before(link, round_index)
            return LinkBlock.of(
                run_block(
                    self._channel,
                    self.pulses,
                    generator,
                    self.protocol,
                    frame_bits=self.frame_bits,
                    min_key_bits=min_key_bits,
                )
            )
        values = [figures[name].item() for name in BLOCK_FIGURES]
        return LinkBlock(
            *values, alice_key=DeferredBits(figures["key_bits"], self._key_loader(link, round_index))
        )

    def _key_loader(self, link: int, round_index: int) -> Callable[[], np.ndarray]:
        """The block's first-frame key bits, recomputed exactly from its generator's saved state."""

        def load() -> np.ndarray:
            generator = self._generator_before(link, round_index)
            result = run_block(
                self._channel, self.pulses, generator, self.protocol, frame_bits=self.frame_bits
            )
            return result.alice_key

        return load

    def _generator_before(self, link: int, round_index: int) -> np.random.Generator:
        """The link's generator in the state it had before the block of ``round_index``."""
        figures = self._figures
        assert figures is not None
        state = {
            "bit_generator": "PCG64",
            "state": {
                "state": _join(
                    figures["state_hi"][link, round_index], figures["state_lo"][link, round_index]
                ),
                "inc": _join(figures["inc_hi"][link], figures["inc_lo"][link]),
            },
            "has_uint32": int(figures["has_uint32"][link, round_index]),
            "uinteger": int(figures["uinteger"][link, round_index]),
        }
        bit_generator = np.random.PCG64()
        bit_generator.state = state
        return np.random.Generator(bit_generator)

    def _all_figures(
        self, channel: ChannelParams, mode: str, blocks: int, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """Every figure a run needs of its links, computed with the streams a live run uses, and the state
        of each link's generator before each block (no keys)."""
        reference, benign = calibration_traces(
            channel, mode, blocks, self.pulses, self.protocol, self.n_links, rng, None, self.frame_bits
        )
        arrays = _columns("reference", [reference])
        if benign is not None:
            arrays.update(_columns("benign", benign))
        shape = (self.n_links, self.rounds)
        for name in (*BLOCK_FIGURES, *_FRAME_FIGURES):
            arrays[name] = np.zeros(shape, dtype=np.int64 if name in _INTEGER_FIGURES else np.float64)
        for name in ("state_hi", "state_lo", "uinteger"):
            arrays[name] = np.zeros(shape, dtype=np.uint64)
        arrays["has_uint32"] = np.zeros(shape, dtype=np.int64)
        arrays["inc_hi"] = np.zeros(self.n_links, dtype=np.uint64)
        arrays["inc_lo"] = np.zeros(self.n_links, dtype=np.uint64)
        for link, generator in enumerate(self._rngs):
            if generator.bit_generator.state["bit_generator"] != "PCG64":
                raise TypeError("the shared QKD entry keeps PCG64 generator states")
            for round_index in range(self.rounds):
                state = generator.bit_generator.state
                arrays["state_hi"][link, round_index], arrays["state_lo"][link, round_index] = _split(
                    state["state"]["state"]
                )
                arrays["inc_hi"][link], arrays["inc_lo"][link] = _split(state["state"]["inc"])
                arrays["has_uint32"][link, round_index] = state["has_uint32"]
                arrays["uinteger"][link, round_index] = state["uinteger"]
                result = run_block(
                    self._channel, self.pulses, generator, self.protocol, frame_bits=self.frame_bits
                )
                for name in (*BLOCK_FIGURES, *_FRAME_FIGURES):
                    arrays[name][link, round_index] = getattr(result, name)
        return arrays


def _split(value: int) -> tuple[int, int]:
    """A 128-bit generator word as (high, low) 64-bit halves."""
    return value >> 64, value & (2**64 - 1)


def _join(high: np.uint64, low: np.uint64) -> int:
    return (int(high) << 64) | int(low)


def _columns(prefix: str, traces: Sequence[pd.DataFrame]) -> dict[str, np.ndarray]:
    """Traces of equal length as one array per column, ``links x blocks``, named ``prefix.column``."""
    return {f"{prefix}.{c}": np.stack([t[c].to_numpy() for t in traces]) for c in traces[0].columns}


def _traces_from(arrays: Mapping[str, np.ndarray], prefix: str, n: int) -> list[pd.DataFrame]:
    import pandas as pd

    columns = [name.split(".", 1)[1] for name in arrays if name.startswith(f"{prefix}.")]
    return [pd.DataFrame({c: arrays[f"{prefix}.{c}"][i] for c in columns}) for i in range(n)]


def _trace_from(arrays: Mapping[str, np.ndarray], prefix: str) -> pd.DataFrame:
    return _traces_from(arrays, prefix, 1)[0]
