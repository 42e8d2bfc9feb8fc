"""Streaming CSV reader shared by the dataset loaders, and the common flow table.

Every loader maps its dataset's rows to one flow table (``FLOW_COLUMNS``) plus ``feat_<column>`` feature
columns (float64; categorical fields become stable 31-bit hash codes so chunks agree without a vocabulary).
A file gets a feature column for each candidate feature its header has, and none for the others, so two
files of different column subsets share exactly the features both can give. Each loader also declares the
columns it never uses as features (``NEVER_FEATURES``: column -> reason, one of ``REASONS``).
Files are read in chunks of ``chunksize`` rows with only the needed columns, so memory is bounded by the
chunk, not the file. Quirks handled: UTF-8 BOM, CRLF, "-" or empty for missing, padded strings, hex
numbers ("0x1a") in numeric columns, column subsets (absent traffic columns become NaN).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from qesif_core.errors import UserInputError

#: The common flow table (docs/design.md); loaders add ``feat_*`` feature columns after these.
FLOW_COLUMNS = (
    "device_key",
    "ts",
    "bytes_out",
    "bytes_in",
    "pkts_out",
    "pkts_in",
    "duration",
    "protocol",
    "label",
    "attack_type",
)
FEATURE_PREFIX = "feat_"
DEFAULT_CHUNKSIZE = 100_000
MISSING_TOKENS = ("-", "")
_HEX = re.compile(r"^0[xX][0-9a-fA-F]+$")
_OTHER_DELIMITERS = (";", "\t", "|")
#: Why a loader never uses a column as a feature (the values of its ``NEVER_FEATURES``).
REASONS = {
    "label": "the ground truth itself",
    "identifier": "names one record, host, stream or frame, not its behaviour",
    "capture order": "a counter that follows the capture schedule, so it encodes when the class was recorded",
    "address": "names a host of the testbed (or a statistic per host)",
    "port": "an endpoint number of the testbed's hosts",
    "timestamp": "when the record was captured (the capture schedule separates the classes)",
    "checksum": "a function of the packet bytes that behaves like a random row id",
    "payload": "raw content bytes or free text, not a flow statistic",
    "aggregate": "a statistic over the whole capture (per protocol or port), which looks into the future",
}
BENIGN_TYPES = ("normal", "benign")


@dataclass(frozen=True)
class Variant:
    """One file layout of a dataset: its columns and how a chunk of them becomes flow rows."""

    name: str
    schema: tuple[str, ...]
    required: tuple[str, ...]
    #: The 0/1 label column; None: the label is derived from the type column (attack = not benign).
    label_column: str | None
    type_column: str
    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    to_flows: Callable[[pd.DataFrame, ChunkContext], pd.DataFrame]
    #: Columns needed by ``to_flows`` besides features and labels.
    extra_columns: tuple[str, ...] = ()

    def needed(self) -> tuple[str, ...]:
        cols = (
            *((self.label_column,) if self.label_column else ()),
            self.type_column,
            *self.extra_columns,
            *self.numeric_features,
            *self.categorical_features,
        )
        return tuple(dict.fromkeys(cols))

    def candidate_features(self) -> tuple[str, ...]:
        return (*self.numeric_features, *self.categorical_features)

    def features_in(self, header: list[str]) -> list[str]:
        """The candidate features a file with this header provides (its ``feat_*`` columns, unprefixed)."""
        present = set(header)
        return [c for c in self.candidate_features() if c in present]


@dataclass
class ChunkContext:
    """Where a chunk comes from, for error messages naming file, column and line."""

    path: str
    first_line: int

    def numeric(self, chunk: pd.DataFrame, column: str) -> pd.Series:
        """Column as float64: NaN where absent or missing, hex accepted, anything else a UserInputError."""
        if column not in chunk.columns:
            return pd.Series(np.nan, index=chunk.index, dtype=np.float64)
        return to_numeric(chunk[column], self.path, column, self.first_line)

    def text(self, chunk: pd.DataFrame, column: str) -> pd.Series:
        """Column as stripped strings, missing values as empty strings."""
        if column not in chunk.columns:
            return pd.Series("", index=chunk.index, dtype=object)
        values = chunk[column].astype(object).where(chunk[column].notna(), "")
        return values.astype(str).str.strip().replace("-", "")


def to_numeric(series: pd.Series, path: str, column: str, first_line: int) -> pd.Series:
    """Parse one column to float64, naming file, column, line and value when a field is not a number."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.astype(np.float64)
    text = series.astype(object).where(series.notna(), "").astype(str).str.strip()
    values = pd.to_numeric(text, errors="coerce").astype(np.float64)
    bad = values.isna() & ~text.isin(MISSING_TOKENS) & ~text.str.lower().isin(("nan", "inf", "-inf"))
    if bad.any():
        hex_mask = bad & text.str.match(_HEX)
        if hex_mask.any():
            values[hex_mask] = [float(int(v, 16)) for v in text[hex_mask]]
            bad &= ~hex_mask
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        line = first_line + position
        raise UserInputError(
            f"{path}: column {column!r} must be numeric, but line {line} holds {text.iloc[position][:40]!r}"
        )
    return values


def stable_codes(values: pd.Series) -> np.ndarray:
    """Deterministic numeric codes of categorical strings (same string, same code, in every chunk)."""
    hashed = pd.util.hash_pandas_object(values.astype(str), index=False).to_numpy()
    return (hashed % np.uint64(2**31)).astype(np.float64)


#: Leading lines starting with this mark are comments (the provenance header of ``qesif datasets sample``).
COMMENT_MARK = "#"


def comment_lines(path: str | Path) -> int:
    """How many lines at the top of the file are comments (``COMMENT_MARK`` first)."""
    count = 0
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        for line in handle:
            if not line.startswith(COMMENT_MARK):
                break
            count += 1
    return count


def csv_chunks(path: str | Path, chunksize: int, **options: object) -> Iterator[pd.DataFrame]:
    """``pandas.read_csv`` in chunks with the datasets' conventions: UTF-8 with or without BOM, leading
    comment lines skipped, header names stripped; malformed files and bad encodings are user errors."""
    try:
        reader = pd.read_csv(
            path, encoding="utf-8-sig", skiprows=comment_lines(path), chunksize=chunksize, **options
        )
        for chunk in reader:
            chunk.columns = [str(c).strip() for c in chunk.columns]
            yield chunk
    except pd.errors.ParserError as exc:
        raise UserInputError(f"{path}: malformed CSV ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise UserInputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def read_header(path: str | Path) -> list[str]:
    """Column names of a CSV file (BOM, leading comment lines and surrounding spaces stripped); wrong
    delimiters are named."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"dataset file {str(path)!r} does not exist")
    first = ""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        for line in handle:
            if not line.startswith(COMMENT_MARK):
                first = line.rstrip("\r\n")
                break
    if not first.strip():
        raise UserInputError(f"{path}: empty file (no header line)")
    header = [name.strip() for name in next(csv.reader([first]))]
    if len(header) == 1:
        for delimiter in _OTHER_DELIMITERS:
            if delimiter in first:
                raise UserInputError(
                    f"{path}: the header is one column {first[:60]!r}: the file seems delimited by "
                    f"{delimiter!r}, but the datasets are comma-separated (column {header[0][:40]!r})"
                )
    return header


def check_columns(path: str | Path, header: list[str], variant: Variant, dataset: str) -> None:
    """UserInputError listing the expected columns a file lacks (wrong dataset, truncated header...)."""
    present = set(header)
    missing = [c for c in variant.required if c not in present]
    if missing:
        absent_schema = [c for c in variant.schema if c not in present]
        raise UserInputError(
            f"{path}: not a {dataset} ({variant.name}) file: missing expected column(s) "
            f"{', '.join(missing)} ({len(absent_schema)} of the {len(variant.schema)} schema columns absent)"
        )
    if not variant.features_in(header):
        raise UserInputError(
            f"{path}: a {dataset} ({variant.name}) file needs at least one feature column; it has none of "
            f"{', '.join(variant.candidate_features())}"
        )


def iter_raw_chunks(
    path: str | Path, variant: Variant, header: list[str], chunksize: int
) -> Iterator[tuple[pd.DataFrame, ChunkContext]]:
    """Chunks of the needed columns as strings or numbers, with their first line number (1 = header)."""
    usecols = [c for c in variant.needed() if c in header]
    text_columns = {c: str for c in (*variant.categorical_features, variant.type_column) if c in usecols}
    line = 2 + comment_lines(path)
    for chunk in csv_chunks(
        path,
        chunksize,
        usecols=lambda name: name.strip() in usecols,
        dtype=text_columns,
        na_values=list(MISSING_TOKENS),
        keep_default_na=False,
        skipinitialspace=False,
        engine="c",
        low_memory=True,
    ):
        yield chunk, ChunkContext(str(path), line)
        line += len(chunk)


def labels(
    chunk: pd.DataFrame, ctx: ChunkContext, label_column: str | None, type_column: str
) -> pd.DataFrame:
    """``label`` (bool) and ``attack_type`` (lower case, benign named "normal").

    The label comes from a 0/1 column, or, when the file has none (``label_column`` None or absent), from
    the type column (attack = not "normal"/"benign"); without a type column the type is "attack" or
    "normal" after the label.
    """
    attack = ctx.text(chunk, type_column).str.lower()
    attack = attack.replace({"benign": "normal", "os_fingerprinting": "fingerprinting"})
    if label_column is not None and label_column in chunk.columns:
        raw = ctx.numeric(chunk, label_column)
        bad = ~raw.isin((0.0, 1.0))
        if bad.any():
            position = int(np.flatnonzero(bad.to_numpy())[0])
            raise UserInputError(
                f"{ctx.path}: label column {label_column!r} must be 0 or 1, but line "
                f"{ctx.first_line + position} holds {chunk[label_column].iloc[position]!r}"
            )
        label = raw.to_numpy() == 1.0
    else:
        empty = attack == ""
        if empty.any():
            position = int(np.flatnonzero(empty.to_numpy())[0])
            raise UserInputError(
                f"{ctx.path}: type column {type_column!r} (the label of this file) is empty on line "
                f"{ctx.first_line + position}"
            )
        label = ~attack.isin(BENIGN_TYPES).to_numpy()
    if type_column not in chunk.columns:
        attack = pd.Series(np.where(label, "attack", "normal"), index=chunk.index, dtype=object)
    attack = attack.replace({"": "unknown"})
    return pd.DataFrame({"label": label, "attack_type": attack.to_numpy()}, index=chunk.index)


def features(chunk: pd.DataFrame, ctx: ChunkContext, variant: Variant) -> pd.DataFrame:
    """The ``feat_*`` columns of the features the chunk has: numeric ones parsed, categorical ones as
    stable hash codes."""
    out = {}
    for column in variant.numeric_features:
        if column in chunk.columns:
            out[FEATURE_PREFIX + column] = ctx.numeric(chunk, column).to_numpy()
    for column in variant.categorical_features:
        if column in chunk.columns:
            out[FEATURE_PREFIX + column] = stable_codes(ctx.text(chunk, column))
    return pd.DataFrame(out, index=chunk.index)


def assemble(
    common: dict[str, object], chunk: pd.DataFrame, ctx: ChunkContext, variant: Variant
) -> pd.DataFrame:
    """Flow rows: the common columns in order, then labels, then features (fresh 0..n-1 index)."""
    lab = labels(chunk, ctx, variant.label_column, variant.type_column)
    frame = pd.DataFrame(
        {
            "device_key": np.asarray(common["device_key"], dtype=object),
            "ts": np.asarray(common["ts"], dtype=np.float64),
            "bytes_out": np.asarray(common["bytes_out"], dtype=np.float64),
            "bytes_in": np.asarray(common["bytes_in"], dtype=np.float64),
            "pkts_out": np.asarray(common["pkts_out"], dtype=np.float64),
            "pkts_in": np.asarray(common["pkts_in"], dtype=np.float64),
            "duration": np.asarray(common["duration"], dtype=np.float64),
            "protocol": np.asarray(common["protocol"], dtype=object),
            "label": lab["label"].to_numpy(),
            "attack_type": lab["attack_type"].to_numpy(dtype=object),
        }
    )
    feats = features(chunk, ctx, variant)
    feats.index = frame.index
    return pd.concat([frame, feats], axis=1)


def broadcast(value: object, n: int, dtype: type = np.float64) -> np.ndarray:
    """A column of ``n`` copies of ``value`` (fields a dataset does not record, or records as constant)."""
    return np.full(n, value, dtype=dtype)
