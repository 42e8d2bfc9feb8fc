"""The built-in model of a repeater link: a chain of ``segments`` memory-to-memory links joined by
entanglement swapping, whose end-to-end pairs feed a BBM92 block of the QKD engine.

Used when a link has ``segments >= 2`` and no QuISP run supplies its pair state (then the link is labelled
"built-in repeater-chain model" in the results, never passed off as QuISP's). Assumptions, all stated in
docs/qkd-network.md:

- Pair state: each segment delivers Phi+ pairs with the link channel's misalignment as bit and phase
  flips (``BellPairModel.from_channel``: QBER_Z = QBER_X = e_d per segment, as QuISP's templates are set
  up); ideal Bell-state measurements compose the segments' Pauli channels (:func:`compose_pauli`), so the
  errors add up along the chain (two 1% segments: 1.98%).
- Rate: a segment of length L/n heralds a pair per attempt with probability p = 10^(-alpha L/(10 n)) x
  detector efficiency; an attempt cycle lasts the heralding round trip 2 (L/n) / c (c = 2e5 km/s in
  fibre) and ``memories`` attempts run in parallel per cycle; memories hold pairs without decoherence
  until every segment has one, then one end-to-end pair is made (:func:`chain_pair_rate`).
- The pairs are heralded and measured by ideal detectors (:data:`HERALDED_PAIRS`): loss shows in the rate,
  not in the block, and there are no dark counts.
"""

from __future__ import annotations

import math
from math import comb

import numpy as np

from qesif_core.qkd.channel import ChannelParams
from qesif_core.qkd.entangled import BellPairModel

#: Speed of light in fibre (km/s), for the heralding round trip of a segment.
FIBRE_LIGHT_SPEED_KM_S = 2.0e5
#: Memories per node and segment when a scenario does not say (the QuISP templates' ``buffers``).
DEFAULT_MEMORIES = 10

# Pauli products on (I, X, Y, Z), ignoring phases: the Klein four-group.
_PRODUCT = np.array([[0, 1, 2, 3], [1, 0, 3, 2], [2, 3, 0, 1], [3, 2, 1, 0]])


def compose_pauli(models: list[BellPairModel]) -> BellPairModel:
    """The Pauli channel of pairs swapped through ideal Bell-state measurements: the segments' Pauli
    errors multiply, so their distributions convolve over the group {I, X, Y, Z}."""
    total = np.array([1.0, 0.0, 0.0, 0.0])
    for model in models:
        p = np.array([model.fidelity, model.x_error, model.y_error, model.z_error])
        out = np.zeros(4)
        for i in range(4):
            for j in range(4):
                out[_PRODUCT[i, j]] += total[i] * p[j]
        total = out
    total = np.clip(total, 0.0, 1.0)
    return BellPairModel(x_error=float(total[1]), y_error=float(total[2]), z_error=float(total[3]))


def chain_pair_model(channel: ChannelParams, segments: int) -> BellPairModel:
    """End-to-end pair state of ``segments`` identical segments of ``channel``'s misalignment."""
    return compose_pauli([BellPairModel.from_channel(channel)] * segments)


def expected_cycles(success: float, segments: int) -> float:
    """E[max of ``segments`` independent geometric(``success``) waiting times]: cycles until every segment
    holds a pair when memories keep them."""
    if not 0.0 < success <= 1.0:
        return math.inf
    return sum(
        (-1) ** (k + 1) * comb(segments, k) / (1.0 - (1.0 - success) ** k) for k in range(1, segments + 1)
    )


def chain_pair_rate(channel: ChannelParams, segments: int, memories: int = DEFAULT_MEMORIES) -> float:
    """End-to-end pairs per second of a repeater chain over ``channel.distance_km`` (module docstring)."""
    length = channel.distance_km / segments
    herald = 10.0 ** (-channel.fibre_loss_db_per_km * length / 10.0) * channel.detector_efficiency
    per_cycle = 1.0 - (1.0 - herald) ** memories
    cycle_s = 2.0 * length / FIBRE_LIGHT_SPEED_KM_S
    return 1.0 / (cycle_s * expected_cycles(per_cycle, segments))
