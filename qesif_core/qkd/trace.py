"""QKD traces: one row per block of a link, the quantum signal the Q-IDS and the orchestrator consume.

The QuISP backend produces the same columns (``TRACE_COLUMNS``) from its Bell-pair tomography.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qesif_core.errors import UserInputError
from qesif_core.qkd.bb84 import check_pulses
from qesif_core.qkd.channel import ChannelParams
from qesif_core.qkd.entangled import BellPairModel
from qesif_core.qkd.session import DEFAULT_FRAME_BITS, run_block

TRACE_COLUMNS = (
    "block",
    "qber",
    "qber_z",
    "qber_x",
    "h_q",
    "basis_mismatch_entropy",
    "sifted_bits",
    "secret_bits",
    "loss_fraction",
)


def link_trace(
    params: ChannelParams,
    n_blocks: int,
    pulses_per_block: int,
    rng: np.random.Generator,
    protocol: str = "bb84",
    bell_model: BellPairModel | None = None,
    *,
    frame_bits: int | None = DEFAULT_FRAME_BITS,
) -> pd.DataFrame:
    """Run ``n_blocks`` consecutive blocks of one link through the full post-processing (Cascade on
    ``frame_bits`` raw key bits per block, see ``session.run_block``)."""
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, int | np.integer) or n_blocks <= 0:
        raise UserInputError(f"n_blocks must be a positive integer (got {n_blocks!r})")
    pulses_per_block = check_pulses(pulses_per_block, "pulses_per_block")
    rows = []
    for block in range(int(n_blocks)):
        result = run_block(
            params, pulses_per_block, rng, protocol, bell_model=bell_model, frame_bits=frame_bits
        )
        figures = result.figures()
        rows.append({"block": block, **{name: figures[name] for name in TRACE_COLUMNS[1:]}})
    return pd.DataFrame(rows, columns=list(TRACE_COLUMNS))
