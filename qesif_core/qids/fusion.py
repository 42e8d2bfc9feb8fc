"""Fusion of the classical flow detector with the quantum anomaly score (cross-layer Q-IDS).

Only :class:`DetectorSpec` is defined here so far (contracts.md item 2): the security schemes declare
their detector with it. The Q-IDS part extends this module with ``CrossLayerDetector``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DetectorSpec:
    """What intrusion detector a security scheme runs.

    ``classifier`` is a name in ``qesif_core.qids.flows.FLOW_CLASSIFIERS``; ``uses_quantum_score`` says
    whether the quantum anomaly score (Eq. 3/4) is fused in; ``fusion`` names the fusion rule.
    """

    classifier: str
    uses_quantum_score: bool
    fusion: str
