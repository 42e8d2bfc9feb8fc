"""The classical flow detector of the cross-layer Q-IDS: a scikit-learn classifier on flow-table features.

Features: the ``feat_*`` columns of the dataset loader, which declares them and the columns it never uses
(``bridge.datasets``: labels, identifiers, capture counters, addresses, ports, times, checksums). The
traffic columns of the common flow table repeat loader fields (bytes, packets, duration, protocol), so
they are features only of a flow table without ``feat_*`` columns. Device keys and timestamps are never
features (they identify the capture, not the behaviour). Each feature goes through
``sign(x) * log1p(|x|)`` (heavy-tailed byte counts) and NaN becomes -1 (a value the transform never
produces), so every classifier sees finite inputs.

Identical feature vectors are one record for the split and the metrics: :func:`vector_keys` hashes a
row's features (the group of a grouped split), :func:`record_keys` adds its label and attack type (a
distinct test record).

The random forest weights the classes inversely to their frequency (``class_weight="balanced"``): the
datasets hold 3 to 16 attack rows per benign one, and an unweighted forest trades false positives for a
few more detections.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from qesif_core.errors import UserInputError

if TYPE_CHECKING:  # numpy, scikit-learn and pandas are imported where used (they are slow to import)
    import numpy as np
    import pandas as pd
    from sklearn.base import ClassifierMixin

TRAFFIC_FEATURES = ("bytes_out", "bytes_in", "pkts_out", "pkts_in", "duration")
FEATURE_PREFIX = "feat_"
MISSING_VALUE = -1.0


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def _random_forest(rng: np.random.Generator) -> ClassifierMixin:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(
        n_estimators=100, min_samples_leaf=1, class_weight="balanced", n_jobs=1, random_state=_seed(rng)
    )


def _gradient_boosting(rng: np.random.Generator) -> ClassifierMixin:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=200, random_state=_seed(rng))


def _logistic_regression(rng: np.random.Generator) -> ClassifierMixin:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=_seed(rng)))


def _mlp(rng: np.random.Generator) -> ClassifierMixin:
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(),
        MLPClassifier(
            hidden_layer_sizes=(64, 32), max_iter=300, early_stopping=True, random_state=_seed(rng)
        ),
    )


def _decision_tree(rng: np.random.Generator) -> ClassifierMixin:
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(random_state=_seed(rng))


def _naive_bayes(rng: np.random.Generator) -> ClassifierMixin:
    from sklearn.naive_bayes import GaussianNB
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), GaussianNB())


#: Registry: name -> factory(rng) of an unfitted estimator (contracts.md item 2). Naive Bayes has no
#: randomness, so it draws nothing from the generator.
FLOW_CLASSIFIERS: dict[str, Callable[[np.random.Generator], ClassifierMixin]] = {
    "random_forest": _random_forest,
    "gradient_boosting": _gradient_boosting,
    "logistic_regression": _logistic_regression,
    "mlp": _mlp,
    "decision_tree": _decision_tree,
    "naive_bayes": _naive_bayes,
}


def make_classifier(name: str, rng: np.random.Generator) -> ClassifierMixin:
    if name not in FLOW_CLASSIFIERS:
        raise UserInputError(f"unknown flow classifier {name!r}; known: {', '.join(FLOW_CLASSIFIERS)}")
    return FLOW_CLASSIFIERS[name](rng)


def feature_columns(flows: pd.DataFrame) -> list[str]:
    """The feature columns of a flow table, in a fixed order: its ``feat_*`` columns, or, when it has none,
    the traffic columns and the protocol."""
    extra = sorted(c for c in flows.columns if c.startswith(FEATURE_PREFIX))
    if extra:
        return extra
    present = [c for c in TRAFFIC_FEATURES if c in flows.columns]
    return [*present, "protocol"] if "protocol" in flows.columns else present


def _row_hashes(frame: pd.DataFrame) -> np.ndarray:
    import numpy as np
    import pandas as pd

    return pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)


def vector_keys(flows: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """uint64 per row, equal exactly for rows whose ``columns`` are equal (NaN equals NaN): the group of a
    row in a grouped split, so identical feature vectors never straddle training and test."""
    return _row_hashes(flows[list(columns)].reset_index(drop=True))


def record_keys(flows: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """uint64 per row, equal for rows of equal features, label and attack type: one distinct record."""
    return _row_hashes(flows[[*columns, "label", "attack_type"]].reset_index(drop=True))


def feature_matrix(flows: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """float64 matrix of ``columns`` (missing columns raise), transformed as the module docstring says."""
    import numpy as np

    absent = [c for c in columns if c not in flows.columns]
    if absent:
        raise UserInputError(f"flow table lacks feature column(s) {', '.join(absent)} seen in training")
    import pandas as pd

    out = np.empty((len(flows), len(columns)), dtype=np.float64)
    for j, column in enumerate(columns):
        if column == "protocol":
            values = flows[column].astype(str)
            hashed = pd.util.hash_pandas_object(values, index=False).to_numpy()
            out[:, j] = (hashed % np.uint64(2**31)).astype(np.float64)
        else:
            out[:, j] = pd.to_numeric(flows[column], errors="coerce").to_numpy(dtype=np.float64)
    out = np.sign(out) * np.log1p(np.abs(out))
    out[~np.isfinite(out)] = MISSING_VALUE
    return out


class FlowDetector:
    """A named classifier trained on flow rows; ``attack_probability`` gives P(attack) per row."""

    def __init__(self, classifier: str, rng: np.random.Generator) -> None:
        self.classifier = classifier
        self.model = make_classifier(classifier, rng)
        self.columns: list[str] = []
        self.constant: bool | None = None

    def fit(self, flows: pd.DataFrame, columns: list[str] | None = None) -> FlowDetector:
        """Train on ``flows``, on ``columns`` (default: :func:`feature_columns`)."""
        if len(flows) == 0:
            raise UserInputError("the training split is empty")
        self.columns = list(columns) if columns is not None else feature_columns(flows)
        labels = flows["label"].to_numpy(dtype=bool)
        if labels.all() or not labels.any():
            # one class only (e.g. an attack-only capture): nothing to learn, predict that class
            self.constant = bool(labels[0])
            return self
        self.constant = None
        self.model.fit(feature_matrix(flows, self.columns), labels)
        return self

    def attack_probability(self, flows: pd.DataFrame) -> np.ndarray:
        import numpy as np

        if self.constant is not None:
            return np.full(len(flows), 1.0 if self.constant else 0.0)
        if not self.columns:
            raise RuntimeError("FlowDetector.fit was not called")
        proba = self.model.predict_proba(feature_matrix(flows, self.columns))
        classes = list(self.model.classes_)
        return proba[:, classes.index(True)]
