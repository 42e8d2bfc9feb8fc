"""The paper's datasets (TON_IoT, Edge-IIoTset, Bot-IoT) as one common flow table, read in bounded memory.

``load_flows(name, path, rng)`` returns the flow table (``FLOW_COLUMNS`` then ``feat_*`` features) with
``attrs["synthetic"]``; ``iter_flow_chunks`` streams it chunk by chunk for files of millions of rows. With
no path, rows come from the dataset's schema-compatible synthetic generator and are marked synthetic.

Each dataset module declares ``NAME, TITLE, CITATION``, its layouts (``VARIANTS``, one chosen per file
header by ``choose_variant``), the columns it never uses as features (``NEVER_FEATURES``: column ->
reason) and a generator ``synthetic_raw(n, rng)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from bridge.datasets import bot_iot, edge_iiotset, ton_iot
from bridge.datasets.base import (
    DEFAULT_CHUNKSIZE,
    FEATURE_PREFIX,
    FLOW_COLUMNS,
    ChunkContext,
    Variant,
    check_columns,
    iter_raw_chunks,
    read_header,
)
from qesif_core.errors import UserInputError

__all__ = [
    "DATASETS",
    "DEFAULT_CHUNKSIZE",
    "FEATURE_PREFIX",
    "FLOW_COLUMNS",
    "DatasetFile",
    "describe_file",
    "iter_flow_chunks",
    "iter_synthetic_chunks",
    "load_flows",
    "open_dataset",
    "synthetic_header",
    "write_synthetic_csv",
]

#: Dataset name -> module with NAME, TITLE, CITATION, choose_variant(header), synthetic_raw(n, rng).
DATASETS: dict[str, ModuleType] = {m.NAME: m for m in (ton_iot, edge_iiotset, bot_iot)}
DEFAULT_SYNTHETIC_ROWS = 20_000


def dataset_module(name: str) -> ModuleType:
    if name not in DATASETS:
        raise UserInputError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


class DatasetFile:
    """A dataset file whose header has been checked against the named dataset's schema."""

    def __init__(self, name: str, path: str | Path) -> None:
        module = dataset_module(name)
        self.name = name
        self.path = Path(path)
        self.header = read_header(self.path)
        self.variant: Variant = module.choose_variant(self.header)
        check_columns(self.path, self.header, self.variant, name)

    @property
    def features(self) -> list[str]:
        """The loader's features this file has (its flow table's ``feat_*`` columns, unprefixed)."""
        return self.variant.features_in(self.header)

    def chunks(
        self, chunksize: int = DEFAULT_CHUNKSIZE, max_rows: int | None = None
    ) -> Iterator[pd.DataFrame]:
        """Flow-table chunks of at most ``chunksize`` rows, ``max_rows`` in all (None: the whole file)."""
        if chunksize < 1:
            raise UserInputError(f"chunksize must be >= 1, got {chunksize!r}")
        remaining = max_rows
        for raw, ctx in iter_raw_chunks(self.path, self.variant, self.header, chunksize):
            if remaining is not None:
                if remaining <= 0:
                    return
                raw = raw.iloc[:remaining]
                remaining -= len(raw)
            flows = self.variant.to_flows(raw, ctx)
            flows.attrs["synthetic"] = False
            yield flows


def open_dataset(name: str, path: str | Path) -> DatasetFile:
    """Check ``path`` is a ``name`` file (UserInputError listing missing expected columns otherwise)."""
    return DatasetFile(name, path)


def iter_flow_chunks(
    name: str, path: str | Path, chunksize: int = DEFAULT_CHUNKSIZE, max_rows: int | None = None
) -> Iterator[pd.DataFrame]:
    """Stream the flow table of a dataset file in chunks (bounded memory)."""
    return open_dataset(name, path).chunks(chunksize, max_rows)


def synthetic_header(name: str) -> list[str]:
    """The columns of the dataset's generator output."""
    return list(dataset_module(name).synthetic_raw(1, np.random.default_rng(0)).columns)


def iter_synthetic_chunks(
    name: str, n_rows: int, rng: np.random.Generator, chunksize: int = DEFAULT_CHUNKSIZE
) -> Iterator[pd.DataFrame]:
    """Synthetic flow-table chunks (through the same mapping as files), marked synthetic."""
    module = dataset_module(name)
    for start in range(0, n_rows, chunksize):
        raw = module.synthetic_raw(min(chunksize, n_rows - start), rng)
        variant = module.choose_variant(list(raw.columns))
        ctx = ChunkContext(f"<synthetic {name}>", start + 2)
        flows = variant.to_flows(raw.replace({"-": np.nan, "": np.nan}), ctx)
        flows.attrs["synthetic"] = True
        yield flows


def load_flows(
    name: str,
    path: str | Path | None,
    rng: np.random.Generator,
    max_rows: int | None = None,
    chunksize: int = DEFAULT_CHUNKSIZE,
    synthetic_rows: int = DEFAULT_SYNTHETIC_ROWS,
) -> pd.DataFrame:
    """The flow table of a dataset file, or of ``synthetic_rows`` synthetic rows when ``path`` is None.

    ``attrs``: ``dataset``, ``source`` (the path or "synthetic") and ``synthetic`` (bool).
    """
    if path is None:
        n = synthetic_rows if max_rows is None else min(max_rows, synthetic_rows)
        chunks: Iterator[pd.DataFrame] = iter_synthetic_chunks(name, n, rng, chunksize)
        synthetic, source = True, "synthetic"
    else:
        chunks = iter_flow_chunks(name, path, chunksize, max_rows)
        synthetic, source = False, str(path)
    frames = list(chunks)
    flows = pd.concat(frames, ignore_index=True) if frames else _empty(name)
    flows.attrs.update({"dataset": name, "source": source, "synthetic": synthetic})
    return flows


def _empty(name: str) -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype=object if c in ("device_key", "protocol") else float) for c in FLOW_COLUMNS}
    )


def write_synthetic_csv(
    name: str, path: str | Path, n_rows: int, rng: np.random.Generator, chunksize: int = DEFAULT_CHUNKSIZE
) -> Path:
    """Write ``n_rows`` synthetic rows in the dataset's raw schema to a CSV file (tests, benchmarks)."""
    module = dataset_module(name)
    path = Path(path)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        for i, start in enumerate(range(0, n_rows, chunksize)):
            raw = module.synthetic_raw(min(chunksize, n_rows - start), rng)
            raw.to_csv(handle, index=False, header=(i == 0))
    return path


def detect_dataset(header: list[str]) -> str | None:
    """The dataset whose schema a header fits (its required columns present), or None."""
    for name, module in DATASETS.items():
        variant = module.choose_variant(header)
        if all(c in header for c in variant.required):
            return name
    return None


def describe_file(path: str | Path, chunksize: int = DEFAULT_CHUNKSIZE) -> dict:
    """Which dataset a file is, its layout, row count and class counts (one streaming pass)."""
    header = read_header(path)
    name = detect_dataset(header)
    if name is None:
        closest = {
            n: [c for c in m.choose_variant(header).required if c not in header] for n, m in DATASETS.items()
        }
        detail = "; ".join(f"{n} lacks {', '.join(cols)}" for n, cols in closest.items())
        raise UserInputError(f"{path}: not a known dataset file ({detail})")
    data = open_dataset(name, path)
    rows = 0
    labels = {"benign": 0, "attack": 0}
    types: dict[str, int] = {}
    devices: set[str] = set()
    for chunk in data.chunks(chunksize):
        rows += len(chunk)
        attacks = int(chunk["label"].sum())
        labels["attack"] += attacks
        labels["benign"] += len(chunk) - attacks
        for kind, count in chunk["attack_type"].value_counts().items():
            types[str(kind)] = types.get(str(kind), 0) + int(count)
        if len(devices) <= 10_000:
            devices.update(itertools.islice(chunk["device_key"].unique(), 10_001))
    missing_schema = [c for c in data.variant.schema if c not in header]
    return {
        "path": str(path),
        "dataset": name,
        "layout": data.variant.name,
        "title": DATASETS[name].TITLE,
        "rows": rows,
        "labels": labels,
        "attack_types": dict(sorted(types.items())),
        "devices": len(devices) if len(devices) <= 10_000 else "more than 10000",
        "columns": len(header),
        "schema_columns_absent": missing_schema,
        "features": [
            c for c in (*data.variant.numeric_features, *data.variant.categorical_features) if c in header
        ],
    }
