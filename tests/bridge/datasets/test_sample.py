"""``qesif datasets sample``: stratified, de-duplicated, streamed in bounded memory, with provenance."""

import hashlib
import math

import numpy as np
import pandas as pd
import pytest

from bridge.cli import main
from bridge.datasets import bot_iot, load_flows, open_dataset
from bridge.datasets.sample import sample_file
from qesif_core.qids.flows import feature_columns, record_keys


@pytest.fixture
def full_file(tmp_path, rng):
    """5,000 rows in the Bot-IoT schema, 1,500 of them repeats of other rows' records (new ids, times)."""
    raw = bot_iot.synthetic_raw(3500, rng)
    repeats = raw.sample(1500, replace=True, random_state=2)
    rows = pd.concat([raw, repeats], ignore_index=True).sample(frac=1.0, random_state=4)
    rows["pkSeqID"] = np.arange(1, len(rows) + 1)
    rows["stime"] = np.round(1526344121.0 + np.arange(len(rows)) * 0.01, 3)
    path = tmp_path / "full.csv"
    rows.to_csv(path, index=False)
    return path


def test_sample_is_stratified_distinct_and_bounded(tmp_path, full_file):
    out = tmp_path / "sample.csv"
    report = sample_file("bot_iot", full_file, out, per_class=120, seed=3, chunksize=250)
    source = load_flows("bot_iot", full_file, None)
    columns = feature_columns(source)
    distinct = pd.Series(record_keys(source, columns)).groupby(source["attack_type"].to_numpy()).nunique()
    sample = load_flows("bot_iot", out, None)  # the provenance header is skipped
    kept = sample["attack_type"].value_counts()
    for kind, count in distinct.items():
        assert kept[kind] == min(120, count), kind
    assert report.kept == {k: int(v) for k, v in kept.sort_index().items()}
    keys = record_keys(sample, columns)
    assert len(set(keys)) == len(keys)  # no record twice
    # streamed: every chunk read once, never more than the kept rows plus one chunk in memory
    assert report.rows_read == 5000 and report.chunks == math.ceil(5000 / 250)
    assert report.max_rows_held <= len(distinct) * 120 + 250
    assert open_dataset("bot_iot", out).header == list(pd.read_csv(full_file, nrows=0).columns)


def test_provenance_header_and_determinism(tmp_path, full_file):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    sample_file("bot_iot", full_file, a, per_class=50, seed=9, chunksize=300)
    sample_file("bot_iot", full_file, b, per_class=50, seed=9, chunksize=1700)
    sample_file("bot_iot", full_file, c, per_class=50, seed=10, chunksize=300)
    assert a.read_bytes() == b.read_bytes()  # chunking does not change the sample
    assert a.read_bytes() != c.read_bytes()
    header = [line for line in a.read_text().splitlines() if line.startswith("#")]
    digest = hashlib.sha256(full_file.read_bytes()).hexdigest()
    assert f"sha256 {digest}" in header[1] and "5,000 data rows" in header[1]
    assert "seed 9" in header[2] and "normal" in header[3]


def test_cli_and_bad_arguments(tmp_path, full_file, capsys):
    out = tmp_path / "s.csv"
    args = ["datasets", "sample", "--dataset", "bot_iot", "--path", str(full_file)]
    assert main([*args, "--per-class", "10", "--out", str(out), "--chunksize", "1000"]) == 0
    assert "5 chunks" in capsys.readouterr().out
    assert main([*args, "--per-class", "0", "--out", str(out)]) == 2
    assert "--per-class must be >= 1" in capsys.readouterr().err
    assert main([*args, "--per-class", "5", "--out", str(full_file)]) == 2
    assert "would overwrite the source" in capsys.readouterr().err
