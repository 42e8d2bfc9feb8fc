"""Views of a CSV-R results table: run attributes, scalars, per-round vectors and group summaries.

The figures and the report take means and standard deviations over rounds: every round of every run in
a group (for example QESIF on TON_IoT under the clean channel, all seeds pooled) is one sample.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd

GROUP = ("scheme", "dataset", "channel")


def run_attributes(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its ``runattr`` and ``itervar`` values as columns (index: run)."""
    rows = table[table["type"].isin(["runattr", "itervar"])]
    wide = rows.pivot_table(index="run", columns="attrname", values="attrvalue", aggfunc="first")
    wide.columns.name = None
    for name in rows.loc[rows["type"] == "itervar", "attrname"].unique():
        wide[name] = [json.loads(v) if isinstance(v, str) else v for v in wide[name]]
    return wide


def scalars(table: pd.DataFrame, names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per run, one column per ``module/name`` scalar (all, or those in ``names``)."""
    rows = table[table["type"] == "scalar"]
    keys = rows["module"] + "/" + rows["name"]
    if names is not None:
        rows, keys = rows[keys.isin(names)], keys[keys.isin(names)]
    wide = rows.assign(metric=keys).pivot_table(
        index="run", columns="metric", values="value", aggfunc="first"
    )
    wide.columns.name = None
    return wide


def vector_rounds(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Long table of one vector (``module/name``): columns run, round, value, one row per round."""
    module, name = metric.split("/", 1)
    rows = table[(table["type"] == "vector") & (table["module"] == module) & (table["name"] == name)]
    frames = [
        pd.DataFrame({"run": run, "round": np.arange(1, len(values) + 1), "value": np.asarray(values, float)})
        for run, values in zip(rows["run"], rows["vecvalue"], strict=True)
        if values is not None
    ]
    if not frames:
        return pd.DataFrame({"run": pd.Series(dtype=str), "round": pd.Series(dtype=int), "value": []})
    return pd.concat(frames, ignore_index=True)


def with_attributes(long: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """``long`` (with a run column) joined with the runs' attributes."""
    return long.merge(run_attributes(table), left_on="run", right_index=True, how="left")


def summarise(table: pd.DataFrame, metric: str, by: Sequence[str] = GROUP) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1), median, 10th and 90th percentiles and sample count over rounds of
    a vector, per group (the percentiles show a skewed quantity's spread, where mean - s.d. can leave its
    range)."""
    long = with_attributes(vector_rounds(table, metric), table)
    long = long[np.isfinite(long["value"])]
    if long.empty:
        return pd.DataFrame(columns=[*by, "mean", "std", "p10", "median", "p90", "n"])
    grouped = long.groupby(list(by), sort=False)["value"]
    return grouped.agg(
        mean="mean",
        std="std",
        p10=lambda v: np.percentile(v, 10),
        median="median",
        p90=lambda v: np.percentile(v, 90),
        n="count",
    ).reset_index()
