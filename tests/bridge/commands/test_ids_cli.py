import json
import re

import pytest

from bridge.cli import main
from bridge.datasets import bot_iot, write_synthetic_csv

FIELDS = {
    "adr", "fpr", "precision", "f1", "per_class_recall", "n_train", "n_test", "synthetic", "adr_ci95",
    "fpr_ci95", "n_attack_test", "n_benign_test",
}  # fmt: skip


def run_json(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_evaluate_json_on_a_shipped_sample(capsys, data_path):
    path = data_path("datasets", "bot_iot", "data_t.csv")
    out = run_json(
        capsys, "ids", "evaluate", "--dataset", "bot_iot", "--path", str(path), "--seed", "3", "--json"
    )
    assert FIELDS <= set(out)
    assert out["synthetic"] is False and out["n_train"] + out["n_test_rows"] == 1109
    assert out["n_test"] == out["n_attack_test"] + out["n_benign_test"] <= out["n_test_rows"]
    for key in ("adr", "fpr"):
        low, high = out[f"{key}_ci95"]
        assert 0.0 <= low <= out[key] <= high <= 1.0
    assert set(out["per_class_recall"]) == {"ddos"}


def test_evaluate_trains_on_the_12_column_file_and_tests_on_the_full_schema(capsys, data_path):
    """The issue's command: half A of the 12-column projection against other real Bot-IoT rows."""
    half_a = data_path("datasets", "bot_iot", "preprocessed_12col_half_A.csv")
    other = data_path("datasets", "bot_iot", "data_t.csv")
    out = run_json(
        capsys,
        "ids",
        "evaluate",
        "--dataset",
        "bot_iot",
        "--train",
        str(half_a),
        "--test",
        str(other),
        "--json",
    )
    assert out["n_train"] == 9426 and len(out["features"]) == 11
    assert out["n_attack_test"] > 0 and out["n_benign_test"] > 0 and out["adr_ci95"][0] <= out["adr"]


def test_evaluate_synthetic_is_marked_and_scheme_detector_is_used(capsys):
    out = run_json(
        capsys, "ids", "evaluate", "--dataset", "edge_iiotset", "--synthetic-rows", "1500",
        "--scheme", "QESIF", "--classifier", "decision_tree", "--blocks", "5", "--json",
    )  # fmt: skip
    assert out["synthetic"] is True
    assert (out["scheme"], out["fusion"], out["channel"]) == ("QESIF", "boost", "clean")


def test_evaluate_separate_train_and_test(capsys, tmp_path, rng):
    train = write_synthetic_csv("bot_iot", tmp_path / "train.csv", 600, rng)
    test = write_synthetic_csv("bot_iot", tmp_path / "test.csv", 300, rng)
    out = run_json(
        capsys, "ids", "evaluate", "--dataset", "bot_iot", "--train", str(train), "--test", str(test),
        "--classifier", "naive_bayes", "--json",
    )  # fmt: skip
    assert (out["n_train"], out["n_test"]) == (600, 300)


def write_bot(tmp_path, name, header, row, sep=","):
    path = tmp_path / name
    path.write_text(sep.join(header) + "\n" + sep.join(row) + "\n")
    return path


def bot_values(**changes):
    values = dict.fromkeys(bot_iot.SCHEMA, "1")
    values.update(saddr="10.0.0.1", daddr="10.0.0.2", proto="tcp", flgs="e", state="CON", category="DDoS")
    values.update(changes)
    return values


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("missing_label", r"nolabel\.csv.*missing expected column\(s\) attack"),
        ("delimiter", r"semi\.csv.*delimited by ';'"),
        ("non_numeric", r"text\.csv: column 'dbytes' must be numeric"),
    ],
)
def test_bad_files_exit_2_naming_file_and_column(capsys, tmp_path, case, pattern):
    if case == "missing_label":
        header = [c for c in bot_iot.SCHEMA if c not in ("attack", "category")]
        path = write_bot(tmp_path, "nolabel.csv", header, [bot_values()[c] for c in header])
    elif case == "delimiter":
        path = write_bot(tmp_path, "semi.csv", bot_iot.SCHEMA, list(bot_values().values()), sep=";")
    else:
        path = write_bot(tmp_path, "text.csv", bot_iot.SCHEMA, list(bot_values(dbytes="n/a").values()))
    assert main(["ids", "evaluate", "--dataset", "bot_iot", "--path", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(pattern, err), err


def test_wrong_dataset_exits_2_listing_missing_columns(capsys, data_path):
    path = data_path("datasets", "bot_iot", "data_t.csv")
    assert main(["ids", "evaluate", "--dataset", "ton_iot", "--path", str(path)]) == 2
    assert "missing expected column(s) src_ip, dst_ip" in capsys.readouterr().err


def test_roc_prints_both_benign_conditions(capsys):
    out = run_json(capsys, "ids", "roc", "--links", "2", "--blocks", "8", "--pulses", "200000", "--json")
    for key in ("clean_vs_eavesdropped", "noisy_vs_eavesdropped"):
        assert 0.0 <= out[key]["auc"] <= 1.0 and out[key]["points"]
    assert out["calibration"]["qber_ref"] > 0


def test_roc_weak_eavesdropper_and_bad_fraction(capsys):
    out = run_json(
        capsys, "ids", "roc", "--links", "1", "--blocks", "6", "--pulses", "100000", "--eve-fraction", "0.05",
        "--json",
    )  # fmt: skip
    assert out["eve_fraction"] == 0.05
    assert out["qber_mean"]["clean"] < out["qber_mean"]["eavesdropped"] < out["qber_mean"]["noisy"]
    assert main(["ids", "roc", "--eve-fraction", "2"]) == 2
    assert "--eve-fraction" in capsys.readouterr().err
