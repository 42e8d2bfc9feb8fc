"""The pure-Python reader against OMNeT++ 6.1's own files and opp_scavetool's CSV-R / JSON exports."""

from __future__ import annotations

import io
import json
import math
import shutil
import sys

import numpy as np
import pandas as pd
import pytest

from bridge.backends.omnetpp import OMNETPP_HINT
from bridge.results import scave
from qesif_core.errors import UserInputError

FIXTURES = {
    "aloha": ("aloha_purealoha2", "PureAloha2Fixture-#0", "aloha_purealoha2"),
    "inet": ("inet_mixedlan1", "MixedLAN1Fixture-#0", "inet_mixedlan1"),
}


@pytest.fixture(params=sorted(FIXTURES))
def fixture_files(request, data_path):
    folder, stem, export = FIXTURES[request.param]
    base = data_path("fixtures", "omnetpp", folder)
    return {
        "sca": base / f"{stem}.sca",
        "vec": base / f"{stem}.vec",
        "vci": base / f"{stem}.vci",
        "csvr": base / f"{export}.csv-r.csv",
        "json": base / f"{export}.json",
    }


def assert_tables_equal(left: pd.DataFrame, right: pd.DataFrame) -> None:
    assert list(left.columns) == list(right.columns)
    assert len(left) == len(right)
    for col in left.columns:
        a, b = left[col].to_numpy(), right[col].to_numpy()
        if col in scave.FLOAT_COLUMNS:
            assert a.dtype == b.dtype == np.float64, col
            np.testing.assert_array_equal(a, b, err_msg=col)  # NaN == NaN here
            continue
        if col in scave.COMMON_COLUMNS:
            pd.testing.assert_series_equal(left[col], right[col])
            continue
        assert left[col].dtype == right[col].dtype == object, col
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
                assert isinstance(x, np.ndarray) and isinstance(y, np.ndarray), (col, i)
                np.testing.assert_array_equal(x, y, err_msg=f"{col} row {i}")
            else:
                assert x == y or (x is None and y is None), (col, i, x, y)


def test_csvr_written_from_native_files_is_byte_identical(fixture_files):
    df = scave.read_result_files([fixture_files["sca"], fixture_files["vec"]])
    assert scave.write_csvr(df) == fixture_files["csvr"].read_text(encoding="utf-8")


def test_native_table_equals_csvr_export_row_for_row(fixture_files):
    native = scave.read_result_files([fixture_files["sca"], fixture_files["vec"]])
    exported = scave.read_csvr(fixture_files["csvr"])
    assert_tables_equal(scave.round_significant(native), exported)


def test_csvr_round_trip(fixture_files):
    exported = scave.read_csvr(fixture_files["csvr"])
    assert scave.write_csvr(exported) == fixture_files["csvr"].read_text(encoding="utf-8")


def test_vector_file_scan_without_index_equals_indexed_read(fixture_files):
    indexed = scave.read_result_files(fixture_files["vec"])
    scanned = scave.read_result_files(fixture_files["vec"], use_index=False)
    assert_tables_equal(indexed, scanned)
    vectors = indexed[indexed["type"] == "vector"]
    assert sum(len(v) for v in vectors["vecvalue"]) > 100  # data really read, not only declarations


def test_native_table_agrees_with_json_export(fixture_files):
    native = scave.round_significant(scave.read_result_files([fixture_files["sca"], fixture_files["vec"]]))
    (run_json,) = json.loads(fixture_files["json"].read_text(encoding="utf-8")).values()
    runattr = native[native["type"] == "runattr"]
    assert (
        dict(zip(runattr["attrname"], runattr["attrvalue"].fillna(""), strict=True)) == run_json["attributes"]
    )
    config = native[native["type"] == "config"]
    assert [{k: v or ""} for k, v in zip(config["attrname"], config["attrvalue"], strict=True)] == run_json[
        "config"
    ]

    scalars = native[native["type"] == "scalar"]
    assert [(s["module"], s["name"], s["value"]) for s in run_json["scalars"]] == list(
        zip(scalars["module"], scalars["name"], scalars["value"], strict=True)
    )
    params = native[native["type"] == "param"]
    assert [(p["module"], p["name"], p["value"]) for p in run_json["parameters"]] == list(
        zip(params["module"], params["name"], params["value"], strict=True)
    )
    hists = native[native["type"] == "histogram"].reset_index(drop=True)
    assert len(hists) == len(run_json["histograms"])
    for row, h in zip(hists.itertuples(), run_json["histograms"], strict=True):
        assert (row.module, row.name, row.count) == (h["module"], h["name"], h["count"])
        for key in ("mean", "stddev", "min", "max"):
            expected = math.nan if h[key] is None else h[key]
            assert getattr(row, key) == expected or (math.isnan(expected) and math.isnan(getattr(row, key)))
        assert (row.underflows, row.overflows) == (h["underflows"], h["overflows"])
        np.testing.assert_array_equal(row.binedges, h["binedges"])
        np.testing.assert_array_equal(row.binvalues, h["binvalues"])
    vectors = native[native["type"] == "vector"].reset_index(drop=True)
    assert len(vectors) == len(run_json["vectors"])
    for row, v in zip(vectors.itertuples(), run_json["vectors"], strict=True):
        assert (row.module, row.name) == (v["module"], v["name"])
        np.testing.assert_array_equal(row.vectime, v["time"])
        np.testing.assert_array_equal(row.vecvalue, v["value"])


def test_layout_types_and_quirks(data_path):
    base = data_path("fixtures", "omnetpp", "inet_mixedlan1")
    df = scave.read_result_files([base / "MixedLAN1Fixture-#0.sca", base / "MixedLAN1Fixture-#0.vec"])
    assert list(df.columns) == [
        *scave.COMMON_COLUMNS,
        *scave.SCALAR_COLUMNS,
        *scave.STATISTIC_COLUMNS,
        *scave.HISTOGRAM_COLUMNS,
        *scave.VECTOR_COLUMNS,
    ]
    counts = df["type"].value_counts().to_dict()
    assert counts == {
        "runattr": 16,
        "config": 24,
        "param": 17,
        "scalar": 117,
        "histogram": 12,
        "vector": 518,
        "attr": 2744,
    }
    # empty histogram: NaN statistics, edges [0, 1], one empty bin (what the exporter prints)
    empty = df[(df["type"] == "histogram") & (df["count"] == 0)].iloc[0]
    assert math.isnan(empty["mean"]) and math.isnan(empty["stddev"])
    assert list(empty["binedges"]) == [0.0, 1.0] and list(empty["binvalues"]) == [0.0]
    # declared but unrecorded vector: empty arrays; names with parentheses survive
    vectors = df[df["type"] == "vector"]
    assert sum(len(t) == 0 for t in vectors["vectime"]) == 515
    delay = vectors[vectors["name"] == "packetReceived:vector(packetBytes)"]
    assert any(len(t) == 89 for t in delay["vectime"])
    # parameter values keep their quotes and units; empty run attributes are None
    params = df[df["type"] == "param"]
    assert params["value"].map(type).eq(str).all()
    assert df.loc[(df["type"] == "runattr") & (df["attrname"] == "iterationvars"), "attrvalue"].isna().all()


def test_quisp_sca_with_params_only(data_path):
    sca = data_path("fixtures", "quisp", "twonode_10km_q07", "twonode_10km_q07-#0.sca")
    df = scave.read_result_files(sca)
    assert list(df.columns) == [*scave.COMMON_COLUMNS, "value"]
    assert (df["type"] == "param").sum() == 1230
    config = df[df["type"] == "config"]
    rates = config.loc[config["attrname"] == "**.channel_x_error_rate", "attrvalue"].tolist()
    assert rates == ["0.0037", "0"]  # the config section's value first, [General]'s kept after it
    purification = config.loc[config["attrname"] == "**.qrsa.hm.purification_type", "attrvalue"].tolist()
    assert purification == ['""']


def test_stale_index_falls_back_to_scanning(fixture_files, tmp_path):
    vec = tmp_path / "r.vec"
    shutil.copy(fixture_files["vec"], vec)
    vci_text = fixture_files["vci"].read_text(encoding="utf-8")
    (tmp_path / "r.vci").write_text(vci_text.replace("file ", "file 1", 1), encoding="utf-8")
    stale = scave.read_result_files(vec)
    assert_tables_equal(stale, scave.read_result_files(fixture_files["vec"]))


def test_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.sca"
    bad.write_text("version 3\nrun r1\nscalar m s notanumber\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"bad\.sca:3: scalar value 'notanumber'"):
        scave.read_result_files(bad)
    stray = tmp_path / "stray.sca"
    stray.write_text("version 3\nscalar m s 1\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"stray\.sca:2: stray 'scalar' line"):
        scave.read_result_files(stray)
    bins = tmp_path / "bins.sca"
    bins.write_text("version 3\nrun r\nstatistic m h\nbin\t-inf\t0\nbin\t2\t1\nbin\t1\t0\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"bins\.sca:6: bin edges must be strictly increasing"):
        scave.read_result_files(bins)
    with pytest.raises(UserInputError, match="result file not found"):
        scave.read_result_files(tmp_path / "missing.sca")
    other = tmp_path / "notes.txt"
    other.write_text("", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"expected a \.sca or \.vec"):
        scave.read_result_files(other)
    csvr = tmp_path / "x.csv"
    csvr.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"x\.csv:1: not a CSV-R export"):
        scave.read_csvr(csvr)


def test_vec_index_count_mismatch_is_reported(fixture_files, tmp_path):
    vec = tmp_path / "r.vec"
    shutil.copy(fixture_files["vec"], vec)
    lines = fixture_files["vci"].read_text(encoding="utf-8").splitlines(keepends=True)
    for i, line in enumerate(lines):
        parts = line.split()
        if line[:1].isdigit() and int(parts[7]) > 1:
            parts[7] = str(int(parts[7]) + 1)
            lines[i] = f"{parts[0]}\t{' '.join(parts[1:])}\n"
            break
    (tmp_path / "r.vci").write_text("".join(lines), encoding="utf-8")
    with pytest.raises(UserInputError, match=r"r\.vci:\d+: index says"):
        scave.read_result_files(vec)


def test_weighted_and_single_sample_statistics(tmp_path):
    sca = tmp_path / "w.sca"
    sca.write_text(
        "version 3\nrun r\n"
        "statistic m one\nfield count 1\nfield mean 5\nfield stddev nan\nfield min 5\nfield max 5\n"
        "field sum 5\nfield sqrsum 25\n"
        "statistic m w\nfield count 2\nfield min 1\nfield max 3\nfield weights 4\n"
        "field weightedSum 10\nfield sqrSumWeights 10\nfield weightedSqrSum 28\n",
        encoding="utf-8",
    )
    df = scave.read_result_files(sca)
    one, weighted = df.iloc[0], df.iloc[1]
    assert one["type"] == "statistic" and one["mean"] == 5.0 and math.isnan(one["stddev"])  # 0/0 as in C++
    # weighted mean 10/4; variance (4*28 - 100) / (16 - 10) = 2
    assert weighted["sumweights"] == 4.0 and weighted["mean"] == 2.5
    assert weighted["stddev"] == pytest.approx(math.sqrt(2.0), rel=1e-15)
    assert "binedges" not in df.columns


@pytest.mark.omnetpp
def test_real_scavetool_export_equals_pure_reader(fixture_files):
    if scave.find_scavetool() is None:
        pytest.skip(f"{scave.SCAVETOOL} is not on PATH ({OMNETPP_HINT})")
    before = {name: path.read_bytes() for name, path in fixture_files.items()}
    exported = scave.scavetool_export([fixture_files["sca"], fixture_files["vec"]], timeout_s=120)
    native = scave.read_result_files([fixture_files["sca"], fixture_files["vec"]])
    assert_tables_equal(scave.round_significant(native), exported)
    # opp_scavetool rebuilds a .vci it finds stale (its mtime field) in place: never in the caller's folder
    assert {name: path.read_bytes() for name, path in fixture_files.items()} == before


def test_scavetool_missing_is_a_user_error(monkeypatch, fixture_files):
    monkeypatch.setattr(scave, "find_scavetool", lambda: None)
    with pytest.raises(UserInputError, match="opp_scavetool not found"):
        scave.scavetool_export([fixture_files["sca"]])


def test_scavetool_wrapper_argv_and_errors(tmp_path, fixture_files):
    """A stand-in opp_scavetool that checks the argument list and writes the recorded export."""
    fake = tmp_path / "opp_scavetool"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import shutil, sys\n"
        "args = sys.argv[1:]\n"
        "assert args[:3] == ['export', '-F', 'CSV-R'] and args[3] == '-o', args\n"
        "if any(a.endswith('.bad') for a in args):\n"
        '    sys.exit("Error: cannot open \'" + args[-1] + "\'")\n'
        f"shutil.copy({str(fixture_files['csvr'])!r}, args[4])\n",
        encoding="utf-8",
    )
    fake.chmod(0o755)
    exported = scave.scavetool_export([fixture_files["sca"], fixture_files["vec"]], scavetool=str(fake))
    assert_tables_equal(exported, scave.read_csvr(fixture_files["csvr"]))
    (tmp_path / "x.bad").write_text("not a result file", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"export failed \(exit 1\).*cannot open"):
        scave.scavetool_export([tmp_path / "x.bad"], scavetool=str(fake))
    with pytest.raises(UserInputError, match="result file not found"):
        scave.scavetool_export([tmp_path / "missing.sca"], scavetool=str(fake))


def test_itervars_config_and_quoting(tmp_path):
    sca = tmp_path / "it.sca"
    sca.write_text(
        "version 3\n"
        "run General-0-x\n"
        'attr iterationvars "$n=2, $rate=5"\n'
        "attr configname General\n"
        "itervar rate 5\n"
        "itervar n 2\n"
        "config **.n 2\n"
        "param **.legacy 1\n"  # obsolete form of config
        "config **.n 9\n"  # repeated key kept, in file order
        'par Net.a name "\\"x, y\\""\n'
        'scalar Net.a "odd name" 1e-300\n'
        'attr title "say \\"hi\\""\n',
        encoding="utf-8",
    )
    df = scave.read_result_files(sca)
    rows = list(zip(df["type"], df["attrname"].fillna(""), df["attrvalue"].fillna(""), strict=True))
    assert rows[:7] == [
        ("runattr", "configname", "General"),
        ("runattr", "iterationvars", "$n=2, $rate=5"),
        ("itervar", "n", "2"),
        ("itervar", "rate", "5"),
        ("config", "**.n", "2"),
        ("config", "**.legacy", "1"),
        ("config", "**.n", "9"),
    ]
    assert df.loc[df["type"] == "param", "value"].item() == '"x, y"'
    scalar = df[df["type"] == "scalar"].iloc[0]
    assert scalar["name"] == "odd name" and scalar["value"] == 1e-300
    text = scave.write_csvr(df)
    assert ',param,Net.a,name,,,"""x, y"""' in text
    assert ',attr,Net.a,odd name,title,"say ""hi"""' in text
    assert_tables_equal(scave.read_csvr(io.StringIO(text)), scave.round_significant(df))
