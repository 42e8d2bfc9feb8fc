"""The run's flow split: grouped by feature vector, stratified, seeded."""

import numpy as np
import pandas as pd

from bridge.cosim.runsetup import prepare_flows, run_streams
from bridge.datasets import bot_iot
from bridge.scenario import DatasetSpec
from qesif_core.qids.flows import feature_columns, vector_keys


def _flows(path):
    return prepare_flows(DatasetSpec(name="bot_iot", path=str(path)), 5, 0.7, run_streams(5))


def test_identical_feature_vectors_never_straddle_the_run_split(tmp_path, rng):
    raw = bot_iot.synthetic_raw(500, rng)
    repeated = pd.concat([raw] + [raw.iloc[: 50 * k] for k in range(1, 5)], ignore_index=True)
    repeated["pkSeqID"] = np.arange(len(repeated))  # ids differ, features repeat
    path = tmp_path / "repeats.csv"
    repeated.sample(frac=1.0, random_state=3).to_csv(path, index=False)
    flows, train, test = _flows(path)
    keys = vector_keys(flows, feature_columns(flows))
    assert not set(keys[train]) & set(keys[test])
    assert len(train) + len(test) == len(flows) == 1000
    for label in (False, True):  # stratified: each class on both sides, about 70 % of its groups training
        groups = {side: set(keys[idx][flows["label"].to_numpy()[idx] == label]) for side, idx in
                  (("train", train), ("test", test))}  # fmt: skip
        share = len(groups["train"]) / (len(groups["train"]) + len(groups["test"]))
        assert 0.65 < share < 0.75
    again = _flows(path)
    np.testing.assert_array_equal(again[2], test)
