"""A content-addressed cache, beside the results store, of what several runs of a batch share.

Runs of a grid repeat work: every scheme and dataset on a channel gets, from the same seed, the same QKD
blocks on its gateway links; every channel and most schemes on a dataset train the same flow classifier on
the same split. A batch computes each such piece once and the other runs read it back. Entries (one file
each, ``<results>/cache/<kind>/<digest>.<ext>``):

- ``flows``: a dataset's flow table (``bridge.datasets.load_flows``), per dataset entry of the run spec (name,
  path and a SHA-256 of the file's bytes, max_rows) and seed; Parquet, kept only when it reads back equal.
- ``flow-probability``: the trained flow classifier's P(attack) for every record of that table, per the
  above and train fraction and classifier; one float64 array (``.npy``).
- ``qkd-links``: the figures of every QKD block of a run's gateway links (QBER, H_q, secret bits, loss per
  link and round) and the Q-IDS calibration traces, per seed, channel, ``qkd`` section, gateways, rounds and
  calibration settings (``.npz``). No key bytes: see ``bridge.cosim.links``.

The digest is a SHA-256 of the entry's kind, its inputs (canonical JSON) and the code fingerprint
(``bridge.provenance``), so any change of an input or of the code makes a new entry; nothing is ever
updated in place. Writes go to a temporary file in the same folder and are moved into place with
``os.replace`` while holding an exclusive ``flock`` on ``<digest>.lock``, so two workers (processes of a
local pool, or Dask workers on one machine) that need the same entry compute it once: the second waits and
reads. A reader needs no lock (a file is complete or absent); an entry that cannot be read is computed
again. Workers on other machines without a shared file system each keep their own copy (the path is the
same), which costs time, never correctness.

The batch makes a cache active for each run (:func:`activated`); code asks :func:`active` and computes
directly when there is none (``qesif run --no-cache``, tests, the services). Same seeds, same tables with
the cache cold, warm or off (``tests/bridge/test_cache.py``).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bridge.provenance import code_fingerprint

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The cache folder inside a results directory.
CACHE_DIR = "cache"

_ACTIVE: contextvars.ContextVar[ContentCache | None] = contextvars.ContextVar("qesif_cache", default=None)


class ContentCache:
    """Entries addressed by a digest of their inputs and the code (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def digest(self, kind: str, inputs: Mapping[str, Any]) -> str:
        canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(f"{code_fingerprint()}\n{kind}\n{canonical}".encode()).hexdigest()

    def remove_stale_temporaries(self) -> int:
        """Delete half-written files left by a killed batch (never a complete entry)."""
        stale = list(self.root.glob("*/.*.tmp")) if self.root.is_dir() else []
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def fetch(
        self,
        kind: str,
        inputs: Mapping[str, Any],
        compute: Callable[[], T],
        *,
        suffix: str,
        dump: Callable[[T], bytes | None],
        load: Callable[[bytes], T],
    ) -> T:
        """The entry for ``inputs``: read it, or compute it once (others wait) and store it.

        ``dump`` returns the bytes to store, or None when the value cannot be stored faithfully (then it
        is returned but not cached); ``load`` rebuilds the value from those bytes.
        """
        path = self.root / kind / f"{self.digest(kind, inputs)}{suffix}"
        value = self._read(path, load)
        if value is not None:
            return value
        path.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(path.with_suffix(".lock")):
            value = self._read(path, load)  # computed by another worker while this one waited
            if value is not None:
                return value
            value = compute()
            data = dump(value)
            if data is None:
                log.info("cache %s: value does not round-trip, not stored", kind)
            else:
                _atomic_write(path, data)
        return value

    @staticmethod
    def _read(path: Path, load: Callable[[bytes], T]) -> T | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return load(data)
        except Exception as exc:  # a damaged entry is computed again (and replaced)
            log.warning("cache entry %s unreadable (%s); computing it again", path, type(exc).__name__)
            return None


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    import fcntl

    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def for_results(results_root: str | Path) -> ContentCache:
    """The cache beside a results store (``<results>/cache``), absolute so that workers find it."""
    return ContentCache(Path(results_root).resolve() / CACHE_DIR)


def active() -> ContentCache | None:
    """The cache of the run being executed, or None (compute everything)."""
    return _ACTIVE.get()


@contextlib.contextmanager
def activated(cache: ContentCache | None) -> Iterator[ContentCache | None]:
    """Make ``cache`` the active one for the code run inside (one run of a batch)."""
    token = _ACTIVE.set(cache)
    try:
        yield cache
    finally:
        _ACTIVE.reset(token)


# ---------------------------------------------------------------------- typed entries
@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_inputs(dataset: Mapping[str, Any]) -> dict[str, Any]:
    """A run spec's dataset entry plus the SHA-256 of its file's bytes (a changed file is a new input)."""
    inputs = dict(dataset)
    path = dataset.get("path")
    if path:
        stat = os.stat(path)
        inputs["sha256"] = _file_digest(str(path), stat.st_size, stat.st_mtime_ns)
    return inputs


def _frame_bytes(frame: pd.DataFrame) -> bytes | None:
    """Parquet bytes of ``frame`` when they read back identical (values, dtypes, index, attrs)."""
    sink = io.BytesIO()
    frame.to_parquet(sink)
    data = sink.getvalue()
    back = _frame_from(data)
    same = (
        back.attrs == frame.attrs
        and list(back.dtypes) == list(frame.dtypes)
        and back.index.equals(frame.index)
        and back.equals(frame)
    )
    return data if same else None


def _frame_from(data: bytes) -> pd.DataFrame:
    import pandas as pd

    return pd.read_parquet(io.BytesIO(data))


def _array_bytes(array: np.ndarray) -> bytes:
    import numpy as np

    sink = io.BytesIO()
    np.save(sink, array, allow_pickle=False)
    return sink.getvalue()


def _array_from(data: bytes) -> np.ndarray:
    import numpy as np

    return np.load(io.BytesIO(data), allow_pickle=False)


def _arrays_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    import numpy as np

    sink = io.BytesIO()
    np.savez(sink, **arrays)
    return sink.getvalue()


def _arrays_from(data: bytes) -> dict[str, np.ndarray]:
    import numpy as np

    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def shared_frame(kind: str, inputs: Mapping[str, Any], compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """A table from the active cache (Parquet), or ``compute()`` when no cache is active."""
    cache = active()
    if cache is None:
        return compute()
    return cache.fetch(kind, inputs, compute, suffix=".parquet", dump=_frame_bytes, load=_frame_from)


def shared_array(kind: str, inputs: Mapping[str, Any], compute: Callable[[], np.ndarray]) -> np.ndarray:
    """One array from the active cache (``.npy``), or ``compute()`` when no cache is active."""
    cache = active()
    if cache is None:
        return compute()
    return cache.fetch(kind, inputs, compute, suffix=".npy", dump=_array_bytes, load=_array_from)


def shared_arrays(
    kind: str, inputs: Mapping[str, Any], compute: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Named arrays from the active cache (``.npz``), or ``compute()`` when no cache is active."""
    cache = active()
    if cache is None:
        return compute()
    return cache.fetch(kind, inputs, compute, suffix=".npz", dump=_arrays_bytes, load=_arrays_from)
