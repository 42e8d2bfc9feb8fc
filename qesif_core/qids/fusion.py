"""Cross-layer Q-IDS: the classical flow detector fused with the quantum anomaly score, and the control
centre's correlation of anomalies across gateways.

Fusion rule (``DetectorSpec.fusion``), per flow record; ``p`` is the flow classifier's P(attack) and
``q = A_q(t) - alpha^{t+1}`` the Algorithm 2 margin of the flow's gateway link at the flow's QKD block
(``q >= 0`` exactly when Algorithm 2 flags that block):

- ``none``: attack when ``p >= 0.5`` (flow detector alone; the quantum score is ignored).
- ``boost``: heightened scrutiny: attack when ``p >= 0.3`` (:data:`BOOSTED_FLOW_THRESHOLD`) on a flow whose
  link is flagged (``q >= 0``), else when ``p >= 0.5``. The quantum verdict never labels a record by
  itself; it lowers the bar for the flow classifier where the channel is under attack. 0.3 is the default
  (``qids.boosted_flow_threshold`` in a scenario), a choice, not tuned: it multiplies the prior odds of an
  attack by 7/3 (about 2.3) on a flagged link.
- ``or``: attack when ``p >= 0.5`` or ``q >= 0``: every flow carried by a gateway link while its QKD
  channel is flagged is treated as compromised, because its session keys may be known to the eavesdropper.
- ``and``: attack when both agree (fewer false positives, misses what only one layer sees).
- ``quantum``: attack when ``q >= 0`` (Algorithm 2 alone).

What it can and cannot detect: the quantum score sees only the QKD channel (QBER, entropy, key drops).
It cannot see a classical attack in a dataset record (a DDoS flow, an injection, a password guess), which
leaves the quantum channel untouched, so on the datasets ADR comes from the flow classifier (under
``boost``, at a lower threshold on flagged links). Under ``or`` (and ``quantum``), an eavesdropped channel
labels every flow of a flagged link an attack, benign ones included: against the dataset's ground truth,
which labels traffic and not the channel, those are false positives (FPR 1.0 on benign records of flagged
links), which is why QESIF uses ``boost``; the quantum layer's own detection is reported per QKD block
(``ids/quantum_detection_rate``, ``ids/quantum_false_alarm_rate`` of a run). A quantum-layer attack
(intercept-resend, PNS) is invisible to the flow classifier and visible to Algorithm 2. Without a quantum
score (``None``), the quantum part contributes no flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from qesif_core.errors import UserInputError
from qesif_core.qids.anomaly import QidsResult
from qesif_core.qids.flows import FLOW_CLASSIFIERS, FlowDetector

if TYPE_CHECKING:  # numpy and pandas are imported where used (slow to import; validation needs neither)
    import numpy as np
    import pandas as pd

#: Fusion rule names (see the module docstring).
FUSION_RULES = ("none", "boost", "or", "and", "quantum")
#: Decision threshold on the flow classifier's P(attack).
FLOW_THRESHOLD = 0.5
#: The ``boost`` rule's threshold on flows of a link Algorithm 2 flags (heightened scrutiny).
BOOSTED_FLOW_THRESHOLD = 0.3


@dataclass(frozen=True)
class DetectorSpec:
    """What intrusion detector a security scheme runs.

    ``classifier`` is a name in ``qesif_core.qids.flows.FLOW_CLASSIFIERS``; ``uses_quantum_score`` says
    whether the quantum anomaly score (Eq. 3/4) is fused in; ``fusion`` names the fusion rule.
    """

    classifier: str
    uses_quantum_score: bool
    fusion: str

    def __post_init__(self) -> None:
        if self.classifier not in FLOW_CLASSIFIERS:
            raise UserInputError(
                f"detector classifier {self.classifier!r} unknown; known: {', '.join(FLOW_CLASSIFIERS)}"
            )
        if self.fusion not in FUSION_RULES:
            raise UserInputError(f"detector fusion {self.fusion!r} unknown; known: {', '.join(FUSION_RULES)}")
        if self.uses_quantum_score == (self.fusion == "none"):
            raise UserInputError(
                f"detector fusion {self.fusion!r} does not fit uses_quantum_score={self.uses_quantum_score}"
            )


class CrossLayerDetector:
    """Flow classifier + quantum score, fused by ``spec.fusion``."""

    def __init__(
        self,
        spec: DetectorSpec,
        rng: np.random.Generator,
        boosted_threshold: float = BOOSTED_FLOW_THRESHOLD,
    ) -> None:
        check_boosted_threshold(boosted_threshold)
        self.spec = spec
        self.boosted_threshold = boosted_threshold
        self.flow = FlowDetector(spec.classifier, rng)

    def fit(self, train_flows: pd.DataFrame, columns: list[str] | None = None) -> CrossLayerDetector:
        """Train the flow classifier on ``columns`` of ``train_flows`` (default: all its features)."""
        if self.spec.fusion != "quantum":
            self.flow.fit(train_flows, columns)
        return self

    def predict(self, test_flows: pd.DataFrame, quantum_score: np.ndarray | None = None) -> np.ndarray:
        """Boolean attack prediction per flow; ``quantum_score`` is the per-flow Algorithm 2 margin."""
        uses_flow = self.spec.fusion != "quantum"
        probability = self.flow.attack_probability(test_flows) if uses_flow else None
        return fuse(self.spec, len(test_flows), probability, quantum_score, self.boosted_threshold)


def check_boosted_threshold(value: float) -> None:
    if not 0.0 < value <= FLOW_THRESHOLD:  # NaN fails too
        raise UserInputError(f"qids.boosted_flow_threshold: must be in (0, {FLOW_THRESHOLD}], got {value!r}")


def fuse(
    spec: DetectorSpec,
    n: int,
    probability: np.ndarray | None,
    quantum_score: np.ndarray | None,
    boosted_threshold: float = BOOSTED_FLOW_THRESHOLD,
) -> np.ndarray:
    """The fusion rule ``spec.fusion`` on ``n`` flows: the flow classifier's P(attack) (None under the
    ``quantum`` rule, which uses none) and the per-flow Algorithm 2 margin (None: no quantum flag)."""
    import numpy as np

    quantum = np.zeros(n, dtype=bool)
    if spec.uses_quantum_score and quantum_score is not None:
        quantum_score = np.asarray(quantum_score, dtype=np.float64)
        if quantum_score.shape != (n,):
            raise ValueError(f"quantum_score has shape {quantum_score.shape}, expected ({n},)")
        quantum = quantum_score >= 0.0  # NaN compares False: no evidence, no flag
    if spec.fusion == "quantum":
        return quantum
    if probability is None:
        raise ValueError(f"fusion rule {spec.fusion!r} needs the flow classifier's probabilities")
    if spec.fusion == "boost":
        return probability >= np.where(quantum, boosted_threshold, FLOW_THRESHOLD)
    flow = probability >= FLOW_THRESHOLD
    if spec.fusion == "or":
        return flow | quantum
    if spec.fusion == "and":
        return flow & quantum
    return flow


def gateway_of(device_keys: pd.Series | np.ndarray, n_gateways: int) -> np.ndarray:
    """Gateway index of each device (stable hash of the device key modulo the number of gateways)."""
    import numpy as np
    import pandas as pd

    if n_gateways < 1:
        raise UserInputError(f"network.gateways must be >= 1, got {n_gateways!r}")
    hashed = pd.util.hash_pandas_object(pd.Series(device_keys).astype(str), index=False).to_numpy()
    return (hashed % np.uint64(n_gateways)).astype(np.int64)


def block_of(ts: np.ndarray, n_blocks: int, block_duration_s: float) -> np.ndarray:
    """QKD block index of each flow: elapsed time since the first flow / block duration, clipped to the
    trace; flows without a timestamp are spread over the blocks in record order."""
    import numpy as np

    ts = np.asarray(ts, dtype=np.float64)
    n = len(ts)
    if n_blocks < 1:
        raise ValueError("the QKD trace has no block")
    finite = np.isfinite(ts)
    blocks = np.floor(np.arange(n) * n_blocks / max(n, 1)).astype(np.int64)
    if finite.any():
        start = ts[finite].min()
        blocks[finite] = np.floor((ts[finite] - start) / block_duration_s).astype(np.int64)
    return np.clip(blocks, 0, n_blocks - 1)


def quantum_score_for_flows(flows: pd.DataFrame, result: QidsResult, blocks: np.ndarray) -> np.ndarray:
    """Per-flow Algorithm 2 margin ``A_q - alpha`` of the flow's gateway link (a row of ``result``, by
    :func:`gateway_of`) at QKD block ``blocks`` (:func:`block_of`, or record positions when streaming)."""
    import numpy as np

    margin = result.score - result.threshold
    gateway = gateway_of(flows["device_key"], margin.shape[0])
    return margin[gateway, np.clip(np.asarray(blocks, dtype=np.int64), 0, margin.shape[1] - 1)]


def correlate_gateways(flags: np.ndarray, min_gateways: int = 2, window: int = 1) -> np.ndarray:
    """Control-centre correlation: per block, True when at least ``min_gateways`` distinct gateways raised
    an anomaly within the last ``window`` blocks (a coordinated attack rather than one noisy link).

    ``flags`` is ``gateways x blocks`` (Algorithm 2 flags, or flow alerts aggregated per gateway/block).
    """
    import numpy as np

    flags = np.asarray(flags, dtype=bool)
    if min_gateways < 1 or window < 1:
        raise UserInputError(f"min_gateways and window must be >= 1, got {min_gateways!r}, {window!r}")
    counts = np.concatenate([np.zeros((flags.shape[0], 1), np.int64), np.cumsum(flags, axis=1)], axis=1)
    hi = np.arange(1, flags.shape[1] + 1)
    lo = np.maximum(hi - window, 0)
    recently = (counts[:, hi] - counts[:, lo]) > 0
    return recently.sum(axis=0) >= min_gateways


def alerts_by_gateway(
    flows: pd.DataFrame, predictions: np.ndarray, n_gateways: int, n_blocks: int, block_duration_s: float
) -> np.ndarray:
    """``gateways x blocks`` matrix: True where a gateway's flows raised at least one alert in a block."""
    import numpy as np

    gateway = gateway_of(flows["device_key"], n_gateways)
    block = block_of(flows["ts"].to_numpy(), n_blocks, block_duration_s)
    out = np.zeros((n_gateways, n_blocks), dtype=bool)
    predictions = np.asarray(predictions, dtype=bool)
    out[gateway[predictions], block[predictions]] = True
    return out
