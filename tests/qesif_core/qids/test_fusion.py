import numpy as np
import pandas as pd
import pytest

from qesif_core.errors import UserInputError
from qesif_core.qids.anomaly import QidsResult
from qesif_core.qids.fusion import (
    BOOSTED_FLOW_THRESHOLD,
    FLOW_THRESHOLD,
    CrossLayerDetector,
    DetectorSpec,
    alerts_by_gateway,
    block_of,
    correlate_gateways,
    gateway_of,
    quantum_score_for_flows,
)


def flows_with(rng, n=300):
    label = rng.random(n) < 0.5
    return pd.DataFrame(
        {
            "device_key": [f"dev{i % 7}" for i in range(n)],
            "ts": np.arange(n, dtype=float),
            "bytes_out": np.where(label, 5000.0, 50.0) * rng.uniform(0.8, 1.2, n),
            "bytes_in": 1.0, "pkts_out": 1.0, "pkts_in": 1.0, "duration": 1.0, "protocol": "tcp",
            "label": label, "attack_type": np.where(label, "ddos", "normal"),
        }
    )  # fmt: skip


@pytest.mark.parametrize(
    "spec",
    [("svm", False, "none"), ("random_forest", False, "max"), ("random_forest", True, "none"),
     ("random_forest", False, "or")],
)  # fmt: skip
def test_invalid_specs_are_user_errors(spec):
    with pytest.raises(UserInputError):
        DetectorSpec(*spec)


def test_fusion_rules_combine_flow_and_quantum_evidence(rng):
    train, test = flows_with(rng), flows_with(rng)
    flow_only = CrossLayerDetector(DetectorSpec("decision_tree", False, "none"), rng).fit(train)
    base = flow_only.predict(test)
    assert np.array_equal(base, test["label"].to_numpy())
    quantum = np.where(np.arange(len(test)) % 3 == 0, 0.5, -0.5)
    quantum[1] = np.nan
    flagged = quantum >= 0
    for rule, expected in (("or", base | flagged), ("and", base & flagged), ("quantum", flagged)):
        detector = CrossLayerDetector(DetectorSpec("decision_tree", True, rule), np.random.default_rng(1))
        got = detector.fit(train).predict(test, quantum)
        np.testing.assert_array_equal(got, expected)
    no_score = CrossLayerDetector(DetectorSpec("decision_tree", True, "or"), np.random.default_rng(1))
    np.testing.assert_array_equal(no_score.fit(train).predict(test, None), base)
    # the flow-only rule ignores a quantum score even when one is given
    np.testing.assert_array_equal(flow_only.predict(test, np.ones(len(test))), base)


def test_boost_lowers_the_flow_threshold_on_flagged_links_only(rng):
    def overlapping(n=400):  # classes that overlap, so that P(attack) takes intermediate values
        flows = flows_with(rng, n)
        flows["bytes_out"] = np.where(flows["label"], 200.0, 100.0) * rng.lognormal(0.0, 0.7, n)
        return flows

    train, test = overlapping(), overlapping()
    detector = CrossLayerDetector(
        DetectorSpec("logistic_regression", True, "boost"), np.random.default_rng(2)
    )
    detector.fit(train)
    probability = detector.flow.attack_probability(test)
    assert ((probability >= 0.3) & (probability < 0.5)).any()  # the test exercises the boosted band
    quantum = np.where(np.arange(len(test)) % 2 == 0, 0.1, -0.1)
    quantum[3] = np.nan  # no evidence: the ordinary threshold
    flagged = quantum >= 0
    expected = np.where(flagged, probability >= BOOSTED_FLOW_THRESHOLD, probability >= FLOW_THRESHOLD)
    got = detector.predict(test, quantum)
    np.testing.assert_array_equal(got, expected)
    # a flagged link never turns a record the classifier is sure about (p < 0.3) into an attack
    assert not got[flagged & (probability < BOOSTED_FLOW_THRESHOLD)].any()
    np.testing.assert_array_equal(detector.predict(test, None), probability >= FLOW_THRESHOLD)
    # the boosted threshold is a parameter: 0.4 flags fewer flagged-link records than 0.3, the ordinary
    # threshold makes boost the flow-only rule
    stricter = CrossLayerDetector(
        DetectorSpec("logistic_regression", True, "boost"), np.random.default_rng(2), boosted_threshold=0.4
    ).fit(train)
    np.testing.assert_array_equal(
        stricter.predict(test, quantum), np.where(flagged, probability >= 0.4, probability >= FLOW_THRESHOLD)
    )
    plain = CrossLayerDetector(
        DetectorSpec("logistic_regression", True, "boost"),
        np.random.default_rng(2),
        boosted_threshold=FLOW_THRESHOLD,
    ).fit(train)
    np.testing.assert_array_equal(plain.predict(test, quantum), probability >= FLOW_THRESHOLD)
    for bad in (0.0, 0.6, float("nan")):
        with pytest.raises(UserInputError, match="boosted_flow_threshold"):
            CrossLayerDetector(DetectorSpec("logistic_regression", True, "boost"), rng, boosted_threshold=bad)


def test_flows_pick_their_gateway_link_and_block():
    flows = pd.DataFrame({"device_key": ["a", "b", "a"], "ts": [100.0, 105.0, np.nan]})
    score = np.arange(12, dtype=float).reshape(3, 4)
    result = QidsResult(score, np.full((3, 4), 5.0), score >= 5.0)
    blocks = block_of(flows["ts"].to_numpy(), 4, 2.0)
    assert blocks.tolist() == [0, 2, 2]  # NaN ts: record position 2 of 3 -> block floor(2 * 4 / 3)
    gateway = gateway_of(flows["device_key"], 3)
    margins = quantum_score_for_flows(flows, result, blocks)
    np.testing.assert_array_equal(margins, score[gateway, blocks] - 5.0)
    assert gateway[0] == gateway[2]


def test_control_centre_flags_only_coordinated_anomalies():
    flags = np.zeros((4, 6), dtype=bool)
    flags[0, 1] = True  # one noisy link alone
    flags[1, 4] = flags[2, 4] = True  # two gateways at once
    flags[3, 2] = True
    assert correlate_gateways(flags, min_gateways=2, window=1).tolist() == [0, 0, 0, 0, 1, 0]
    assert correlate_gateways(flags, min_gateways=2, window=2).tolist() == [0, 0, 1, 0, 1, 1]


def test_alerts_by_gateway_marks_alerting_blocks():
    flows = pd.DataFrame({"device_key": ["a", "a", "b"], "ts": [0.0, 3.0, 3.0]})
    alerts = alerts_by_gateway(flows, np.array([True, False, True]), 5, 4, 1.0)
    gw = gateway_of(flows["device_key"], 5)
    assert alerts.sum() == 2 and alerts[gw[0], 0] and alerts[gw[2], 3]
