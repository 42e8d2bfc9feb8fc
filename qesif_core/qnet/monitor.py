"""Algorithm 2 on every link of a network, block by block, with each link's own calibration.

Calibration follows the orchestrator's (``bridge.cosim.orchestrator.qids_calibration``, docs/qids.md):
Hbar_q and QBER_ref from noise-free blocks (the clean preset at the link's length), and, in
``link-baseline`` mode, the benign-noise model from the link's own commissioning blocks without any
attacker; in ``noise-free`` mode from the noise-free blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from qesif_core.errors import UserInputError
from qesif_core.qids.anomaly import (
    CALIBRATION_MODES,
    Calibration,
    QidsParams,
    calibrate,
    calibrate_link,
    key_drop_ratio,
    run_matrices,
)
from qesif_core.qnet.links import LinkModel, run_link_block


def _trace(link: LinkModel, blocks: int, rng: np.random.Generator) -> pd.DataFrame:
    rows = [run_link_block(link, 0.0, rng) for _ in range(blocks)]
    return pd.DataFrame(
        {
            "h_q": [r.h_q for r in rows],
            "qber": [r.qber for r in rows],
            "secret_bits": [r.secret_bits for r in rows],
        }
    )


def calibrate_network(
    links: Sequence[LinkModel],
    params: QidsParams,
    blocks: int,
    mode: str,
    rngs: Sequence[np.random.Generator],
) -> list[Calibration]:
    """One calibration per link (``blocks`` noise-free blocks, and as many commissioning blocks in
    ``link-baseline`` mode), each link drawing from its own generator."""
    if mode not in CALIBRATION_MODES:
        raise UserInputError(
            f"qids.calibration: unknown mode {mode!r}; known: {', '.join(CALIBRATION_MODES)}"
        )
    out = []
    for link, rng in zip(links, rngs, strict=True):
        reference = calibrate([_trace(link.reference(), blocks, rng)], params)
        if mode == "link-baseline":
            reference = calibrate_link(reference, [_trace(link.benign(), blocks, rng)], params)
        out.append(reference)
    return out


class NetworkWatch:
    """Algorithm 2 over ``links x blocks``; :meth:`observe` adds one block of every link and returns that
    block's flags and margins (A_q - alpha). Past blocks are re-run with the new one (the threshold of
    Eq. 4 depends on the whole history), which gives the same values as one run over all blocks."""

    def __init__(self, calibrations: Sequence[Calibration], params: QidsParams, n_blocks: int) -> None:
        self.calibrations = list(calibrations)
        self.params = params
        shape = (len(self.calibrations), n_blocks)
        self.h_q = np.full(shape, np.nan)
        self.qber = np.full(shape, np.nan)
        self.secret_bits = np.full(shape, np.nan)
        self.flags = np.zeros(shape, dtype=bool)
        self.margin = np.full(shape, np.nan)

    def observe(
        self, block: int, h_q: np.ndarray, qber: np.ndarray, secret_bits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        self.h_q[:, block], self.qber[:, block], self.secret_bits[:, block] = h_q, qber, secret_bits
        upto = block + 1
        drop = key_drop_ratio(self.secret_bits[:, :upto], self.params.key_drop_window)
        result = run_matrices(self.h_q[:, :upto], self.qber[:, :upto], drop, self.calibrations, self.params)
        self.flags[:, block] = result.flags[:, block]
        self.margin[:, block] = result.score[:, block] - result.threshold[:, block]
        return self.flags[:, block], self.margin[:, block]


def runs_of(flags: np.ndarray) -> list[tuple[int, int]]:
    """(first, last + 1) index of every run of consecutive true values (e.g. an attack window's blocks)."""
    edges = np.diff(np.concatenate([[0], np.asarray(flags, dtype=np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))
