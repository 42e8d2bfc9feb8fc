import math

import numpy as np
import pytest

from qesif_core.qids.metrics import (
    ConfusionCounts,
    SeenKeys,
    detection_metrics,
    distinct_record_metrics,
    wilson_interval,
)


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


@pytest.mark.parametrize(
    "successes, n, low, high",
    [
        # by hand: the roots p of (k/n - p)^2 = z^2 p (1 - p) / n, z = 1.959964
        (8, 10, 0.490162, 0.943318),
        (0, 10, 0.0, 0.277533),
        (10, 10, 0.722467, 1.0),
        (1, 2, 0.094531, 0.905469),
        (95, 100, 0.88825, 0.978456),
    ],
)
def test_wilson_interval_against_hand_computed_values(successes, n, low, high):
    assert wilson_interval(successes, n) == pytest.approx((low, high), abs=1e-6)


def test_wilson_interval_of_nothing_is_undefined_and_bad_counts_are_rejected():
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_metrics_carry_intervals_and_their_n():
    y_true = np.array([1] * 10 + [0] * 20, dtype=bool)
    y_pred = np.array([1] * 8 + [0] * 2 + [1] * 2 + [0] * 18, dtype=bool)
    m = detection_metrics(y_true, y_pred, np.where(y_true, "ddos", "normal").astype(object))
    assert (m["n_attack_test"], m["n_benign_test"]) == (10, 20)
    assert m["adr_ci95"] == pytest.approx(list(wilson_interval(8, 10)))
    assert m["fpr_ci95"] == pytest.approx(list(wilson_interval(2, 20)))
    assert m["precision_ci95"] == pytest.approx(list(wilson_interval(8, 10)))
    low, high = m["f1_ci95"]
    assert low <= m["f1"] <= high
    p_low, p_high = wilson_interval(8, 10)  # precision and ADR share the interval here
    assert low == pytest.approx(p_low) and high == pytest.approx(p_high)


def test_replayed_records_count_once_by_the_majority_of_their_judgements():
    # record a (attack) judged 3 times, flagged twice; b (attack) twice, flagged once (tie: flagged);
    # c (benign) 4 times, flagged once; d (benign) once, flagged
    keys = np.array([1, 1, 1, 2, 2, 3, 3, 3, 3, 4], dtype=np.uint64)
    y_true = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    y_pred = np.array([1, 1, 0, 0, 1, 1, 0, 0, 0, 1], dtype=bool)
    kinds = np.where(y_true, "dos", "normal").astype(object)
    m = distinct_record_metrics(keys, y_true, y_pred, kinds)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 0, 1, 1)
    assert (m["n_attack_test"], m["n_benign_test"], m["judgements"]) == (2, 2, 10)
    assert m["adr"] == 1.0 and m["fpr"] == 0.5


def test_seen_keys_keeps_the_first_occurrence_across_chunks():
    seen = SeenKeys()
    first = seen.first_seen(np.array([5, 3, 5, 9], dtype=np.uint64))
    second = seen.first_seen(np.array([9, 1, 1, 3, 7], dtype=np.uint64))
    assert first.tolist() == [True, True, False, True]
    assert second.tolist() == [False, True, False, False, True]
