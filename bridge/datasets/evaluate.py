"""Evaluation of a cross-layer detector on a dataset file, in bounded memory.

Features: the loader's features the file has; with ``--train/--test`` files, the features both files
have (a 12-column Bot-IoT projection and the full schema share their 11 flow statistics).

Split (seeded, grouped by feature vector): each row gets ``u`` in [0, 1) from a hash of its feature
vector and the split seed, so identical feature vectors get the same ``u`` and never straddle the split;
rows with ``u >= train_fraction`` form the test split, rows with ``u < train_fraction`` the training
split, thinned to at most about ``max_train_rows`` (rows with ``u < train_fraction * keep``, ``keep`` from
a first counting pass). With ``--train/--test`` files, the test file is the test split (its records whose
feature vector is also in the training rows are left out and counted) and the training file is thinned
the same way. Metrics count each distinct test record (features, label, attack type) once, with its
first verdict, and give ADR, FPR, precision and F1 with Wilson 95 % intervals and n
(``qesif_core.qids.metrics``). The file is read three times in chunks: count, collect the training rows,
predict the test rows (metrics accumulated per chunk; 8 bytes per distinct test record), so memory is
bounded by ``max_train_rows`` plus one chunk and the record keys, whatever the file size.

Quantum score (optional ``channel``): one QKD link trace per gateway from the built-in engine
(``qesif_core.qkd.trace.link_trace``), Algorithm 2 calibrated as in a run (``calibration``: each link's
benign-noise model from its own trace of the channel without the attacker, ``link-baseline``, or one
model from the separate clean trace, ``noise-free``; H-bar_q and QBER_ref from that clean trace); a flow
gets the margin of its gateway (device-key hash) at the block of its record position (record i of N falls
in block ``floor(i * n_blocks / N)``), because the datasets' timestamps are missing or partial in several
releases.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bridge.datasets import (
    DEFAULT_CHUNKSIZE,
    FEATURE_PREFIX,
    dataset_module,
    iter_synthetic_chunks,
    open_dataset,
    synthetic_header,
)
from bridge.datasets.base import csv_chunks
from qesif_core.errors import UserInputError
from qesif_core.qids import anomaly
from qesif_core.qids.anomaly import CALIBRATION_MODES
from qesif_core.qids.flows import record_keys, vector_keys
from qesif_core.qids.fusion import CrossLayerDetector, DetectorSpec, quantum_score_for_flows
from qesif_core.qids.metrics import ConfusionCounts, SeenKeys

DEFAULT_SPEC = DetectorSpec(classifier="random_forest", uses_quantum_score=False, fusion="none")


@dataclass(frozen=True)
class QuantumSetting:
    """The QKD channel the gateways' links see during the evaluation, and Algorithm 2's parameters."""

    channel: str
    n_gateways: int = 10
    n_blocks: int = 100
    pulses_per_block: int = 1_000_000
    params: anomaly.QidsParams = field(default_factory=anomaly.QidsParams)
    calibration: str = "link-baseline"

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATION_MODES:
            raise UserInputError(
                f"--calibration: unknown mode {self.calibration!r}; known: {', '.join(CALIBRATION_MODES)}"
            )


@dataclass(frozen=True)
class EvaluationSetup:
    dataset: str
    path: str | None = None
    train_path: str | None = None
    test_path: str | None = None
    seed: int = 0
    train_fraction: float = 0.7
    max_train_rows: int = 100_000
    chunksize: int = DEFAULT_CHUNKSIZE
    synthetic_rows: int = 20_000
    spec: DetectorSpec = DEFAULT_SPEC
    quantum: QuantumSetting | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.train_fraction < 1.0:
            raise UserInputError(f"--train-fraction must be in (0, 1), got {self.train_fraction!r}")
        if self.max_train_rows < 1:
            raise UserInputError(f"--max-train-rows must be >= 1, got {self.max_train_rows!r}")
        if (self.train_path is None) != (self.test_path is None):
            raise UserInputError("--train and --test go together")
        if self.path is not None and self.train_path is not None:
            raise UserInputError("give either --path or --train/--test, not both")


Source = Callable[[], Iterator[pd.DataFrame]]


def _count_rows(path: str, dataset: str, chunksize: int) -> int:
    open_dataset(dataset, path)
    total = 0
    for chunk in csv_chunks(path, chunksize, usecols=[0], dtype=str):
        total += len(chunk)
    return total


def _file_source(dataset: str, path: str, chunksize: int) -> Source:
    data = open_dataset(dataset, path)
    return lambda: data.chunks(chunksize)


def _positions(chunks: Iterator[pd.DataFrame]) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    start = 0
    for chunk in chunks:
        yield chunk, np.arange(start, start + len(chunk))
        start += len(chunk)


_MIX_1, _MIX_2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def group_uniform(keys: np.ndarray, seed: int) -> np.ndarray:
    """A number in [0, 1) per row, the same for equal ``keys`` (feature-vector hashes) and a given seed:
    the splitmix64 finaliser of ``key xor seed``, top 53 bits."""
    x = np.asarray(keys, dtype=np.uint64) ^ np.uint64(seed % 2**64)
    x = (x ^ (x >> np.uint64(30))) * _MIX_1
    x = (x ^ (x >> np.uint64(27))) * _MIX_2
    x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


def _collect_train(source: Source, columns: list[str], split_seed: int, threshold: float) -> pd.DataFrame:
    """The rows whose split draw is below ``threshold`` (the same draws the test pass makes)."""
    parts = [chunk[group_uniform(vector_keys(chunk, columns), split_seed) < threshold] for chunk in source()]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _feature_columns(setup: EvaluationSetup) -> list[str]:
    """The ``feat_*`` columns of the evaluation: the file's, or those both the training and test file have."""
    if setup.path is None and setup.train_path is None:
        header = synthetic_header(setup.dataset)
        names = dataset_module(setup.dataset).choose_variant(header).features_in(header)
    elif setup.path is not None:
        names = open_dataset(setup.dataset, setup.path).features
    else:
        train = open_dataset(setup.dataset, setup.train_path).features
        test = open_dataset(setup.dataset, setup.test_path).features
        names = [c for c in train if c in test]
        if not names:
            raise UserInputError(
                f"--train {setup.train_path} and --test {setup.test_path} share no feature column "
                f"(training: {', '.join(train)}; test: {', '.join(test)})"
            )
    return [FEATURE_PREFIX + c for c in names]


def _quantum_margins(setting: QuantumSetting, seed: int) -> anomaly.QidsResult:
    from qesif_core.qkd.channel import preset
    from qesif_core.qkd.trace import link_trace

    rng = np.random.default_rng([seed, 0x51D5])
    clean, attacked, commissioning = rng.spawn(3)
    calibration = anomaly.calibrate(
        [link_trace(preset("clean"), setting.n_blocks, setting.pulses_per_block, clean)], setting.params
    )
    channel = preset(setting.channel)
    if setting.calibration == "link-baseline":
        benign = dataclasses.replace(channel, eve="none", eve_fraction=0.0)
        calibration = [
            anomaly.calibrate_link(
                calibration,
                [link_trace(benign, setting.n_blocks, setting.pulses_per_block, child)],
                setting.params,
            )
            for child in commissioning.spawn(setting.n_gateways)
        ]
    traces = [
        link_trace(channel, setting.n_blocks, setting.pulses_per_block, child)
        for child in attacked.spawn(setting.n_gateways)
    ]
    return anomaly.detect(traces, calibration, setting.params)


def evaluate(setup: EvaluationSetup) -> dict:
    """Train on the training split, test on the held-out rows; returns metrics and the split used."""
    seed_rng = np.random.default_rng(setup.seed)
    split_seed, model_seed, synth_seed = (int(s) for s in seed_rng.integers(2**63, size=3))
    synthetic = setup.path is None and setup.train_path is None
    if synthetic:
        n_total = setup.synthetic_rows

        def source() -> Iterator[pd.DataFrame]:
            return iter_synthetic_chunks(
                setup.dataset, n_total, np.random.default_rng(synth_seed), setup.chunksize
            )

        train_source, test_source = source, source
        n_test_file = n_total
    elif setup.path is not None:
        n_total = _count_rows(setup.path, setup.dataset, setup.chunksize)
        train_source = test_source = _file_source(setup.dataset, setup.path, setup.chunksize)
        n_test_file = n_total
    else:
        n_total = _count_rows(setup.train_path, setup.dataset, setup.chunksize)
        n_test_file = _count_rows(setup.test_path, setup.dataset, setup.chunksize)
        train_source = _file_source(setup.dataset, setup.train_path, setup.chunksize)
        test_source = _file_source(setup.dataset, setup.test_path, setup.chunksize)
    separate = setup.train_path is not None
    columns = _feature_columns(setup)
    fraction = 1.0 if separate else setup.train_fraction
    keep = min(1.0, setup.max_train_rows / max(fraction * n_total, 1.0))
    train = _collect_train(train_source, columns, split_seed, fraction * keep)
    if len(train) == 0:
        raise UserInputError(f"{setup.dataset}: the training split is empty ({n_total} rows in all)")

    detector = CrossLayerDetector(setup.spec, np.random.default_rng(model_seed)).fit(train, columns)
    n_train = len(train)
    train_counts = train["attack_type"].value_counts().to_dict()
    train_vectors = np.unique(vector_keys(train, columns)) if separate else None
    del train

    margins = _quantum_margins(setup.quantum, setup.seed) if setup.quantum is not None else None
    counts = ConfusionCounts()
    seen = SeenKeys()
    n_test_rows = n_in_training = 0
    n_positions = max(n_test_file, 1)
    for chunk, position in _positions(test_source()):
        vectors = vector_keys(chunk, columns)
        if separate:
            in_training = np.isin(vectors, train_vectors)
            n_in_training += int(in_training.sum())
            mask = ~in_training
        else:
            mask = group_uniform(vectors, split_seed) >= setup.train_fraction
        n_test_rows += int(mask.sum())
        mask[mask] = seen.first_seen(record_keys(chunk[mask], columns))
        test = chunk[mask]
        if len(test) == 0:
            continue
        quantum_score = None
        if margins is not None:
            blocks = np.floor(position[mask] * margins.score.shape[1] / n_positions).astype(np.int64)
            quantum_score = quantum_score_for_flows(test, margins, blocks)
        prediction = detector.predict(test, quantum_score)
        counts.update(test["label"].to_numpy(), prediction, test["attack_type"].to_numpy())

    result = counts.metrics()
    result.update(
        {
            "dataset": setup.dataset,
            "path": setup.path,
            "train_path": setup.train_path,
            "test_path": setup.test_path,
            "synthetic": synthetic,
            "features": [c[len(FEATURE_PREFIX) :] for c in columns],
            "n_train": n_train,
            "n_test": result["n_attack_test"] + result["n_benign_test"],
            "n_test_rows": n_test_rows,
            "n_test_rows_in_training": n_in_training if separate else 0,
            "n_rows": n_total if not separate else None,
            "train_attack_types": {str(k): int(v) for k, v in sorted(train_counts.items())},
            "split": {
                "kind": "separate files" if separate else "grouped by feature vector, seeded",
                "train_fraction": None if separate else setup.train_fraction,
                "max_train_rows": setup.max_train_rows,
                "train_thinning": keep,
                "seed": setup.seed,
            },
            "classifier": setup.spec.classifier,
            "fusion": setup.spec.fusion,
            "uses_quantum_score": setup.spec.uses_quantum_score,
            "channel": setup.quantum.channel if setup.quantum is not None else None,
            "calibration": setup.quantum.calibration if setup.quantum is not None else None,
        }
    )
    if setup.quantum is not None:
        result["quantum_flagged_block_fraction"] = float(margins.flags.mean())
    return result
