import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bridge.datasets import write_synthetic_csv
from bridge.datasets.evaluate import EvaluationSetup, QuantumSetting, evaluate
from qesif_core.errors import UserInputError
from qesif_core.qids.fusion import DetectorSpec

TREE = DetectorSpec("decision_tree", False, "none")


def test_split_is_seeded_and_covers_the_file(tmp_path, rng):
    path = write_synthetic_csv("bot_iot", tmp_path / "b.csv", 3000, rng)
    a = evaluate(EvaluationSetup("bot_iot", str(path), seed=4, spec=TREE, chunksize=700))
    b = evaluate(EvaluationSetup("bot_iot", str(path), seed=4, spec=TREE, chunksize=1100))
    assert a == {**b, "split": a["split"]} and a["split"] == b["split"]  # chunking does not change the split
    assert a["n_train"] + a["n_test"] == 3000 and a["synthetic"] is False
    assert 0.6 < a["n_train"] / 3000 < 0.8
    c = evaluate(EvaluationSetup("bot_iot", str(path), seed=5, spec=TREE))
    assert c["n_train"] != a["n_train"] or c["tp"] != a["tp"]


def test_training_is_thinned_to_the_cap(tmp_path, rng):
    path = write_synthetic_csv("ton_iot", tmp_path / "t.csv", 4000, rng)
    out = evaluate(EvaluationSetup("ton_iot", str(path), spec=TREE, max_train_rows=500))
    assert 400 < out["n_train"] < 600
    assert out["n_test"] == pytest.approx(0.3 * 4000, rel=0.1)


def test_separate_train_and_test_files(tmp_path, rng):
    train = write_synthetic_csv("edge_iiotset", tmp_path / "train.csv", 1500, rng)
    test = write_synthetic_csv("edge_iiotset", tmp_path / "test.csv", 800, rng)
    out = evaluate(EvaluationSetup("edge_iiotset", train_path=str(train), test_path=str(test), spec=TREE))
    assert (out["n_train"], out["n_test"]) == (1500, 800)
    assert out["split"]["kind"] == "separate files"


def test_synthetic_run_is_marked(rng):
    out = evaluate(EvaluationSetup("bot_iot", synthetic_rows=2000, spec=TREE))
    assert out["synthetic"] is True and out["n_train"] + out["n_test"] == 2000


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
        figures.update({{k: out[k] for k in ("n_rows", "n_train", "n_test", "adr", "fpr")}})
        print(json.dumps(figures))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(figures, f"file {path.stat().st_size / 2**20:.0f} MiB")
    assert figures["n_rows"] == 2_000_000
    assert 95_000 < figures["n_train"] < 105_000
    assert figures["n_test"] == pytest.approx(600_000, rel=0.01)
    assert figures["peak_mb"] < 1024
