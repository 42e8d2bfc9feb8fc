"""Quantum anomaly score (Eq. 3), threshold update (Eq. 4) and Algorithm 2 of the paper, per gateway link
per QKD block, vectorised over ``links x blocks``.

Model (docs/qids.md has the long form):

- Eq. (3): ``A_q(t) = w1*|H_q(t) - Hbar_q| + w2*QBER(t)/QBER_ref + w3*Lambda_K(t)``. ``H_q`` and ``QBER`` come
  from the QKD trace (``qesif_core.qkd.trace.link_trace`` columns ``h_q``, ``qber``). ``Lambda_K(t)`` is the
  fraction of the last ``key_drop_window`` blocks (t included) whose key was dropped (``secret_bits <= 0``).
- ``Hbar_q``, ``QBER_ref`` are the means of ``h_q`` and ``qber`` over clean (noise-free) calibration traces.
- Eq. (4), implemented as written, sign included:
  ``alpha^{t+1} = alpha^t + eta * dA_q/dt * (1 - P_n(t))`` with a backward finite difference
  ``dA_q/dt = (A_q(t) - A_q(t-1)) / block_duration``, then clamped to ``[alpha_min, alpha_max]``.
  Because the sign is kept, a sudden rise of the score *raises* the threshold, which delays detection of an
  attack onset; the clamp (``alpha_max``) bounds how far. The ROC (:func:`roc_curve`) shows the effect.
- ``P_n(t)``, the probability that benign quantum noise produces a score at least ``A_q(t)``, is learned from
  benign baselines as the mean ``m`` and standard deviation ``s`` of ``A_q`` on benign traces, and
  evaluated with Cantelli's one-sided bound: ``P_n = 1`` for ``A_q <= m``, else ``1 / (1 + ((A_q - m)/s)^2)``.
  It needs no distributional assumption and only IEEE-exact operations (the twins agree bit for bit).
  :func:`calibrate` learns ``m, s`` from the clean traces themselves (the paper-literal reading);
  :func:`calibrate_link` keeps ``Hbar_q``, ``QBER_ref`` of a noise-free calibration and learns ``m, s`` from
  one link's own benign (commissioning) traces, so that a link noisy by nature is judged against its noise.
- Algorithm 2 flags block t when ``A_q(t) >= alpha^{t+1}``. A block with a NaN input is never flagged and
  leaves the threshold and the finite-difference memory untouched.
- Threshold start and clamp range default to ``m + k*s`` for configured ``k`` (``alpha_*_sigmas``), per link
  when the links have their own calibrations; absolute values (``alpha_start``, ``alpha_min``,
  ``alpha_max``) override them for every link.

The hot loop is ``_anomaly.pyx`` with the pure twin ``_anomaly_py.py``, chosen by ``qesif_core._native``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from qesif_core import _native
from qesif_core.errors import UserInputError

if TYPE_CHECKING:  # numpy and pandas are imported where used (slow to import; validation needs neither)
    import numpy as np
    import pandas as pd

#: Trace columns Algorithm 2 reads (a subset of ``qesif_core.qkd.trace.link_trace``'s columns).
TRACE_COLUMNS = ("h_q", "qber", "secret_bits")
#: Smallest QBER_ref and noise standard deviation accepted, so that ratios stay finite.
MIN_QBER_REF = 1e-6
MIN_NOISE_STD = 1e-9
#: Number of ROC operating points when they are chosen from the data.
ROC_POINTS = 41
#: Where a run's benign-noise model comes from: each link's own benign baseline (:func:`calibrate_link`),
#: or the noise-free trials for every link (:func:`calibrate` alone, paper-literal). docs/qids.md.
CALIBRATION_MODES = ("link-baseline", "noise-free")


@dataclass(frozen=True)
class QidsParams:
    """Configuration of Algorithm 2 (Eq. 3 weights, Eq. 4 learning rate, threshold range)."""

    weights: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)
    eta: float = 0.5
    key_drop_window: int = 10
    block_duration: float = 1.0
    alpha_start_sigmas: float = 4.0
    alpha_min_sigmas: float = 3.0
    alpha_max_sigmas: float = 10.0
    alpha_start: float | None = None
    alpha_min: float | None = None
    alpha_max: float | None = None

    def __post_init__(self) -> None:
        if len(self.weights) != 3 or any(not math.isfinite(w) or w < 0 for w in self.weights):
            raise UserInputError(f"qids.weights: need three non-negative numbers, got {self.weights!r}")
        if abs(sum(self.weights) - 1.0) > 1e-9:
            raise UserInputError(f"qids.weights: must sum to 1 (paper, Eq. 3), got {sum(self.weights)!r}")
        if not math.isfinite(self.eta) or self.eta < 0:
            raise UserInputError(f"qids.eta: must be a finite number >= 0, got {self.eta!r}")
        if int(self.key_drop_window) != self.key_drop_window or self.key_drop_window < 1:
            raise UserInputError(
                f"qids.key_drop_window: must be an integer >= 1, got {self.key_drop_window!r}"
            )
        if not math.isfinite(self.block_duration) or self.block_duration <= 0:
            raise UserInputError(f"qids.block_duration: must be > 0, got {self.block_duration!r}")
        if self.alpha_min_sigmas > self.alpha_max_sigmas:
            raise UserInputError(
                f"qids.alpha_min_sigmas ({self.alpha_min_sigmas!r}) exceeds alpha_max_sigmas "
                f"({self.alpha_max_sigmas!r})"
            )
        if self.alpha_min is not None and self.alpha_max is not None and self.alpha_min > self.alpha_max:
            raise UserInputError(
                f"qids.alpha_min ({self.alpha_min!r}) exceeds qids.alpha_max ({self.alpha_max!r})"
            )


@dataclass(frozen=True)
class Calibration:
    """Hbar_q and QBER_ref (from noise-free traces) and the benign score mean/std of the P_n model."""

    hbar_q: float
    qber_ref: float
    noise_mean: float
    noise_std: float
    n_blocks: int

    def thresholds(self, params: QidsParams) -> tuple[float, float, float]:
        """(start, min, max) of the detection threshold for these baselines."""

        def pick(absolute: float | None, sigmas: float) -> float:
            return float(absolute) if absolute is not None else self.noise_mean + sigmas * self.noise_std

        low = pick(params.alpha_min, params.alpha_min_sigmas)
        high = pick(params.alpha_max, params.alpha_max_sigmas)
        if low > high:
            raise UserInputError(f"qids threshold range is empty: alpha_min {low!r} > alpha_max {high!r}")
        start = min(max(pick(params.alpha_start, params.alpha_start_sigmas), low), high)
        return start, low, high


@dataclass(frozen=True)
class QidsResult:
    """Algorithm 2 output per link x block: A_q(t), alpha^{t+1} and the flag."""

    score: np.ndarray
    threshold: np.ndarray
    flags: np.ndarray


def _kernel(impl: str | None) -> ModuleType:
    return _native.load("qesif_core.qids._anomaly", "qesif_core.qids._anomaly_py", impl)


def _check_trace(trace: pd.DataFrame, where: str) -> None:
    missing = [c for c in TRACE_COLUMNS if c not in trace.columns]
    if missing:
        raise UserInputError(f"{where}: QKD trace lacks column(s) {', '.join(missing)}")


def stack_traces(traces: Sequence[pd.DataFrame], column: str) -> np.ndarray:
    """``links x blocks`` float64 matrix of one trace column; shorter traces are padded with NaN."""
    import numpy as np

    n_blocks = max((len(t) for t in traces), default=0)
    out = np.full((len(traces), n_blocks), np.nan)
    for i, trace in enumerate(traces):
        out[i, : len(trace)] = trace[column].to_numpy(dtype=np.float64)
    return out


def key_drop_ratio(secret_bits: np.ndarray, window: int) -> np.ndarray:
    """Lambda_K(t): dropped / attempted keys over the last ``window`` blocks (t included), per link.

    A block attempts one key; it is dropped when no secret bits survive (``secret_bits <= 0``). NaN blocks
    (padding, missing data) attempt nothing; a window with no attempt gives NaN.
    """
    import numpy as np

    secret_bits = np.asarray(secret_bits, dtype=np.float64)
    attempted = np.isfinite(secret_bits).astype(np.int64)
    dropped = (np.nan_to_num(secret_bits, nan=1.0) <= 0).astype(np.int64)
    pad = np.zeros((secret_bits.shape[0], 1), dtype=np.int64)
    cum_attempted = np.concatenate([pad, np.cumsum(attempted, axis=1)], axis=1)
    cum_dropped = np.concatenate([pad, np.cumsum(dropped, axis=1)], axis=1)
    hi = np.arange(1, secret_bits.shape[1] + 1)
    lo = np.maximum(hi - window, 0)
    n_attempted = cum_attempted[:, hi] - cum_attempted[:, lo]
    n_dropped = cum_dropped[:, hi] - cum_dropped[:, lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_attempted > 0, n_dropped / np.maximum(n_attempted, 1), np.nan)


def anomaly_score(
    h_q: np.ndarray,
    qber: np.ndarray,
    key_drop: np.ndarray,
    hbar_q: float,
    qber_ref: float,
    params: QidsParams,
) -> np.ndarray:
    """Eq. (3) alone, vectorised (used for calibration; the hot loop computes it identically)."""
    import numpy as np

    w1, w2, w3 = params.weights
    inv_ref = 1.0 / qber_ref
    return w1 * np.abs(h_q - hbar_q) + w2 * (qber * inv_ref) + w3 * key_drop


def _stacked(traces: Sequence[pd.DataFrame], params: QidsParams, what: str) -> tuple[np.ndarray, ...]:
    """(h_q, qber, key_drop, finite) matrices of calibration traces; errors name ``what``."""
    import numpy as np

    if not traces:
        raise UserInputError(f"qids calibration: no {what} trace given")
    for i, trace in enumerate(traces):
        _check_trace(trace, f"{what} calibration trace {i}")
    h_q = stack_traces(traces, "h_q")
    qber = stack_traces(traces, "qber")
    drop = key_drop_ratio(stack_traces(traces, "secret_bits"), params.key_drop_window)
    finite = np.isfinite(h_q) & np.isfinite(qber)
    if not finite.any():
        raise UserInputError(f"qids calibration: the {what} traces hold no finite h_q/qber block")
    return h_q, qber, drop, finite


def _benign_score_model(
    h_q: np.ndarray, qber: np.ndarray, drop: np.ndarray, hbar_q: float, qber_ref: float, params: QidsParams
) -> tuple[float, float]:
    """Mean and standard deviation (floored) of the Eq. (3) score over benign blocks: the P_n model."""
    import numpy as np

    scores = anomaly_score(h_q, qber, drop, hbar_q, qber_ref, params)
    scores = scores[np.isfinite(scores)]
    return float(np.mean(scores)), max(float(np.std(scores)), MIN_NOISE_STD)


def calibrate(clean_traces: Sequence[pd.DataFrame], params: QidsParams | None = None) -> Calibration:
    """Learn Hbar_q, QBER_ref and the benign score distribution (for P_n) from clean traces."""
    import numpy as np

    params = params or QidsParams()
    h_q, qber, drop, finite = _stacked(clean_traces, params, "clean")
    hbar_q = float(np.mean(h_q[finite]))
    qber_ref = max(float(np.mean(qber[finite])), MIN_QBER_REF)
    mean, std = _benign_score_model(h_q, qber, drop, hbar_q, qber_ref, params)
    return Calibration(hbar_q, qber_ref, mean, std, int(finite.sum()))


def calibrate_link(
    reference: Calibration, baseline_traces: Sequence[pd.DataFrame], params: QidsParams | None = None
) -> Calibration:
    """One link's calibration: ``reference``'s Hbar_q and QBER_ref (noise-free trials, as the paper says), and
    the benign-noise model of P_n (score mean and std, hence the threshold's start and clamp band) learned
    from that link's own benign traces (commissioning blocks without an attacker).

    A deployed IDS learns "benign" from the link it guards: a link that is noisy by nature (7% QBER) scores
    far above a clean one on every block, and would be flagged throughout against a clean baseline.
    """
    params = params or QidsParams()
    h_q, qber, drop, finite = _stacked(baseline_traces, params, "baseline")
    mean, std = _benign_score_model(h_q, qber, drop, reference.hbar_q, reference.qber_ref, params)
    return Calibration(reference.hbar_q, reference.qber_ref, mean, std, int(finite.sum()))


def run_matrices(
    h_q: np.ndarray,
    qber: np.ndarray,
    key_drop: np.ndarray,
    calibration: Calibration | Sequence[Calibration],
    params: QidsParams | None = None,
    impl: str | None = None,
) -> QidsResult:
    """Algorithm 2 on ``links x blocks`` matrices; one calibration for all links or one per link (each link
    then has its own P_n model, threshold start and clamp band)."""
    import numpy as np

    params = params or QidsParams()
    h_q = np.ascontiguousarray(h_q, dtype=np.float64)
    qber = np.ascontiguousarray(qber, dtype=np.float64)
    key_drop = np.ascontiguousarray(key_drop, dtype=np.float64)
    if h_q.ndim != 2 or h_q.shape != qber.shape or h_q.shape != key_drop.shape:
        raise ValueError(f"h_q, qber, key_drop must be equal 2-D shapes, got {h_q.shape}, {qber.shape}")
    n_links = h_q.shape[0]
    cals = [calibration] * n_links if isinstance(calibration, Calibration) else list(calibration)
    if len(cals) != n_links:
        raise ValueError(f"{len(cals)} calibrations for {n_links} links")
    bounds = np.array([c.thresholds(params) for c in cals], dtype=np.float64).reshape(n_links, 3)
    w1, w2, w3 = params.weights
    score, threshold, flags = _kernel(impl).algorithm2(
        h_q,
        qber,
        key_drop,
        np.array([c.hbar_q for c in cals], dtype=np.float64),
        np.array([1.0 / c.qber_ref for c in cals], dtype=np.float64),
        np.array([c.noise_mean for c in cals], dtype=np.float64),
        np.array([1.0 / c.noise_std for c in cals], dtype=np.float64),
        np.ascontiguousarray(bounds[:, 0]),
        np.ascontiguousarray(bounds[:, 1]),
        np.ascontiguousarray(bounds[:, 2]),
        float(w1),
        float(w2),
        float(w3),
        float(params.eta),
        1.0 / float(params.block_duration),
    )
    return QidsResult(np.asarray(score), np.asarray(threshold), np.asarray(flags).astype(bool))


def detect(
    traces: Sequence[pd.DataFrame],
    calibration: Calibration | Sequence[Calibration],
    params: QidsParams | None = None,
    impl: str | None = None,
) -> QidsResult:
    """Algorithm 2 on one QKD trace per gateway link (rows = blocks); shorter traces are NaN-padded."""
    params = params or QidsParams()
    for i, trace in enumerate(traces):
        _check_trace(trace, f"trace of link {i}")
    drop = key_drop_ratio(stack_traces(traces, "secret_bits"), params.key_drop_window)
    return run_matrices(
        stack_traces(traces, "h_q"), stack_traces(traces, "qber"), drop, calibration, params, impl
    )


def roc_curve(
    calibration: Calibration,
    benign_traces: Sequence[pd.DataFrame],
    attack_traces: Sequence[pd.DataFrame],
    params: QidsParams | None = None,
    sigmas: Sequence[float] | np.ndarray | None = None,
    impl: str | None = None,
) -> pd.DataFrame:
    """ROC of Algorithm 2, one point per operating point, per block.

    The operating point is the threshold start ``m + k*s`` (k in ``sigmas``); the clamp band moves with it
    (its offsets from the start are those of ``params``). Without ``sigmas``, the starts are quantiles of
    all the scores (benign and attack), so the curve spans the data. TPR = flagged attack blocks / attack
    blocks, FPR = flagged benign blocks / benign blocks (NaN blocks excluded). Rows: k, alpha_start, fpr, tpr.
    """
    import numpy as np

    params = params or QidsParams()
    if sigmas is None:
        sigmas = _data_sigmas(calibration, [*benign_traces, *attack_traces], params)
    below = params.alpha_start_sigmas - params.alpha_min_sigmas
    above = params.alpha_max_sigmas - params.alpha_start_sigmas
    rows = []
    for k in sigmas:
        point = QidsParams(
            weights=params.weights,
            eta=params.eta,
            key_drop_window=params.key_drop_window,
            block_duration=params.block_duration,
            alpha_start_sigmas=float(k),
            alpha_min_sigmas=float(k) - below,
            alpha_max_sigmas=float(k) + above,
        )
        rates = []
        for traces in (benign_traces, attack_traces):
            result = detect(traces, calibration, point, impl)
            valid = np.isfinite(result.score)
            rates.append(float(result.flags[valid].mean()) if valid.any() else float("nan"))
        start = calibration.thresholds(point)[0]
        rows.append({"k": float(k), "alpha_start": start, "fpr": rates[0], "tpr": rates[1]})
    import pandas as pd

    return pd.DataFrame(rows)


def _data_sigmas(calibration: Calibration, traces: Sequence[pd.DataFrame], params: QidsParams) -> np.ndarray:
    import numpy as np

    drop = key_drop_ratio(stack_traces(traces, "secret_bits"), params.key_drop_window)
    scores = anomaly_score(
        stack_traces(traces, "h_q"),
        stack_traces(traces, "qber"),
        drop,
        calibration.hbar_q,
        calibration.qber_ref,
        params,
    )
    scores = scores[np.isfinite(scores)]
    if scores.size == 0:
        return np.zeros(1)
    starts = np.quantile(scores, np.linspace(0.0, 1.0, ROC_POINTS))
    starts = np.concatenate(
        [[starts[0] - calibration.noise_std], starts, [starts[-1] + calibration.noise_std]]
    )
    return np.unique((starts - calibration.noise_mean) / calibration.noise_std)


def roc_auc(roc: pd.DataFrame) -> float:
    """Area under the ROC (trapezoid through (0,0) and (1,1))."""
    import numpy as np

    points = sorted({(0.0, 0.0), (1.0, 1.0), *zip(roc["fpr"], roc["tpr"], strict=True)})
    fpr = np.array([p[0] for p in points])
    tpr = np.array([p[1] for p in points])
    return float(np.trapezoid(tpr, fpr))
