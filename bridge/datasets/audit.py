"""Leak audit of a dataset file: how well each column alone separates attack from benign rows.

For every candidate column (every column but the labels) a one-feature shallow tree
(``DecisionTreeClassifier(max_depth=4, class_weight="balanced")``) is trained on a seeded 70 % of the rows
and scored on the rest by balanced accuracy (the mean of the two classes' recalls: 0.5 is chance, 1.0 a
perfect separation whatever the class balance). A column whose present values are (at least 90 %)
numbers is split on its value (hex accepted, missing below every value); a text column on its values'
attack share among the training rows (unseen values get the overall share), which orders categories
without inventing an order. A column that alone reaches
:data:`SUSPECT_ACCURACY` is ``suspect``: one field that separates the classes is a capture artefact (row
order, an address, a counter) more often than a behaviour, and a detector that uses it learns the capture,
not the attack. ``used`` says whether the loader takes the column as a feature; the loader's reason for
leaving a column out (``NEVER_FEATURES``) is given beside it.

Large files are sampled: at most ``max_rows`` rows, each kept with the same probability (seeded).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score
from sklearn.tree import DecisionTreeClassifier

from bridge.datasets import DEFAULT_CHUNKSIZE, dataset_module, open_dataset
from bridge.datasets.base import MISSING_TOKENS, ChunkContext, csv_chunks, labels
from qesif_core.errors import UserInputError

#: Balanced accuracy of one column alone from which it is a suspect feature.
SUSPECT_ACCURACY = 0.99
TREE_DEPTH = 4
TRAIN_SHARE = 0.7
DEFAULT_MAX_ROWS = 200_000
DEFAULT_SYNTHETIC_ROWS = 5_000


@dataclass(frozen=True)
class ColumnScore:
    name: str
    balanced_accuracy: float
    used: bool
    suspect: bool
    reason: str | None


def _as_numbers(text: pd.Series) -> pd.Series | None:
    """The column as float64 (hex accepted, missing as NaN) when most of its present values are numbers."""
    present = ~text.isin(MISSING_TOKENS)
    if not present.any():
        return None
    values = pd.to_numeric(text.where(present), errors="coerce")
    hex_mask = present & values.isna() & text.str.match(r"^0[xX][0-9a-fA-F]+$")
    if hex_mask.any():
        values[hex_mask] = [float(int(v, 16)) for v in text[hex_mask]]
    if values.notna().sum() < 0.9 * present.sum():
        return None
    return values.astype(np.float64)


def _tree_score(x: np.ndarray, y: np.ndarray, train: np.ndarray, seed: int) -> float:
    tree = DecisionTreeClassifier(max_depth=TREE_DEPTH, class_weight="balanced", random_state=seed)
    tree.fit(x[train, None], y[train])
    return float(balanced_accuracy_score(y[~train], tree.predict(x[~train, None])))


def column_accuracy(text: pd.Series, y: np.ndarray, train: np.ndarray, seed: int) -> float:
    """Balanced accuracy of one column alone on the held-out rows (see the module docstring)."""
    text = text.astype(str).str.strip().reset_index(drop=True)
    numbers = _as_numbers(text)
    if numbers is not None:
        finite = numbers[np.isfinite(numbers)]
        floor = (finite.min() - 1.0) if len(finite) else -1.0
        return _tree_score(numbers.fillna(floor).to_numpy(), y, train, seed)
    share = pd.Series(y[train]).groupby(text[train].to_numpy()).mean()
    encoded = text.map(share).fillna(float(y[train].mean())).to_numpy(dtype=np.float64)
    return _tree_score(encoded, y, train, seed)


def _sample_rows(path: str, max_rows: int, seed: int, chunksize: int) -> pd.DataFrame:
    """All columns as text; at most about ``max_rows`` rows, each kept with the same probability."""
    read = {"dtype": str, "keep_default_na": False}
    total = sum(len(chunk) for chunk in csv_chunks(path, chunksize, usecols=[0], **read))
    keep = min(1.0, max_rows / max(total, 1))
    rng = np.random.default_rng([seed, 0xA0D17])
    parts = [chunk[rng.random(len(chunk)) < keep] for chunk in csv_chunks(path, chunksize, **read)]
    return pd.concat(parts, ignore_index=True)


def audit(
    dataset: str,
    path: str | None = None,
    seed: int = 0,
    max_rows: int = DEFAULT_MAX_ROWS,
    synthetic_rows: int = DEFAULT_SYNTHETIC_ROWS,
    chunksize: int = DEFAULT_CHUNKSIZE,
) -> dict:
    """Per candidate column: balanced accuracy alone, whether the loader uses it, whether it is suspect.

    Without ``path``, audits ``synthetic_rows`` rows of the dataset's generator.
    """
    module = dataset_module(dataset)
    if max_rows < 2 or synthetic_rows < 2:
        raise UserInputError(
            f"--max-rows and --synthetic-rows must be >= 2, got {max_rows}, {synthetic_rows}"
        )
    if path is None:
        raw = module.synthetic_raw(synthetic_rows, np.random.default_rng(seed))
        header = list(raw.columns)
        variant = module.choose_variant(header)
        source = f"<synthetic {dataset}>"
    else:
        data = open_dataset(dataset, path)
        header, variant = data.header, data.variant
        raw = _sample_rows(path, max_rows, seed, chunksize)
        source = path
    typed = raw.replace({token: np.nan for token in MISSING_TOKENS})
    truth = labels(typed, ChunkContext(source, 2), variant.label_column, variant.type_column)
    y = truth["label"].to_numpy(dtype=np.int64)
    if y.min() == y.max():
        raise UserInputError(
            f"{source}: every row is {'an attack' if y[0] else 'benign'}; the audit needs both"
        )
    train = np.random.default_rng([seed, 0x5D117]).random(len(y)) < TRAIN_SHARE
    if train.all() or not train.any():
        raise UserInputError(f"{source}: too few rows ({len(y)}) to hold some out")
    never: dict[str, str] = module.NEVER_FEATURES
    used = set(variant.features_in(header))
    scores = []
    for column in header:
        if never.get(column) == "label" or column in (variant.label_column, variant.type_column):
            continue
        accuracy = column_accuracy(raw[column], y, train, seed)
        scores.append(
            ColumnScore(column, accuracy, column in used, accuracy >= SUSPECT_ACCURACY, never.get(column))
        )
    scores.sort(key=lambda s: (-s.balanced_accuracy, s.name))
    return {
        "dataset": dataset,
        "path": path,
        "synthetic": path is None,
        "rows": len(y),
        "attack_rows": int(y.sum()),
        "suspect_accuracy": SUSPECT_ACCURACY,
        "features": [
            {
                "name": s.name,
                "balanced_accuracy": s.balanced_accuracy,
                "used": s.used,
                "suspect": s.suspect,
                "reason": s.reason,
            }
            for s in scores
        ],
    }


def used_suspects(result: dict) -> list[str]:
    """Names of the suspect columns the loader uses as features."""
    return [f["name"] for f in result["features"] if f["used"] and f["suspect"]]
