"""Detection metrics of the paper's evaluation: ADR (attack detection rate) with the false-positive rate
always beside it, precision, F1 and recall per attack type.

``ConfusionCounts`` accumulates chunk by chunk, so a test split of millions of rows never has to be held
in memory; ``detection_metrics`` is the one-shot form. Undefined ratios (no attack rows, nothing flagged)
are NaN, never a made-up 0 or 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BENIGN = "normal"


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


@dataclass
class ConfusionCounts:
    """True/false positives and negatives, and per attack type (attack rows, detected attack rows)."""

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0
    per_class: dict[str, list[int]] = field(default_factory=dict)

    def update(self, y_true: np.ndarray, y_pred: np.ndarray, attack_type: np.ndarray) -> None:
        y_true = np.asarray(y_true, dtype=bool)
        y_pred = np.asarray(y_pred, dtype=bool)
        attack_type = np.asarray(attack_type, dtype=object)
        if not (y_true.shape == y_pred.shape == attack_type.shape):
            raise ValueError(f"shapes differ: {y_true.shape}, {y_pred.shape}, {attack_type.shape}")
        self.tp += int(np.sum(y_true & y_pred))
        self.fp += int(np.sum(~y_true & y_pred))
        self.tn += int(np.sum(~y_true & ~y_pred))
        self.fn += int(np.sum(y_true & ~y_pred))
        if y_true.any():
            kinds, inverse = np.unique(attack_type[y_true].astype(str), return_inverse=True)
            totals = np.bincount(inverse, minlength=len(kinds))
            hits = np.bincount(inverse, weights=y_pred[y_true], minlength=len(kinds))
            for kind, total, hit in zip(kinds, totals, hits, strict=True):
                counts = self.per_class.setdefault(str(kind), [0, 0])
                counts[0] += int(total)
                counts[1] += int(hit)

    def metrics(self) -> dict:
        adr = _ratio(self.tp, self.tp + self.fn)
        precision = _ratio(self.tp, self.tp + self.fp)
        f1 = 2 * precision * adr / (precision + adr) if precision + adr > 0 else float("nan")
        return {
            "adr": adr,
            "fpr": _ratio(self.fp, self.fp + self.tn),
            "precision": precision,
            "f1": f1,
            "per_class_recall": {k: _ratio(v[1], v[0]) for k, v in sorted(self.per_class.items())},
            "per_class_support": {k: v[0] for k, v in sorted(self.per_class.items())},
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
        }


def detection_metrics(y_true: np.ndarray, y_pred: np.ndarray, attack_type: np.ndarray) -> dict:
    """ADR, FPR, precision, F1, per-class recall (attack type -> recall over that type's attack rows)."""
    counts = ConfusionCounts()
    counts.update(y_true, y_pred, attack_type)
    return counts.metrics()
