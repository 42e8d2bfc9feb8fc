"""End to end with the real orchestrator (``run_once``) on small scenarios: the CLI, resumability after
SIGKILL, and byte-identical results whatever ``--jobs``."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from bridge import cli
from bridge.cosim import links
from bridge.store import ResultStore
from qesif_core.qkd.trace import TRACE_COLUMNS

QESIF = [sys.executable, "-m", "bridge.cli"]


def _qesif(*args, cwd):
    return subprocess.run([*QESIF, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=600)


def _parquet_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "runs").glob("*.parquet"))}


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    """smoke.yaml run with --jobs 2 and with --jobs 1 into two fresh directories."""
    repo = Path(__file__).resolve().parents[2]
    base = tmp_path_factory.mktemp("smoke")
    procs = {}
    for jobs in (2, 1):
        procs[jobs] = _qesif(
            "run", "scenarios/smoke.yaml", "--jobs", str(jobs), "--out", str(base / f"j{jobs}"), cwd=repo
        )
    return base, procs


def test_smoke_batch_runs_every_run_with_the_real_orchestrator(smoke_results):
    base, procs = smoke_results
    for jobs, proc in procs.items():
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "4 run now, 0 already stored, 0 failed" in proc.stderr, jobs
    table = ResultStore(base / "j2").load()
    assert set(table.loc[table["type"] == "runattr", "attrname"]) >= {"dataset", "channel", "scheme", "seed"}
    qber = table[(table["type"] == "vector") & (table["module"] == "qkd") & (table["name"] == "qber")]
    assert len(qber) == 4 and all(len(v) == 5 for v in qber["vecvalue"])


def test_results_are_byte_identical_whatever_jobs(smoke_results):
    base, _ = smoke_results
    two, one = _parquet_bytes(base / "j2"), _parquet_bytes(base / "j1")
    assert len(one) == 4
    assert one == two


def test_figures_and_report_from_a_real_batch(smoke_results, tmp_path):
    base, _ = smoke_results
    assert cli.main(["figures", str(base / "j1"), "--out", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig" / "fig2_qber.png").stat().st_size > 10_000
    assert cli.main(["report", str(base / "j1"), "--out", str(tmp_path / "r.html")]) == 0
    assert "data:image/png;base64," in (tmp_path / "r.html").read_text()


def test_sigkill_mid_batch_then_rerun_loses_and_recomputes_nothing(tmp_path, repo_root):
    scenario = tmp_path / "kill.yaml"
    scenario.write_text(
        "name: kill\nseeds: [1, 2, 3, 4]\nrounds: 3\nround_duration_s: 0.5\n"
        "datasets: [{name: ton_iot, max_rows: 2000}]\nchannels: [clean]\nschemes: [QESIF]\n"
        "network: {devices: 6, gateways: 2}\nqkd: {pulses_per_block: 20000}\n"
    )
    out = tmp_path / "res"
    proc = subprocess.Popen(
        [*QESIF, "run", str(scenario), "--jobs", "2", "--out", str(out), "--no-progress"],
        cwd=repo_root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not list((out / "runs").glob("*.parquet")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = _parquet_bytes(out)
    assert 1 <= len(finished) < 4, "the kill should land mid-batch"
    for name in finished:
        pq.read_table(out / "runs" / name)  # every stored run is complete
    rerun = _qesif("run", str(scenario), "--jobs", "2", "--out", str(out), "--no-progress", cwd=repo_root)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{4 - len(finished)} run now, {len(finished)} already stored, 0 failed" in rerun.stderr
    after = _parquet_bytes(out)
    assert len(after) == 4
    assert all(after[name] == data for name, data in finished.items())
    assert not list((out / "runs").glob(".*"))


def test_dask_cluster_batch_from_the_cli_matches_the_local_batch(
    smoke_results, tmp_path, repo_root, monkeypatch
):
    distributed = pytest.importorskip("dask.distributed")
    base, _ = smoke_results
    monkeypatch.chdir(repo_root)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as c:
        code = cli.main(
            [
                "run",
                "scenarios/smoke.yaml",
                "--scheduler",
                c.scheduler_address,
                "--out",
                str(tmp_path),
                "--no-progress",
            ]
        )
    assert code == 0
    assert _parquet_bytes(tmp_path) == _parquet_bytes(base / "j1")


def test_reduced_paper_grid_on_two_dask_worker_processes_matches_jobs_2(reduced_paper, tmp_path):
    """Issue 14: the paper grid on a local Dask cluster of two worker processes stores the same bytes as
    ``--jobs 2`` (two datasets x three channels x two schemes; each batch with its own cold cache)."""
    distributed = pytest.importorskip("dask.distributed")

    def run(out: Path, *options: str) -> dict[str, bytes]:
        code = cli.main(["run", str(reduced_paper), "--out", str(out), "--no-progress", *options])
        assert code == 0
        return _parquet_bytes(out)

    local = run(tmp_path / "jobs2", "--jobs", "2")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        assert len(cluster.workers) == 2
        on_dask = run(tmp_path / "dask", "--scheduler", cluster.scheduler_address)
    assert len(local) == 12
    assert on_dask == local
    tables = [ResultStore(tmp_path / name).load() for name in ("jobs2", "dask")]
    assert set(tables[0]["run"]) == set(tables[1]["run"]) and len(set(tables[0]["run"])) == 12


def test_the_cache_warm_or_off_gives_the_same_bytes_and_a_warm_run_fits_and_simulates_nothing(
    smoke_results, tmp_path, repo_root
):
    """The --jobs 2 batch filled its cache (cold); a batch reading it (warm) and one without it (off)
    store the same bytes. The warm batch adds no entry and never imports scikit-learn: it fits no
    classifier and computes no channel's QKD afresh."""
    base, _ = smoke_results
    shutil.copytree(base / "j2" / "cache", tmp_path / "warm" / "cache")
    entries = sorted(p.relative_to(tmp_path) for p in (tmp_path / "warm" / "cache").rglob("*.*"))
    arguments = ["run", "scenarios/smoke.yaml", "--out", str(tmp_path / "warm"), "--no-progress"]
    probe = (
        "import sys\n"
        "from bridge import cli\n"
        f"code = cli.main({arguments!r})\n"
        "print(code, sorted({m.split('.')[0] for m in sys.modules} & {'sklearn'}))\n"
    )
    warm = subprocess.run([sys.executable, "-c", probe], cwd=repo_root, capture_output=True, text=True)
    assert warm.stdout.split("\n")[0] == "0 []", warm.stdout + warm.stderr
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "warm" / "cache").rglob("*.*")) == entries
    off = _qesif("run", "scenarios/smoke.yaml", "--no-cache", "--out", str(tmp_path / "off"), cwd=repo_root)
    assert off.returncode == 0, off.stderr
    cold = _parquet_bytes(base / "j2")
    assert _parquet_bytes(tmp_path / "warm") == cold == _parquet_bytes(tmp_path / "off")
    assert not (tmp_path / "off" / "cache").exists()


def test_the_cache_holds_no_key_material(smoke_results):
    """The QKD entries hold block figures, calibration traces and generator states only (docs:
    bridge.cache): no array as long as a block's key."""
    base, _ = smoke_results
    entries = list((base / "j2" / "cache" / "qkd-links").glob("*.npz"))
    assert len(entries) == 2  # the smoke grid's two channels
    generator = {"state_hi", "state_lo", "inc_hi", "inc_lo", "has_uint32", "uinteger"}
    allowed = {*links.BLOCK_FIGURES, "frame_bits", "reconciled_bits", *generator} | {
        f"{prefix}.{column}" for prefix in ("reference", "benign") for column in TRACE_COLUMNS
    }
    for entry in entries:
        with np.load(entry, allow_pickle=False) as archive:
            assert set(archive.files) <= allowed, set(archive.files) - allowed
            assert all(archive[name].dtype.kind in "fiu" for name in archive.files)
            rounds = archive["qber"].shape[1]
            assert all(
                archive[name].shape[-1] in (rounds, archive["qber"].shape[0]) or "." in name
                for name in archive.files
            )  # per block or per link, never a key's bits
    kinds = {p.name for p in (base / "j2" / "cache").iterdir()}
    assert kinds == {"flows", "flow-probability", "qkd-links"}
