"""``qesif ids audit``: one-column separability, which columns the loader uses, suspects."""

import json

import pytest

from bridge import datasets
from bridge.cli import main
from bridge.datasets.audit import SUSPECT_ACCURACY, audit, used_suspects


@pytest.mark.parametrize("name", list(datasets.DATASETS))
def test_no_generator_makes_the_classes_separable_by_one_field(name):
    result = audit(name, synthetic_rows=4000, seed=3)
    assert result["synthetic"] is True and result["rows"] == 4000
    worst = max(result["features"], key=lambda f: f["balanced_accuracy"])
    assert not worst["suspect"], worst
    assert worst["balanced_accuracy"] < SUSPECT_ACCURACY


def test_capture_order_columns_of_real_bot_iot_rows_are_suspect_and_unused(data_path):
    result = audit("bot_iot", str(data_path("datasets", "bot_iot", "data_t.csv")))
    by_name = {f["name"]: f for f in result["features"]}
    for column, reason in (("seq", "capture order"), ("pkSeqID", "identifier"), ("stime", "timestamp")):
        assert (
            by_name[column]["suspect"] and not by_name[column]["used"] and by_name[column]["reason"] == reason
        )
    assert by_name["sport"]["used"] is False and by_name["sport"]["reason"] == "port"
    assert "attack" not in by_name and "category" not in by_name and "subcategory" not in by_name
    assert used_suspects(result) == ["state"]  # Argus's transaction state: behaviour, listed for review


def test_json_shape(capsys, data_path):
    path = data_path("datasets", "bot_iot", "preprocessed_12col_half_A.csv")
    assert main(["ids", "audit", "--dataset", "bot_iot", "--path", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"dataset", "rows", "features"} <= set(out) and out["rows"] == 9426
    assert {"name", "balanced_accuracy", "used", "suspect"} <= set(out["features"][0])
    assert {f["name"] for f in out["features"]} == {
        "flgs", "proto", "pkts", "bytes", "dur", "mean", "stddev", "sum", "min", "max", "rate",
    }  # fmt: skip
    assert all(f["used"] for f in out["features"])


def test_a_single_class_file_exits_2(capsys, data_path):
    path = data_path("datasets", "edge_iiotset", "MITM_attack.csv")
    assert main(["ids", "audit", "--dataset", "edge_iiotset", "--path", str(path)]) == 2
    assert "every row is an attack" in capsys.readouterr().err
