import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from bridge.datasets import bot_iot, open_dataset, write_synthetic_csv
from bridge.datasets.evaluate import EvaluationSetup, QuantumSetting, evaluate, group_uniform
from qesif_core.errors import UserInputError
from qesif_core.qids.flows import record_keys, vector_keys
from qesif_core.qids.fusion import CrossLayerDetector, DetectorSpec

TREE = DetectorSpec("decision_tree", False, "none")


def test_split_is_seeded_and_covers_the_file(tmp_path, rng):
    path = write_synthetic_csv("bot_iot", tmp_path / "b.csv", 3000, rng)
    a = evaluate(EvaluationSetup("bot_iot", str(path), seed=4, spec=TREE, chunksize=700))
    b = evaluate(EvaluationSetup("bot_iot", str(path), seed=4, spec=TREE, chunksize=1100))
    assert a == {**b, "split": a["split"]} and a["split"] == b["split"]  # chunking does not change the split
    assert a["n_train"] + a["n_test_rows"] == 3000 and a["synthetic"] is False
    assert 0.6 < a["n_train"] / 3000 < 0.8
    c = evaluate(EvaluationSetup("bot_iot", str(path), seed=5, spec=TREE))
    assert c["n_train"] != a["n_train"] or c["tp"] != a["tp"]


def test_training_is_thinned_to_the_cap(tmp_path, rng):
    path = write_synthetic_csv("ton_iot", tmp_path / "t.csv", 4000, rng)
    out = evaluate(EvaluationSetup("ton_iot", str(path), spec=TREE, max_train_rows=500))
    assert 400 < out["n_train"] < 600
    assert out["n_test_rows"] == pytest.approx(0.3 * 4000, rel=0.1)


def test_separate_train_and_test_files(tmp_path, rng):
    train = write_synthetic_csv("edge_iiotset", tmp_path / "train.csv", 1500, rng)
    test = write_synthetic_csv("edge_iiotset", tmp_path / "test.csv", 800, rng)
    out = evaluate(EvaluationSetup("edge_iiotset", train_path=str(train), test_path=str(test), spec=TREE))
    assert (out["n_train"], out["n_test_rows"] + out["n_test_rows_in_training"]) == (1500, 800)
    assert out["split"]["kind"] == "separate files"


def test_synthetic_run_is_marked(rng):
    out = evaluate(EvaluationSetup("bot_iot", synthetic_rows=2000, spec=TREE))
    assert out["synthetic"] is True and out["n_train"] + out["n_test_rows"] == 2000


def test_eavesdropped_channel_under_or_fusion_flags_benign_flows_too(tmp_path, rng):
    path = write_synthetic_csv("bot_iot", tmp_path / "b.csv", 2000, rng)
    spec = DetectorSpec("decision_tree", True, "or")
    quantum = QuantumSetting("eavesdropped", n_gateways=3, n_blocks=10, pulses_per_block=200_000)
    eve = evaluate(EvaluationSetup("bot_iot", str(path), spec=spec, quantum=quantum))
    clean = evaluate(
        EvaluationSetup("bot_iot", str(path), spec=spec, quantum=QuantumSetting("clean", 3, 10, 1_000_000))
    )
    flow_only = evaluate(EvaluationSetup("bot_iot", str(path), spec=TREE))
    assert eve["quantum_flagged_block_fraction"] > 0.9 and eve["fpr"] > 0.9
    assert clean["quantum_flagged_block_fraction"] < 0.2
    assert eve["adr"] >= flow_only["adr"]


def test_noisy_links_are_judged_against_their_own_baseline_and_boost_keeps_benign_records(tmp_path, rng):
    path = write_synthetic_csv("bot_iot", tmp_path / "b.csv", 2000, rng)
    boost = DetectorSpec("decision_tree", True, "boost")

    def run(channel, calibration, spec=boost):
        quantum = QuantumSetting(channel, 3, 10, 200_000, calibration=calibration)
        return evaluate(EvaluationSetup("bot_iot", str(path), spec=spec, quantum=quantum))

    own, literal = run("noisy", "link-baseline"), run("noisy", "noise-free")
    assert own["calibration"] == "link-baseline" and own["quantum_flagged_block_fraction"] <= 0.2
    assert literal["quantum_flagged_block_fraction"] >= 0.9
    tapped = run("eavesdropped", "link-baseline")
    assert tapped["quantum_flagged_block_fraction"] >= 0.9
    # every link flagged: `or` calls every benign record an attack, `boost` leaves them to the classifier
    assert run("eavesdropped", "link-baseline", DetectorSpec("decision_tree", True, "or"))["fpr"] == 1.0
    assert tapped["fpr"] < 0.5


def _capture_split(monkeypatch) -> dict:
    """Record the rows the detector is trained on and the rows it judges."""
    seen: dict = {"train": [], "test": []}
    fit, predict = CrossLayerDetector.fit, CrossLayerDetector.predict

    def capture_fit(self, flows, columns=None):
        seen["train"].append(flows.copy())
        seen["columns"] = columns
        return fit(self, flows, columns)

    def capture_predict(self, flows, quantum_score=None):
        seen["test"].append(flows.copy())
        return predict(self, flows, quantum_score)

    monkeypatch.setattr(CrossLayerDetector, "fit", capture_fit)
    monkeypatch.setattr(CrossLayerDetector, "predict", capture_predict)
    return seen


def test_identical_feature_vectors_never_straddle_the_split_and_count_once(tmp_path, rng, monkeypatch):
    raw = bot_iot.synthetic_raw(600, rng)
    repeated = pd.concat([raw, raw.iloc[:300], raw.iloc[:100]], ignore_index=True)  # 400 repeats
    repeated["pkSeqID"] = np.arange(len(repeated))  # different row ids, same features
    path = tmp_path / "repeats.csv"
    repeated.sample(frac=1.0, random_state=1).to_csv(path, index=False)
    seen = _capture_split(monkeypatch)
    out = evaluate(EvaluationSetup("bot_iot", str(path), spec=TREE, chunksize=97))
    train, test = seen["train"][0], pd.concat(seen["test"])
    columns = seen["columns"]
    assert not set(vector_keys(train, columns)) & set(vector_keys(test, columns))
    records = record_keys(test, columns)
    assert len(set(records)) == len(records) == out["n_test"]  # each distinct record judged once
    assert out["n_test_rows"] > out["n_test"] and out["n_train"] + out["n_test_rows"] == 1000
    assert out["n_attack_test"] + out["n_benign_test"] == out["n_test"]
    assert len(out["adr_ci95"]) == len(out["fpr_ci95"]) == 2


def test_separate_files_share_their_common_features_and_leave_out_training_vectors(data_path):
    half_a = data_path("datasets", "bot_iot", "preprocessed_12col_half_A.csv")
    full = data_path("datasets", "bot_iot", "data_t.csv")
    out = evaluate(EvaluationSetup("bot_iot", train_path=str(half_a), test_path=str(full), spec=TREE))
    assert out["features"] == open_dataset("bot_iot", half_a).features  # the 11 both files have
    assert out["n_test_rows"] + out["n_test_rows_in_training"] == 1109
    assert out["n_test_rows_in_training"] > 0 and out["n_test"] <= 471  # distinct feature vectors + labels
    reverse = evaluate(EvaluationSetup("bot_iot", train_path=str(full), test_path=str(half_a), spec=TREE))
    assert reverse["features"] == out["features"]


def test_files_without_a_common_feature_are_a_user_error(tmp_path):
    a = tmp_path / "a.csv"
    a.write_text("proto,attack\ntcp,1\nudp,0\n")
    b = tmp_path / "b.csv"
    b.write_text("pkts,attack\n3,1\n4,0\n")
    with pytest.raises(UserInputError, match=r"share no feature column.*proto.*pkts"):
        evaluate(EvaluationSetup("bot_iot", train_path=str(a), test_path=str(b), spec=TREE))


def test_group_uniform_is_the_same_for_equal_keys_and_spreads_over_0_1():
    keys = np.arange(100_000, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    u = group_uniform(keys, 7)
    assert u.min() >= 0.0 and u.max() < 1.0 and abs(u.mean() - 0.5) < 0.01
    np.testing.assert_array_equal(group_uniform(keys[::-1], 7), u[::-1])
    assert not np.array_equal(group_uniform(keys, 8), u)


def test_bad_setups_are_user_errors():
    with pytest.raises(UserInputError, match="train-fraction"):
        EvaluationSetup("bot_iot", train_fraction=1.5)
    with pytest.raises(UserInputError, match="go together"):
        EvaluationSetup("bot_iot", train_path="a.csv")
    with pytest.raises(UserInputError, match="calibration"):
        QuantumSetting("noisy", calibration="clean")


@pytest.mark.slow
def test_two_million_rows_in_bounded_memory(tmp_path):
    """A 2,000,000-row Bot-IoT-schema file (about 420 MB) evaluated with peak RSS under a stated bound.

    Bound: 1 GiB, whatever the file size: imports + one 100,000-row chunk (raw and flow table) + at most
    ~100,000 training rows. Peak RSS (VmHWM, Linux) of a fresh interpreter that only evaluates; its RSS after
    the imports is reported beside it.
    """
    path = write_synthetic_csv("bot_iot", tmp_path / "big.csv", 2_000_000, np.random.default_rng(1))
    script = textwrap.dedent(
        f"""
        import json, time
        def hwm():  # peak RSS of this process image (VmHWM; ru_maxrss would include the parent's at fork)
            with open("/proc/self/status") as status:
                return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
        from bridge.datasets.evaluate import EvaluationSetup, evaluate
        from qesif_core.qids.fusion import DetectorSpec
        base = hwm()
        started = time.perf_counter()
        spec = DetectorSpec("decision_tree", False, "none")
        out = evaluate(EvaluationSetup("bot_iot", {str(path)!r}, spec=spec))
        peak = hwm()
        figures = {{"base_mb": base / 1024, "peak_mb": peak / 1024, "seconds": time.perf_counter() - started}}
        figures.update({{k: out[k] for k in ("n_rows", "n_train", "n_test_rows", "adr", "fpr")}})
        print(json.dumps(figures))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(figures, f"file {path.stat().st_size / 2**20:.0f} MiB")
    assert figures["n_rows"] == 2_000_000
    assert 95_000 < figures["n_train"] < 105_000
    assert figures["n_test_rows"] == pytest.approx(600_000, rel=0.01)
    assert figures["peak_mb"] < 1024
