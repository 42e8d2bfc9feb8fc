"""The results store: one Parquet file per finished run, written atomically under the run's key.

Layout of a store directory::

    runs/<key>.parquet      the run's CSV-R table (run, type, module, name, attrname, attrvalue, value,
                            vectime, vecvalue); the resolved spec is kept in the file's metadata
    failed/<key>.json       why a run failed (reason, log tail, spec); removed when the run later succeeds
    scenarios/<name>.json   the keys of the runs a scenario expanded to at its last batch

A run counts as finished exactly when ``runs/<key>.parquet`` exists. Files are written to a temporary
name in the same directory and moved into place with ``os.replace``, so a batch killed at any moment
leaves either a complete file or none. The ``run`` column holds the run key (unique in a store even when
two runs differ only by a swept parameter); swept parameters are added as ``itervar`` rows, as
``opp_scavetool`` does. Only the CSV-R core columns are kept; a ``param`` row's textual value is kept in
``attrvalue`` (``value`` is a double column). Tables are encoded without timestamps, so the same run
gives the same bytes.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from qesif_core.errors import UserInputError

CSVR_COLUMNS = ("run", "type", "module", "name", "attrname", "attrvalue", "value", "vectime", "vecvalue")
TEXT_COLUMNS = ("run", "type", "module", "name", "attrname", "attrvalue")
ROW_TYPES = ("runattr", "itervar", "config", "param", "attr", "scalar", "vector", "statistic", "histogram")
SCHEMA = pa.schema(
    [pa.field(c, pa.string()) for c in TEXT_COLUMNS]
    + [
        pa.field("value", pa.float64()),
        pa.field("vectime", pa.list_(pa.float64())),
        pa.field("vecvalue", pa.list_(pa.float64())),
    ]
)
SPEC_METADATA = b"qesif.spec"
KEY_METADATA = b"qesif.key"


def _as_float_list(value: Any) -> list[float] | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str):
        return [float(v) for v in value.split()] if value.strip() else None
    return [float(v) for v in np.asarray(value, dtype=float).ravel()]


def _as_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


def to_arrow(table: pd.DataFrame, key: str, spec: Mapping[str, Any], itervars: Mapping[str, Any]) -> pa.Table:
    """A run's CSV-R DataFrame as an Arrow table in the store's schema, ``run`` set to ``key``."""
    missing = [c for c in CSVR_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"result table lacks CSV-R columns {missing}")
    unknown_types = sorted(set(table["type"].astype(str)) - set(ROW_TYPES))
    if unknown_types:
        raise ValueError(f"result table has unknown row types {unknown_types}")
    rows = table.loc[:, list(CSVR_COLUMNS)].reset_index(drop=True)
    columns: dict[str, list[Any]] = {c: [_as_text(v) for v in rows[c]] for c in TEXT_COLUMNS}
    columns["run"] = [key] * len(rows)
    columns["value"] = []
    for index, value in enumerate(rows["value"]):
        if isinstance(value, str):  # a param row's value as recorded: kept as text in attrvalue
            columns["value"].append(None)
            columns["attrvalue"][index] = columns["attrvalue"][index] or value
        else:
            columns["value"].append(None if value is None or pd.isna(value) else float(value))
    columns["vectime"] = [_as_float_list(v) for v in rows["vectime"]]
    columns["vecvalue"] = [_as_float_list(v) for v in rows["vecvalue"]]
    for path, value in itervars.items():
        for name in CSVR_COLUMNS:
            columns[name].append(
                {"run": key, "type": "itervar", "attrname": path, "attrvalue": json.dumps(value)}.get(name)
            )
    metadata = {
        SPEC_METADATA: json.dumps(spec, sort_keys=True, separators=(",", ":")).encode(),
        KEY_METADATA: key.encode(),
    }
    return pa.Table.from_pydict(columns, schema=SCHEMA.with_metadata(metadata))


def encode(table: pd.DataFrame, key: str, spec: Mapping[str, Any], itervars: Mapping[str, Any]) -> bytes:
    """The Parquet bytes of a run's table (deterministic: same table, same bytes)."""
    sink = io.BytesIO()
    pq.write_table(to_arrow(table, key, spec, itervars), sink, compression="zstd")
    return sink.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultStore:
    """A directory of finished runs (Parquet) and failure records (JSON), keyed by run key."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.failed_dir = self.root / "failed"
        self.scenarios_dir = self.root / "scenarios"

    def remove_stale_temporaries(self) -> int:
        """Delete half-written files left by a batch that was killed mid-write (never a finished run)."""
        stale = [p for d in (self.runs_dir, self.failed_dir) if d.is_dir() for p in d.glob(".*.tmp")]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def run_path(self, key: str) -> Path:
        return self.runs_dir / f"{key}.parquet"

    def is_finished(self, key: str) -> bool:
        return self.run_path(key).is_file()

    def finished_keys(self) -> list[str]:
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.stem for p in self.runs_dir.glob("*.parquet"))

    def save_run(self, key: str, parquet_bytes: bytes) -> None:
        """Store a finished run (bytes from :func:`encode`) and drop any earlier failure record."""
        _atomic_write(self.run_path(key), parquet_bytes)
        (self.failed_dir / f"{key}.json").unlink(missing_ok=True)

    def save_failure(self, key: str, record: Mapping[str, Any]) -> None:
        _atomic_write(self.failed_dir / f"{key}.json", json.dumps(record, indent=2, sort_keys=True).encode())

    def failures(self) -> list[dict[str, Any]]:
        if not self.failed_dir.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(self.failed_dir.glob("*.json"))]

    def save_manifest(self, scenario_name: str, keys: Iterable[str]) -> None:
        """Remember which runs a scenario consists of now (figures use the union of manifests)."""
        body = json.dumps({"scenario": scenario_name, "keys": list(keys)}, indent=1).encode()
        _atomic_write(self.scenarios_dir / f"{scenario_name}.json", body)

    def manifest_keys(self) -> list[str] | None:
        """Keys of all scenarios run into this store, or None when no manifest exists."""
        if not self.scenarios_dir.is_dir():
            return None
        manifests = sorted(self.scenarios_dir.glob("*.json"))
        if not manifests:
            return None
        keys: dict[str, None] = {}
        for path in manifests:
            keys.update(dict.fromkeys(json.loads(path.read_text())["keys"]))
        return list(keys)

    def spec(self, key: str) -> dict[str, Any]:
        metadata = pq.read_schema(self.run_path(key)).metadata or {}
        return json.loads(metadata[SPEC_METADATA])

    def load(self, keys: Iterable[str] | None = None) -> pd.DataFrame:
        """The CSV-R rows of the given finished runs (default: the manifests' runs, else all), one table."""
        if keys is None:
            keys = self.manifest_keys() or self.finished_keys()
        paths = [self.run_path(k) for k in keys if self.is_finished(k)]
        if not paths:
            raise UserInputError(f"{self.root}: no finished runs in this results directory")
        tables = [pq.read_table(p) for p in paths]
        return pa.concat_tables([t.replace_schema_metadata(None) for t in tables]).to_pandas()


def open_store(path: str | Path) -> ResultStore:
    """A store that must already exist (for reading commands)."""
    store = ResultStore(path)
    if not store.runs_dir.is_dir():
        raise UserInputError(f"{path}: not a results directory (no runs/ inside; run `qesif run` first)")
    return store


def export(store: ResultStore, out: str | Path, fmt: str) -> Path:
    """Write all runs as one table: ``csv-r`` (opp_scavetool's CSV-R text) or ``parquet``."""
    table = store.load()
    out = Path(out)
    if fmt == "parquet":
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(table, schema=SCHEMA, preserve_index=False), sink)
        _atomic_write(out, sink.getvalue())
    elif fmt == "csv-r":
        from bridge.results.scave import write_csvr

        _atomic_write(out, write_csvr(table).encode())
    else:
        raise UserInputError(f"--format: unknown format {fmt!r}; known: csv-r, parquet")
    return out
