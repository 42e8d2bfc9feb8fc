"""Detection metrics of the paper's evaluation: ADR (attack detection rate) with the false-positive rate
always beside it, precision, F1 and recall per attack type, each rate with its n and a 95 % interval.

Intervals: Wilson score intervals (:func:`wilson_interval`) for ADR (n = attack records), FPR (n = benign
records) and precision (n = flagged records); F1, which is not a proportion, gets the F1 of the lower
bounds and of the upper bounds of ADR and precision (F1 increases in both, so the interval covers the true
F1 whenever both intervals cover theirs: at least 90 % by the union bound).

The records counted are distinct: a test split holds each distinct record (features, label and attack
type) once (:class:`SeenKeys` drops repeats while streaming), and a record judged several times, as when
a run replays held-out records round after round, counts once with the verdict of the majority of its
judgements (:func:`distinct_record_metrics`; a tie counts as flagged).

``ConfusionCounts`` accumulates chunk by chunk, so a test split of millions of rows never has to be held
in memory; ``detection_metrics`` is the one-shot form. Undefined ratios (no attack rows, nothing flagged)
are NaN, never a made-up 0 or 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

BENIGN = "normal"
#: Two-sided 95 % quantile of the standard normal distribution.
Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``successes / n``; (NaN, NaN) when n is 0."""
    if n <= 0:
        return (math.nan, math.nan)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n], got {successes} of {n}")
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else math.nan


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
        n_attack, n_benign, n_flagged = self.tp + self.fn, self.fp + self.tn, self.tp + self.fp
        adr = _ratio(self.tp, n_attack)
        precision = _ratio(self.tp, n_flagged)
        adr_ci = wilson_interval(self.tp, n_attack)
        precision_ci = wilson_interval(self.tp, n_flagged)
        return {
            "adr": adr,
            "fpr": _ratio(self.fp, n_benign),
            "precision": precision,
            "f1": _f1(precision, adr),
            "adr_ci95": list(adr_ci),
            "fpr_ci95": list(wilson_interval(self.fp, n_benign)),
            "precision_ci95": list(precision_ci),
            "f1_ci95": [_f1(precision_ci[0], adr_ci[0]), _f1(precision_ci[1], adr_ci[1])],
            "n_attack_test": n_attack,
            "n_benign_test": n_benign,
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


def distinct_record_metrics(
    keys: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, attack_type: np.ndarray
) -> dict:
    """Metrics over distinct records: ``keys`` names each judgement's record (equal keys, equal label and
    attack type); a record counts once, flagged when at least half its judgements flagged it.
    ``judgements`` in the result is the number of judgements behind them."""
    keys = np.asarray(keys)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    votes = np.bincount(inverse, weights=np.asarray(y_pred, dtype=np.float64), minlength=first.size)
    judged = np.bincount(inverse, minlength=first.size)
    counts = ConfusionCounts()
    counts.update(np.asarray(y_true)[first], 2 * votes >= judged, np.asarray(attack_type)[first])
    return {**counts.metrics(), "judgements": int(keys.size)}


class SeenKeys:
    """The record keys met so far (a sorted uint64 array: 8 bytes per distinct record), to count each
    distinct record once while streaming a test split."""

    def __init__(self) -> None:
        self._seen = np.empty(0, dtype=np.uint64)

    def first_seen(self, keys: np.ndarray) -> np.ndarray:
        """Mask of the rows whose key was not seen before (earlier chunks or earlier in this one)."""
        keys = np.asarray(keys, dtype=np.uint64)
        mask = np.zeros(keys.size, dtype=bool)
        if keys.size == 0:
            return mask
        unique, first = np.unique(keys, return_index=True)
        position = np.searchsorted(self._seen, unique)
        known = position < self._seen.size
        known[known] = self._seen[position[known]] == unique[known]
        mask[first[~known]] = True
        self._seen = np.union1d(self._seen, unique[~known])
        return mask
