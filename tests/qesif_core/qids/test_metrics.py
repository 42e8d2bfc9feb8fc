import math

import numpy as np
import pytest

from qesif_core.qids.metrics import ConfusionCounts, detection_metrics


def test_metrics_by_hand():
    y_true = np.array([1, 1, 1, 0, 0, 1], dtype=bool)
    y_pred = np.array([1, 0, 1, 1, 0, 1], dtype=bool)
    kinds = np.array(["ddos", "ddos", "xss", "normal", "normal", "xss"], dtype=object)
    m = detection_metrics(y_true, y_pred, kinds)
    assert m["adr"] == pytest.approx(3 / 4)
    assert m["fpr"] == pytest.approx(1 / 2)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(3 / 4)
    assert m["per_class_recall"] == {"ddos": 0.5, "xss": 1.0}
    assert m["per_class_support"] == {"ddos": 2, "xss": 2}


def test_chunked_accumulation_equals_one_shot(rng):
    y_true = rng.random(1000) < 0.4
    y_pred = rng.random(1000) < 0.5
    kinds = np.where(y_true, rng.choice(["a", "b", "c"], 1000), "normal").astype(object)
    counts = ConfusionCounts()
    for part in np.array_split(np.arange(1000), 7):
        counts.update(y_true[part], y_pred[part], kinds[part])
    assert counts.metrics() == detection_metrics(y_true, y_pred, kinds)


def test_undefined_ratios_are_nan_not_invented():
    m = detection_metrics(np.zeros(3, bool), np.zeros(3, bool), np.array(["normal"] * 3, dtype=object))
    assert math.isnan(m["adr"]) and math.isnan(m["precision"]) and m["fpr"] == 0.0
    assert m["per_class_recall"] == {}
