import io
import json

import numpy as np
import pandas as pd
import pytest

from bridge import cli
from bridge.results.scave import read_csvr
from bridge.scenario import expand, parse_scenario
from bridge.store import CSVR_COLUMNS, ResultStore, encode, export, open_store
from qesif_core.errors import UserInputError


@pytest.fixture
def runs():
    scenario = parse_scenario(
        {
            "name": "t",
            "datasets": ["ton_iot"],
            "channels": ["clean"],
            "schemes": ["QESIF"],
            "rounds": 4,
            "sweeps": {"network.devices": [5, 6]},
        }
    )
    return expand(scenario)


def test_encoding_is_deterministic_and_keys_the_run_column(runs, fake_run_once):
    run = runs[0]
    first = encode(fake_run_once(run.spec), run.key, run.spec, run.itervars)
    second = encode(fake_run_once(run.spec), run.key, run.spec, run.itervars)
    assert first == second
    table = pd.read_parquet(io.BytesIO(first))
    assert list(table.columns) == list(CSVR_COLUMNS)
    assert set(table["run"]) == {run.key}
    itervar = table[table["type"] == "itervar"]
    assert list(itervar["attrname"]) == ["network.devices"]
    assert json.loads(itervar["attrvalue"].iloc[0]) == 5


def test_save_is_atomic_and_load_returns_stored_rows(tmp_path, runs, fake_run_once):
    store = ResultStore(tmp_path)
    for run in runs:
        store.save_run(run.key, encode(fake_run_once(run.spec), run.key, run.spec, run.itervars))
    assert store.finished_keys() == sorted(r.key for r in runs)
    assert not list(store.runs_dir.glob(".*tmp"))
    table = store.load()
    assert set(table["run"]) == {r.key for r in runs}
    vec = table[(table["type"] == "vector") & (table["name"] == "latency_ms")].iloc[0]
    assert len(vec["vecvalue"]) == 4
    assert store.spec(runs[0].key) == runs[0].spec


def test_manifests_restrict_loading_to_the_current_scenarios(tmp_path, runs, fake_run_once):
    store = ResultStore(tmp_path)
    for run in runs:
        store.save_run(run.key, encode(fake_run_once(run.spec), run.key, run.spec, run.itervars))
    store.save_manifest("t", [runs[1].key])
    assert set(store.load()["run"]) == {runs[1].key}


def test_success_removes_an_earlier_failure_record(tmp_path, runs, fake_run_once):
    store = ResultStore(tmp_path)
    run = runs[0]
    store.save_failure(run.key, {"key": run.key, "reason": "boom"})
    assert store.failures()[0]["reason"] == "boom"
    store.save_run(run.key, encode(fake_run_once(run.spec), run.key, run.spec, run.itervars))
    assert store.failures() == []


def test_tables_without_csvr_columns_are_rejected(runs):
    with pytest.raises(ValueError, match="CSV-R columns"):
        encode(pd.DataFrame({"run": ["x"]}), runs[0].key, runs[0].spec, {})


def test_export_csvr_reads_back_and_parquet_round_trips(tmp_path, runs, fake_run_once):
    store = ResultStore(tmp_path / "res")
    for run in runs:
        store.save_run(run.key, encode(fake_run_once(run.spec), run.key, run.spec, run.itervars))
    assert (
        cli.main(
            ["results", "export", str(store.root), "--format", "csv-r", "--out", str(tmp_path / "a.csv")]
        )
        == 0
    )
    back = read_csvr(tmp_path / "a.csv")
    original = store.load()
    assert len(back) == len(original)
    vectors = back[back["type"] == "vector"]
    np.testing.assert_allclose(
        np.concatenate(vectors["vecvalue"].to_list()),
        np.concatenate(original[original["type"] == "vector"]["vecvalue"].to_list()),
        rtol=1e-13,
    )
    export(store, tmp_path / "a.parquet", "parquet")
    assert len(pd.read_parquet(tmp_path / "a.parquet")) == len(original)


def test_reading_a_directory_that_is_not_a_store_is_a_user_error(tmp_path, capsys):
    with pytest.raises(UserInputError, match="not a results directory"):
        open_store(tmp_path)
    assert cli.main(["figures", str(tmp_path), "--out", str(tmp_path / "f")]) == 2
    assert "not a results directory" in capsys.readouterr().err
