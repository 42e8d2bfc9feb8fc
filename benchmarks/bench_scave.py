"""OMNeT++ result import: the pure-Python .sca/.vec reader against reading opp_scavetool's CSV-R export.

Input: the INET 4.5.4 MixedLAN1 fixture (36 kB .sca, 137 kB .vec with .vci; 3,448 CSV-R rows) from
``tests/fixtures``. Baseline, measured in the same run: ``pandas.read_csv`` of the CSV-R export of the same
files (what a machine with OMNeT++ would parse after running opp_scavetool). Medians of several repetitions.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from timing import median_seconds

from bridge.results import scave

REPEATS = 7
FOLDER = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "omnetpp" / "inet_mixedlan1"


def _median_s(fn) -> float:
    return median_seconds(fn, REPEATS)


def run() -> dict:
    sca, vec = FOLDER / "MixedLAN1Fixture-#0.sca", FOLDER / "MixedLAN1Fixture-#0.vec"
    csvr = FOLDER / "inet_mixedlan1.csv-r.csv"
    native = _median_s(lambda: scave.read_result_files([sca, vec]))
    scan = _median_s(lambda: scave.read_result_files([sca, vec], use_index=False))
    ours_csvr = _median_s(lambda: scave.read_csvr(csvr))
    baseline = _median_s(lambda: pd.read_csv(csvr, low_memory=False))
    rows = len(scave.read_result_files([sca, vec]))
    return {
        "rows": rows,
        "native_read_ms": round(native * 1e3, 2),
        "native_scan_without_index_ms": round(scan * 1e3, 2),
        "read_csvr_ms": round(ours_csvr * 1e3, 2),
        "baseline_pandas_read_csv_ms": round(baseline * 1e3, 2),
        "native_over_baseline": round(native / baseline, 2),
    }
