"""A stratified, de-duplicated sample of a full dataset file, streamed in bounded memory.

Distinct records: rows with the same text in the loader's feature columns, label and attack type are one
record (the unit of the detection metrics, ``docs/qids.md``): the sample keeps the earliest such row once.
Rows of the full releases differ in their row ids and times, so exact-duplicate removal alone would keep
repeats of one record. Each row gets a priority from a seeded hash of its record
(``evaluate.group_uniform``), so repeats share one priority; per class (the loader's attack type:
``normal``, ``ddos``, ...) the sample keeps the ``per_class`` distinct records of smallest priority. That
is a uniform random sample without replacement of each class's distinct records (a bottom-k sample),
whatever the order of the file, and it needs only the rows kept so far plus one chunk: memory is bounded
by ``classes x per_class + chunksize`` rows, not by the file (``SampleReport.max_rows_held`` records the
peak). Classes with fewer distinct records are kept whole. The rows are written verbatim (every column,
the file's order) after a provenance header of ``#`` lines (source, its SHA-256, rows read, per-class
counts, seed), which the loaders skip.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bridge.datasets import DEFAULT_CHUNKSIZE, open_dataset
from bridge.datasets.base import COMMENT_MARK, MISSING_TOKENS, ChunkContext, csv_chunks, labels
from bridge.datasets.evaluate import group_uniform
from qesif_core.errors import UserInputError

_ROW = "__row"
_PRIORITY = "__priority"
_CLASS = "__class"
_HASH = "__hash"


@dataclass
class SampleReport:
    """What a sampling pass read and kept."""

    rows_read: int = 0
    chunks: int = 0
    #: The most rows held at once (kept rows + the chunk being merged): the memory bound.
    max_rows_held: int = 0
    #: class -> distinct records written
    kept: dict[str, int] = field(default_factory=dict)
    #: class -> rows read (repeats included)
    classes_seen: dict[str, int] = field(default_factory=dict)


def file_sha256(path: str | Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while data := handle.read(block):
            digest.update(data)
    return digest.hexdigest()


def sample_file(
    dataset: str,
    path: str | Path,
    out: str | Path,
    per_class: int,
    seed: int = 0,
    chunksize: int = DEFAULT_CHUNKSIZE,
) -> SampleReport:
    """Write a stratified, de-duplicated sample of ``path`` to ``out`` (see the module docstring)."""
    if per_class < 1:
        raise UserInputError(f"--per-class must be >= 1, got {per_class!r}")
    if chunksize < 1:
        raise UserInputError(f"--chunksize must be >= 1, got {chunksize!r}")
    data = open_dataset(dataset, path)
    if Path(out).resolve() == Path(path).resolve():
        raise UserInputError(f"--out {out}: would overwrite the source file")
    variant = data.variant
    record_columns = [
        c for c in (*data.features, variant.label_column, variant.type_column) if c in data.header
    ]
    report = SampleReport()
    kept = pd.DataFrame()
    line = 0
    for chunk in csv_chunks(path, chunksize, dtype=str, keep_default_na=False):
        report.chunks += 1
        typed = chunk.replace({token: np.nan for token in MISSING_TOKENS})
        ctx = ChunkContext(str(path), 2 + line)
        truth = labels(typed, ctx, data.variant.label_column, data.variant.type_column)
        row_hash = pd.util.hash_pandas_object(chunk[record_columns], index=False).to_numpy(dtype=np.uint64)
        chunk = chunk.assign(
            **{
                _ROW: np.arange(line, line + len(chunk)),
                _HASH: row_hash,
                _PRIORITY: group_uniform(row_hash, seed),
                _CLASS: truth["attack_type"].to_numpy(),
            }
        )
        line += len(chunk)
        for kind, count in chunk[_CLASS].value_counts().items():
            report.classes_seen[str(kind)] = report.classes_seen.get(str(kind), 0) + int(count)
        kept = pd.concat([kept, chunk], ignore_index=True) if len(kept) else chunk
        report.max_rows_held = max(report.max_rows_held, len(kept))
        kept = (
            kept.drop_duplicates(_HASH)
            .sort_values([_CLASS, _PRIORITY, _ROW], kind="stable")
            .groupby(_CLASS, sort=False)
            .head(per_class)
        )
    report.rows_read = line
    if not len(kept):
        raise UserInputError(f"{path}: no data rows to sample")
    kept = kept.sort_values(_ROW, kind="stable")
    report.kept = {str(k): int(v) for k, v in kept[_CLASS].value_counts().sort_index().items()}
    _write(out, kept.drop(columns=[_ROW, _HASH, _PRIORITY, _CLASS]), dataset, path, per_class, seed, report)
    return report


def _write(
    out: str | Path,
    rows: pd.DataFrame,
    dataset: str,
    source: str | Path,
    per_class: int,
    seed: int,
    report: SampleReport,
) -> None:
    classes = ", ".join(
        f"{kind} {report.kept.get(kind, 0):,} of {count:,} rows"
        for kind, count in sorted(report.classes_seen.items())
    )
    header = [
        f"qesif datasets sample: a stratified, de-duplicated sample of a {dataset} file",
        f"source: {Path(source).name} (sha256 {file_sha256(source)}, {report.rows_read:,} data rows)",
        f"per class: up to {per_class:,} distinct records (same features, label and type: the earliest row), "
        f"uniform without replacement (bottom-k of a seeded hash of the record, seed {seed})",
        f"kept per class (of the rows read): {classes}",
        "lines starting with # are this header; the loaders skip them",
    ]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8", newline="") as handle:
        for text in header:
            handle.write(f"{COMMENT_MARK} {text}\n")
        rows.to_csv(handle, index=False, lineterminator="\n")
