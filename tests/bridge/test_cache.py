"""The shared-work cache: computed once (also under parallel processes), keyed by every input and the code,
damaged entries recomputed, no key material stored, and the same tables with the cache cold, warm or off
(smoke in ``test_end_to_end.py``; a reduced paper grid here, slow)."""

from __future__ import annotations

import multiprocessing
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from bridge import cache
from bridge.cache import ContentCache, activated, dataset_inputs, shared_array


def _fetch_array(root: Path, inputs: dict, log: Path | None = None) -> np.ndarray:
    def compute() -> np.ndarray:
        if log is not None:
            with open(log, "a") as handle:
                handle.write("computed\n")
            time.sleep(0.5)  # long enough for the other processes to find the entry locked
        return np.arange(5, dtype=np.float64) * inputs["x"]

    with activated(ContentCache(root)):
        return shared_array("test", inputs, compute)


def test_an_entry_is_computed_once_then_read_back(tmp_path):
    log = tmp_path / "log"
    first = _fetch_array(tmp_path / "c", {"x": 2}, log)
    second = _fetch_array(tmp_path / "c", {"x": 2}, log)
    assert np.array_equal(first, second) and second[1] == 2.0
    assert log.read_text().count("computed") == 1
    assert [p.suffix for p in (tmp_path / "c" / "test").iterdir() if not p.name.endswith(".lock")] == [".npy"]


def test_without_an_active_cache_nothing_is_stored(tmp_path):
    calls = []
    value = shared_array("test", {"x": 1}, lambda: calls.append(1) or np.zeros(2))
    assert calls == [1] and value.shape == (2,)
    assert cache.active() is None


def test_every_input_and_the_code_are_in_the_key(tmp_path, monkeypatch):
    store = ContentCache(tmp_path)
    base = store.digest("flows", {"dataset": {"name": "ton_iot"}, "seed": 1})
    assert base != store.digest("flows", {"dataset": {"name": "ton_iot"}, "seed": 2})
    assert base != store.digest("flows", {"dataset": {"name": "bot_iot"}, "seed": 1})
    assert base != store.digest("qkd-links", {"dataset": {"name": "ton_iot"}, "seed": 1})
    assert base == store.digest("flows", {"seed": 1, "dataset": {"name": "ton_iot"}})  # order-free
    monkeypatch.setattr(cache, "code_fingerprint", lambda: "changed code")
    assert base != store.digest("flows", {"dataset": {"name": "ton_iot"}, "seed": 1})


def test_a_changed_dataset_file_is_a_new_input(tmp_path):
    path = tmp_path / "flows.csv"
    path.write_text("a,b\n1,2\n")
    before = dataset_inputs({"name": "ton_iot", "path": str(path), "max_rows": None})
    path.write_text("a,b\n1,3\n")
    after = dataset_inputs({"name": "ton_iot", "path": str(path), "max_rows": None})
    assert before["sha256"] != after["sha256"]
    assert "sha256" not in dataset_inputs({"name": "ton_iot", "path": None, "max_rows": None})


def test_a_damaged_entry_is_computed_again(tmp_path):
    log = tmp_path / "log"
    _fetch_array(tmp_path / "c", {"x": 3}, log)
    (entry,) = (tmp_path / "c" / "test").glob("*.npy")
    entry.write_bytes(b"not an array")
    assert _fetch_array(tmp_path / "c", {"x": 3}, log)[1] == 3.0
    assert log.read_text().count("computed") == 2
    assert np.load(entry)[1] == 3.0  # and replaced


def test_a_value_that_does_not_read_back_equal_is_not_stored(tmp_path):
    store = ContentCache(tmp_path)
    value = store.fetch("odd", {}, lambda: "value", suffix=".txt", dump=lambda v: None, load=bytes.decode)
    assert value == "value"
    assert not list((tmp_path / "odd").glob("*.txt"))


def test_stale_temporaries_of_a_killed_write_are_removed(tmp_path):
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / ".abc.parquet.x1.tmp").write_bytes(b"half")
    (tmp_path / "flows" / "abc.parquet").write_bytes(b"whole")
    assert ContentCache(tmp_path).remove_stale_temporaries() == 1
    assert [p.name for p in (tmp_path / "flows").iterdir()] == ["abc.parquet"]


def test_parallel_workers_compute_an_entry_once(tmp_path):
    log = tmp_path / "log"
    context = multiprocessing.get_context("forkserver")
    with context.Pool(4) as pool:
        values = pool.starmap(_fetch_array, [(tmp_path / "c", {"x": 7}, log)] * 4)
    assert log.read_text().count("computed") == 1
    assert all(np.array_equal(v, values[0]) for v in values)


@pytest.mark.slow
def test_reduced_paper_grid_gives_the_same_bytes_with_the_cache_cold_warm_and_off(tmp_path, reduced_paper):
    from bridge import cli

    scenario = str(reduced_paper)

    def run(out: Path, *options: str) -> dict[str, bytes]:
        code = cli.main(["run", scenario, "--out", str(out), "--no-progress", *options])
        assert code == 0
        return {p.name: p.read_bytes() for p in sorted((out / "runs").glob("*.parquet"))}

    cold = run(tmp_path / "cold", "--jobs", "2")
    shutil.copytree(tmp_path / "cold" / "cache", tmp_path / "warm" / "cache")
    warm = run(tmp_path / "warm")
    off = run(tmp_path / "off", "--no-cache")
    assert len(cold) == 12
    assert cold == warm == off
    assert not (tmp_path / "off" / "cache").exists()
