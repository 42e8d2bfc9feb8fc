"""OMNeT++ result files (.sca, .vec + .vci) as a pandas DataFrame in the CSV-R layout, without OMNeT++.

Machines without OMNeT++ still need to read the result files a simulation produced elsewhere, and the
orchestrator wants one table whatever produced it. :func:`read_result_files` reads the native files in
pure Python into exactly the table that ``opp_scavetool export -F CSV-R`` writes (read back with
:func:`read_csvr`); :func:`scavetool_export` runs the real tool when it is on ``PATH``.
:func:`write_csvr` writes such a table as CSV-R text byte for byte as ``opp_scavetool`` 6.x does
(default options: precision 14, comma separator, quote doubling, header row, blank columns omitted).

DataFrame layout (model: ``python/omnetpp/scave/results.py`` and ``src/scave/csvrecexporter.cc`` of
OMNeT++ 6; one row per CSV-R record, in the same order):

- Columns, in this order: ``run, type, module, name, attrname, attrvalue`` always; ``value`` when the
  input holds scalars or parameters; ``count, sumweights, mean, stddev, min, max`` when it holds
  statistics or histograms; ``underflows, overflows, binedges, binvalues`` when it holds histograms;
  ``vectime, vecvalue`` when it holds vectors (``omitBlankColumns=true``, the exporter's default).
  The first column is ``run`` as in the CSV file (``omnetpp.scave`` renames it to ``runID``).
- ``type``: ``runattr``, ``itervar``, ``config``, ``scalar``, ``param``, ``statistic``, ``histogram``,
  ``vector`` or ``attr``.
- String columns (``run, type, module, name, attrname, attrvalue``): pandas ``str`` dtype, missing (NaN)
  where the CSV field is empty. CSV-R cannot tell an empty string from a missing one, so empty strings
  (such as the run attribute ``iterationvars ""``) are missing too.
- ``value`` (object dtype): ``float`` for scalar rows, ``str`` for param rows (the value as recorded:
  ``"\\"Server\\""`` in the .sca is ``"Server"`` with its quotes, ``548.814m`` keeps its unit), else
  ``None``.
- ``count, sumweights, mean, stddev, min, max, underflows, overflows``: float64, NaN where blank.
  ``mean`` and ``stddev`` are recomputed from count/sum/sqrsum exactly as OMNeT++'s ``Statistics`` class
  does (they may differ from the ``field mean``/``field stddev`` lines in the last digit).
- ``binedges`` (n+1 edges), ``binvalues`` (n counts), ``vectime``, ``vecvalue`` (object dtype):
  ``numpy.ndarray`` of float64, ``None`` on other rows. A declared vector without data has empty arrays
  (``omnetpp.scave``'s own CSV reader makes those ``None``; empty arrays keep "no data" distinct from
  "not a vector").
- Row order: per run (in order of first appearance) its run attributes sorted by name, itervars sorted by
  name, config entries in file order (repeated keys kept); then all scalars, all params, all statistics
  and histograms, all vectors, each in file order (files in the order given), each followed by its
  result attributes sorted by name.

Precision: CSV-R prints doubles with 14 significant digits, while :func:`read_result_files` keeps the
full double of the native file. :func:`round_significant` applies the same rounding, after which the two
tables are equal; vector times are exact in both (CSV-R prints them as decimals, like the .vec file).
Unverified by the fixtures: the relative order of pure ``statistic`` rows and ``histogram`` rows when a
file holds both (here: file order), and several runs per file.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from qesif_core.errors import UserInputError

COMMON_COLUMNS = ("run", "type", "module", "name", "attrname", "attrvalue")
SCALAR_COLUMNS = ("value",)
STATISTIC_COLUMNS = ("count", "sumweights", "mean", "stddev", "min", "max")
HISTOGRAM_COLUMNS = ("underflows", "overflows", "binedges", "binvalues")
VECTOR_COLUMNS = ("vectime", "vecvalue")
FLOAT_COLUMNS = ("count", "sumweights", "mean", "stddev", "min", "max", "underflows", "overflows")
ARRAY_COLUMNS = ("binedges", "binvalues", "vectime", "vecvalue")
CSVR_PRECISION = 14
SCAVETOOL = "opp_scavetool"

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "a": "\a", "0": "\0"}


@dataclass
class _Run:
    name: str
    attrs: dict[str, str] = field(default_factory=dict)
    itervars: dict[str, str] = field(default_factory=dict)
    config: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Item:
    kind: str  # scalar | param | statistic | histogram | vector
    run: str
    module: str
    name: str
    attrs: dict[str, str] = field(default_factory=dict)
    value: float | str | None = None
    fields: dict[str, float] = field(default_factory=dict)
    bin_edges: list[float] = field(default_factory=list)
    bin_values: list[float] = field(default_factory=list)
    vector_id: int = -1
    columns: str = "TV"
    times: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


@dataclass
class _Results:
    runs: dict[str, _Run] = field(default_factory=dict)
    items: dict[str, list[_Item]] = field(
        default_factory=lambda: {k: [] for k in ("scalar", "param", "statistic", "vector")}
    )


# --------------------------------------------------------------------------------------------- tokens


def _tokenize(line: str, where: str) -> list[str]:
    """Split a result-file line on whitespace; double-quoted tokens are unquoted (backslash escapes)."""
    if '"' not in line:
        return line.split()
    tokens: list[str] = []
    i, n = 0, len(line)
    while i < n:
        ch = line[i]
        if ch in " \t\r\n":
            i += 1
            continue
        if ch == '"':
            out: list[str] = []
            i += 1
            while True:
                if i >= n:
                    raise UserInputError(f"{where}: unterminated quoted string")
                ch = line[i]
                if ch == "\\" and i + 1 < n:
                    nxt = line[i + 1]
                    out.append(_ESCAPES.get(nxt, nxt))
                    i += 2
                elif ch == '"':
                    i += 1
                    break
                else:
                    out.append(ch)
                    i += 1
            tokens.append("".join(out))
        else:
            start = i
            while i < n and line[i] not in " \t\r\n":
                i += 1
            tokens.append(line[start:i])
    return tokens


def _double(text: str, where: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserInputError(f"{where}: {what} {text!r} is not a number") from None


def _int(text: str, where: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserInputError(f"{where}: {what} {text!r} is not an integer") from None


# --------------------------------------------------------------------------------------------- parser


class _Loader:
    """Line-by-line state machine following OMNeT++'s ``OmnetppResultFileLoader::processLine``."""

    def __init__(self, results: _Results, path: Path) -> None:
        self.results = results
        self.path = path
        self.run: _Run | None = None
        self.new_run = False
        self.item: _Item | None = None
        self.vectors_by_id: dict[int, _Item] = {}

    def where(self, lineno: int) -> str:
        return f"{self.path}:{lineno}"

    def _flush(self) -> None:
        if self.item is not None:
            kind = "statistic" if self.item.kind == "histogram" else self.item.kind
            self.results.items[kind].append(self.item)
            if self.item.kind == "vector":
                self.vectors_by_id[self.item.vector_id] = self.item
            self.item = None

    def _require_run(self, where: str, what: str) -> _Run:
        if self.run is None:
            raise UserInputError(f"{where}: stray '{what}' line, must be under a 'run' line")
        return self.run

    def process(self, lineno: int, line: str) -> None:
        where = self.where(lineno)
        tok = _tokenize(line, where)
        if not tok or tok[0].startswith("#"):
            return
        key = tok[0]
        if key == "version":
            if len(tok) != 2 or tok[1] not in ("2", "3"):
                raise UserInputError(
                    f"{where}: unsupported 'version' line {line.strip()!r} (2 or 3 expected)"
                )
        elif key == "run":
            self._flush()
            if len(tok) != 2:
                raise UserInputError(f"{where}: incorrect 'run' line -- run <runID> expected")
            existing = self.results.runs.get(tok[1])
            self.new_run = existing is None
            self.run = existing if existing is not None else _Run(tok[1])
            if self.new_run:
                self.results.runs[tok[1]] = self.run
        elif key in ("scalar", "par"):
            self._flush()
            run = self._require_run(where, key)
            if len(tok) != 4:
                raise UserInputError(
                    f"{where}: incorrect '{key}' line -- {key} <module> <name> <value> expected"
                )
            value: float | str = _double(tok[3], where, "scalar value") if key == "scalar" else tok[3]
            kind = "scalar" if key == "scalar" else "param"
            self.item = _Item(kind, run.name, tok[1], tok[2], value=value)
        elif key == "vector":
            self._flush()
            run = self._require_run(where, key)
            if len(tok) not in (4, 5):
                raise UserInputError(
                    f"{where}: incorrect 'vector' line -- vector <id> <module> <name> [<columns>] expected"
                )
            columns = "TV" if len(tok) < 5 or tok[4][:1].isdigit() else tok[4]
            if set(columns) - set("ETV") or "T" not in columns or "V" not in columns:
                raise UserInputError(f"{where}: unsupported vector columns {columns!r}")
            vid = _int(tok[1], where, "vector id")
            self.item = _Item("vector", run.name, tok[2], tok[3], vector_id=vid, columns=columns)
        elif key == "statistic":
            self._flush()
            run = self._require_run(where, key)
            if len(tok) != 3:
                raise UserInputError(
                    f"{where}: incorrect 'statistic' line -- statistic <module> <name> expected"
                )
            self.item = _Item("statistic", run.name, tok[1], tok[2])
        elif key == "field":
            if self.item is None or self.item.kind not in ("statistic", "histogram"):
                raise UserInputError(f"{where}: stray 'field' line, must be under a 'statistic'")
            if len(tok) != 3:
                raise UserInputError(f"{where}: incorrect 'field' line -- field <name> <value> expected")
            self.item.fields[tok[1]] = _double(tok[2], where, f"field {tok[1]}")
        elif key == "bin":
            if self.item is None or self.item.kind not in ("statistic", "histogram"):
                raise UserInputError(f"{where}: stray 'bin' line, must be under a 'statistic'")
            if len(tok) != 3:
                raise UserInputError(f"{where}: incorrect 'bin' line -- bin <lowerBound> <value> expected")
            self.item.kind = "histogram"
            edge = _double(tok[1], where, "bin lower bound")
            if self.item.bin_edges and edge <= self.item.bin_edges[-1]:
                raise UserInputError(f"{where}: bin edges must be strictly increasing (got {tok[1]})")
            self.item.bin_edges.append(edge)
            self.item.bin_values.append(_double(tok[2], where, "bin value"))
        elif key == "attr":
            if len(tok) != 3:
                raise UserInputError(f"{where}: incorrect 'attr' line -- attr <name> <value> expected")
            if self.item is not None:
                self.item.attrs[tok[1]] = tok[2]
            elif self.run is not None:
                if self.new_run:
                    self.run.attrs[tok[1]] = tok[2]
            else:
                raise UserInputError(f"{where}: stray 'attr' line")
        elif key in ("itervar", "config", "param"):
            run = self._require_run(where, key)
            if self.item is not None:
                raise UserInputError(f"{where}: stray '{key}' line, must be under a 'run' line")
            if len(tok) != 3:
                raise UserInputError(f"{where}: incorrect '{key}' line -- {key} <name> <value> expected")
            if self.new_run:
                if key == "itervar":
                    run.itervars[tok[1]] = tok[2]
                else:  # "param" is the obsolete form of "config"
                    run.config.append((tok[1], tok[2]))
        elif key[:1].isdigit():
            self._flush()
            self._data_line(tok, where)
        else:
            raise UserInputError(f"{where}: unrecognized line {line.strip()[:60]!r}")

    def _data_line(self, tok: list[str], where: str) -> None:
        vid = _int(tok[0], where, "vector id")
        vector = self.vectors_by_id.get(vid)
        if vector is None:
            raise UserInputError(f"{where}: data line for undeclared vector {vid}")
        if len(tok) != 1 + len(vector.columns):
            raise UserInputError(
                f"{where}: vector {vid} has columns {vector.columns}, line has {len(tok) - 1} values"
            )
        for col, text in zip(vector.columns, tok[1:], strict=True):
            if col == "T":
                _double(text, where, "time")
                vector.times.append(text)
            elif col == "V":
                vector.values.append(_double(text, where, "value"))

    def finish(self) -> None:
        self._flush()
        if self.run is not None and self.new_run and not self.run.itervars:
            _separate_itervars(self.run)


def _separate_itervars(run: _Run) -> None:
    """Files before OMNeT++ 5.1 stored iteration variables as run attributes (loader does the same)."""
    spec = run.attrs.get("iterationvars", "")
    if not spec:
        return
    for part in spec.split(", "):
        name = part.split("=", 1)[0].split("$", 1)[-1]
        if name in run.attrs:
            run.itervars[name] = run.attrs.pop(name)


def _read_lines(path: Path) -> Iterable[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            yield from enumerate(handle, start=1)
    except OSError as exc:
        raise UserInputError(f"cannot read result file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise UserInputError(f"{path}: not a text result file ({exc.reason})") from None


def _load_sca(results: _Results, path: Path) -> None:
    loader = _Loader(results, path)
    for lineno, line in _read_lines(path):
        loader.process(lineno, line)
    loader.finish()


@dataclass(frozen=True)
class _Block:
    vector_id: int
    offset: int
    length: int
    count: int
    where: str


def _read_index(vci: Path, vec: Path, results: _Results) -> tuple[_Loader, list[_Block]] | None:
    """Declarations and data blocks from the .vci; None when it does not describe this .vec (size)."""
    loader = _Loader(results, vci)
    blocks: list[_Block] = []
    lines = iter(_read_lines(vci))
    first = next(lines, None)
    if first is None:
        return None
    head = first[1].split()
    if len(head) < 2 or head[0] != "file":
        raise UserInputError(f"{vci}:1: index must start with 'file <size> <mtime>', got {first[1][:40]!r}")
    if _int(head[1], f"{vci}:1", "file size") != vec.stat().st_size:
        return None  # stale index: the mtime field alone is not checked (a git checkout changes it)
    pending: list[tuple[int, str]] = []
    for lineno, line in lines:
        if line[:1].isdigit():
            where = f"{vci}:{lineno}"
            parts = line.split()
            if len(parts) != 12:
                raise UserInputError(f"{where}: index block line needs 12 fields, has {len(parts)}")
            blocks.append(
                _Block(
                    vector_id=_int(parts[0], where, "vector id"),
                    offset=_int(parts[1], where, "offset"),
                    length=_int(parts[2], where, "length"),
                    count=_int(parts[7], where, "count"),
                    where=where,
                )
            )
        else:
            pending.append((lineno, line))
    for lineno, line in pending:
        loader.process(lineno, line)
    loader.finish()
    return loader, blocks


def _load_vec(results: _Results, vec: Path, *, use_index: bool) -> None:
    vci = vec.with_suffix(".vci")
    if use_index and vci.exists():
        indexed = _read_index(vci, vec, results)
        if indexed is not None:
            loader, blocks = indexed
            with vec.open("rb") as handle:
                for block in sorted(blocks, key=lambda b: b.offset):
                    vector = loader.vectors_by_id.get(block.vector_id)
                    if vector is None:
                        raise UserInputError(f"{block.where}: block of undeclared vector {block.vector_id}")
                    handle.seek(block.offset)
                    data = handle.read(block.length).decode("utf-8")
                    before = len(vector.values)
                    for line in data.splitlines():
                        tok = line.split()
                        if tok:
                            loader._data_line(tok, f"{vec} (block at byte {block.offset})")
                    if len(vector.values) - before != block.count:
                        raise UserInputError(
                            f"{block.where}: index says {block.count} values, {vec} has "
                            f"{len(vector.values) - before} at byte {block.offset}"
                        )
            return
    _load_sca(results, vec)  # no usable index: scan the whole vector file


# --------------------------------------------------------------------------------------------- table


def _stats(item: _Item) -> dict[str, float]:
    """count, sumweights, mean, stddev, min, max as OMNeT++'s ``Statistics`` computes them (IEEE
    division, so 0/0 gives NaN as in C++)."""
    f = {k: np.float64(v) for k, v in item.fields.items()}
    nan = np.float64(math.nan)
    count = f.get("count", np.float64(-1))
    with np.errstate(all="ignore"):
        if "weights" in f:
            sw = f["weights"]
            swv, ssw, swsv = (f.get(k, nan) for k in ("weightedSum", "sqrSumWeights", "weightedSqrSum"))
            var = (sw * swsv - swv * swv) / (sw * sw - ssw)
        else:
            sw = count
            swv, swsv = f.get("sum", nan), f.get("sqrsum", nan)
            var = (swsv - swv * swv / sw) / (sw - 1)
        if sw == 0:
            var = nan
        elif var < 0:
            var = np.float64(0)
        mean = swv / sw
        stddev = np.sqrt(var)
    return {
        "count": float(count),
        "sumweights": float(sw),
        "mean": float(mean),
        "stddev": float(stddev),
        "min": float(f.get("min", nan)),
        "max": float(f.get("max", nan)),
    }


def _histogram(item: _Item) -> dict[str, object]:
    edges, values = item.bin_edges, item.bin_values
    if len(edges) == len(values) + 1:
        return {
            "underflows": 0.0,
            "overflows": 0.0,
            "binedges": np.array(edges, dtype=np.float64),
            "binvalues": np.array(values, dtype=np.float64),
        }
    return {
        "underflows": values[0],
        "overflows": values[-1],
        "binedges": np.array(edges[1:], dtype=np.float64),
        "binvalues": np.array(values[1:-1], dtype=np.float64),
    }


def _to_frame(results: _Results) -> pd.DataFrame:
    items = results.items
    have_scalar_cols = bool(items["scalar"] or items["param"])
    have_stats = bool(items["statistic"])
    have_hist = any(i.kind == "histogram" for i in items["statistic"])
    columns = list(COMMON_COLUMNS)
    if have_scalar_cols:
        columns += SCALAR_COLUMNS
    if have_stats:
        columns += STATISTIC_COLUMNS
    if have_hist:
        columns += HISTOGRAM_COLUMNS
    if items["vector"]:
        columns += VECTOR_COLUMNS

    rows: list[dict[str, object]] = []

    def meta(run: str, kind: str, name: str, value: str) -> None:
        rows.append({"run": run, "type": kind, "attrname": name, "attrvalue": value or None})

    for run in results.runs.values():
        for k in sorted(run.attrs):
            meta(run.name, "runattr", k, run.attrs[k])
        for k in sorted(run.itervars):
            meta(run.name, "itervar", k, run.itervars[k])
        for k, v in run.config:
            meta(run.name, "config", k, v)

    def add(item: _Item, extra: dict[str, object]) -> None:
        rows.append({"run": item.run, "type": item.kind, "module": item.module, "name": item.name, **extra})
        for k in sorted(item.attrs):
            rows.append(
                {
                    "run": item.run,
                    "type": "attr",
                    "module": item.module,
                    "name": item.name,
                    "attrname": k,
                    "attrvalue": item.attrs[k] or None,
                }
            )

    for item in items["scalar"]:
        add(item, {"value": item.value})
    for item in items["param"]:
        add(item, {"value": item.value})
    for item in items["statistic"]:
        extra: dict[str, object] = dict(_stats(item))
        if item.kind == "histogram":
            extra.update(_histogram(item))
        add(item, extra)
    for item in items["vector"]:
        times = np.array([float(t) for t in item.times], dtype=np.float64)
        add(item, {"vectime": times, "vecvalue": np.array(item.values, dtype=np.float64)})
    return _frame(rows, columns)


def _frame(rows: list[dict[str, object]], columns: list[str]) -> pd.DataFrame:
    data: dict[str, pd.Series] = {}
    for col in columns:
        if col in FLOAT_COLUMNS:
            data[col] = pd.Series(np.array([r.get(col, math.nan) for r in rows], dtype=np.float64))
        elif col in COMMON_COLUMNS:
            data[col] = pd.Series([r.get(col) for r in rows], dtype="str")
        else:  # value (float or str), arrays: keep the Python objects as they are
            arr = np.empty(len(rows), dtype=object)
            arr[:] = [r.get(col) for r in rows]
            data[col] = pd.Series(arr, dtype=object)
    return pd.DataFrame(data, columns=columns)


def read_result_files(
    paths: str | os.PathLike | Sequence[str | os.PathLike], *, use_index: bool = True
) -> pd.DataFrame:
    """Read .sca and .vec files (in the given order) into the CSV-R table (see the module docstring).

    A .vec file is read through its .vci index when the index's recorded file size matches; otherwise the
    whole .vec is scanned. Malformed input raises :class:`UserInputError` naming the file and line.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    results = _Results()
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise UserInputError(f"result file not found: {path}")
        if path.suffix == ".vec":
            _load_vec(results, path, use_index=use_index)
        elif path.suffix == ".sca":
            _load_sca(results, path)
        else:
            raise UserInputError(f"result file {path}: expected a .sca or .vec file")
    return _to_frame(results)


# --------------------------------------------------------------------------------------------- CSV-R


def _parse_array(text: str) -> np.ndarray:
    return np.array([float(t) for t in text.split()], dtype=np.float64)


def read_csvr(source: str | os.PathLike | io.TextIOBase) -> pd.DataFrame:
    """Read a CSV-R export (file path or open text stream) into the table of the module docstring."""
    if isinstance(source, str | os.PathLike):
        name = str(source)
        try:
            handle: io.TextIOBase = open(source, encoding="utf-8", newline="")
        except OSError as exc:
            raise UserInputError(f"cannot read CSV-R file {name}: {exc.strerror}") from None
    else:
        name, handle = "<stream>", source
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(header[:6]) != COMMON_COLUMNS:
            raise UserInputError(f"{name}:1: not a CSV-R export (header {header!r})")
        rows: list[dict[str, object]] = []
        for lineno, fields in enumerate(reader, start=2):
            if len(fields) != len(header):
                raise UserInputError(f"{name}:{lineno}: {len(fields)} fields, header has {len(header)}")
            raw = dict(zip(header, fields, strict=True))
            row: dict[str, object] = {c: (raw[c] or None) for c in COMMON_COLUMNS}
            kind = raw["type"]
            try:
                if "value" in raw and raw["value"] != "":
                    row["value"] = float(raw["value"]) if kind == "scalar" else raw["value"]
                for col in FLOAT_COLUMNS:
                    if raw.get(col, "") != "":
                        row[col] = float(raw[col])
                for col in ARRAY_COLUMNS:
                    if col in raw and kind in ("histogram", "vector"):
                        if (col.startswith("bin")) == (kind == "histogram"):
                            row[col] = _parse_array(raw[col])
            except ValueError as exc:
                raise UserInputError(f"{name}:{lineno}: bad number ({exc})") from None
            rows.append(row)
    return _frame(rows, header)


def _g(value: float, precision: int) -> str:
    """A double as C++ ``ostream << setprecision(p)`` prints it (CsvWriter::doWriteDouble)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    return f"{value:.{precision}g}"


def _decimal(value: float) -> str:
    """A simulation time as BigDecimal::str prints it: plain decimal, no exponent, no trailing zeros."""
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _quote(text: str) -> str:
    if any(c in text for c in ',"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def write_csvr(df: pd.DataFrame, *, precision: int = CSVR_PRECISION) -> str:
    """The table as ``opp_scavetool export -F CSV-R`` text (default options), byte for byte.

    Vector times are written from their float values as plain decimals, which reproduces the exporter's
    decimal output whenever the .vec times have at most 15 significant digits.
    """
    columns = list(df.columns)
    out = [",".join(columns)]
    array_cols = [c for c in columns if c in ARRAY_COLUMNS]
    for rec in df.itertuples(index=False, name=None):
        row = dict(zip(columns, rec, strict=True))
        kind = row["type"]
        cells: list[str] = []
        for col in columns:
            val = row[col]
            if col in array_cols:
                if kind == "histogram" and col.startswith("bin"):
                    cells.append('"' + " ".join(_g(float(x), precision) for x in val) + '"')
                elif kind == "vector" and col == "vectime":
                    cells.append('"' + " ".join(_decimal(float(x)) for x in val) + '"')
                elif kind == "vector" and col == "vecvalue":
                    cells.append('"' + " ".join(_g(float(x), precision) for x in val) + '"')
                else:
                    cells.append("")
            elif col == "count":
                cells.append("" if _missing(val) else str(int(val)))
            elif col == "value" and kind == "scalar":
                cells.append(_g(float(val), precision))
            elif col in STATISTIC_COLUMNS:
                cells.append(_g(float(val), precision) if kind in ("statistic", "histogram") else "")
            elif col in FLOAT_COLUMNS:  # underflows, overflows
                cells.append(_g(float(val), precision) if kind == "histogram" else "")
            else:
                cells.append("" if _missing(val) else _quote(str(val)))
        out.append(",".join(cells))
    return "\n".join(out) + "\n"


def _missing(val: object) -> bool:
    return val is None or (isinstance(val, float) and math.isnan(val))


def round_significant(df: pd.DataFrame, digits: int = CSVR_PRECISION) -> pd.DataFrame:
    """A copy with every double rounded to ``digits`` significant digits, as CSV-R prints them.

    Applied to the output of :func:`read_result_files`, the result equals :func:`read_csvr` of the
    exporter's file. Vector times are left alone (the exporter prints them exactly).
    """

    def r(x: float) -> float:
        return float(f"{x:.{digits}g}") if math.isfinite(x) else x

    out = df.copy()
    for col in FLOAT_COLUMNS:
        if col in out:
            out[col] = np.array([r(x) for x in out[col]], dtype=np.float64)
    if "value" in out:
        scalar = out["type"].to_numpy() == "scalar"
        values = out["value"].to_numpy(copy=True)
        values[scalar] = [r(float(v)) for v in values[scalar]]
        out["value"] = values
    for col in ("binedges", "binvalues", "vecvalue"):
        if col in out:
            arr = np.empty(len(out), dtype=object)
            arr[:] = [None if a is None else np.array([r(x) for x in a], dtype=np.float64) for a in out[col]]
            out[col] = arr
    return out


# --------------------------------------------------------------------------------------------- tool


def find_scavetool() -> str | None:
    """Path of ``opp_scavetool`` on PATH, or None."""
    return shutil.which(SCAVETOOL)


def _private_copy(path: Path, folder: Path) -> Path:
    """``path`` (and a .vec's .vci) copied into ``folder`` for opp_scavetool, which rewrites an index it finds
    stale in place: the caller's files (possibly read-only shared data) are never modified. A .vci that
    describes the .vec (same size) gets its recorded mtime back on the copy, as the simulator left it (a
    copy or a git checkout changes mtimes, and opp_scavetool's rebuilt index drops empty vectors)."""
    if not path.is_file():
        raise UserInputError(f"result file not found: {path}")
    folder.mkdir()
    copy = Path(shutil.copy2(path, folder / path.name))
    index = path.with_suffix(".vci")
    if path.suffix == ".vec" and index.is_file():
        shutil.copy2(index, folder / index.name)
        head = index.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0].split()
        if len(head) == 3 and head[0] == "file" and head[1] == str(path.stat().st_size) and head[2].isdigit():
            os.utime(copy, (int(head[2]), int(head[2])))
    return copy


def scavetool_export(
    paths: Sequence[str | os.PathLike], *, timeout_s: float = 300.0, scavetool: str | None = None
) -> pd.DataFrame:
    """Run the real ``opp_scavetool export -F CSV-R`` on the files and read its output.

    Raises :class:`UserInputError` when the tool is missing or rejects the files (its stderr is quoted),
    and ``subprocess.TimeoutExpired`` after ``timeout_s``.
    """
    tool = scavetool or find_scavetool()
    if tool is None:
        raise UserInputError(
            f"{SCAVETOOL} not found on PATH (source OMNeT++'s setenv, or use read_result_files)"
        )
    with tempfile.TemporaryDirectory(prefix="qesif-scave-") as tmp:
        target = Path(tmp) / "export.csv"
        copies = [_private_copy(Path(path), Path(tmp) / str(index)) for index, path in enumerate(paths)]
        argv = [tool, "export", "-F", "CSV-R", "-o", str(target), *(str(p) for p in copies)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        if proc.returncode != 0:
            raise UserInputError(
                f"{SCAVETOOL} export failed (exit {proc.returncode}) on {[str(p) for p in paths]}: "
                f"{proc.stderr.strip()[:500]}"
            )
        return read_csvr(target)
