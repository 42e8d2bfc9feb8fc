"""Wall time and peak memory of the paper's batch, and the speed-up of ``--jobs 2`` over ``--jobs 1``.

Targets (issue 6): the full ``scenarios/paper.yaml`` in <= 5 minutes and <= 2 GiB on a 2-core machine.
Each measurement runs ``qesif run`` in a fresh results directory (nothing cached) as a child process;
peak memory is the largest sum of the resident set sizes of that process and all its descendants
(workers included), sampled every 0.1 s; CPU seconds are those of the whole process tree (user + system,
as last sampled), which shows what a batch costs when other work shares the machine (wall ~ CPU / cores
when idle).

The full batch is long, so it runs once (no median). The speed-up is measured on a sub-grid (the
scenario restricted to its first dataset: a third of the runs), jobs 1 and jobs 2 alternated,
``QESIF_BENCH_REPEATS`` times (default 1), medians reported. Environment:
``QESIF_BENCH_SCENARIO`` (default scenarios/paper.yaml), ``QESIF_BENCH_JOBS`` (default 2),
``QESIF_BENCH_SKIP_FULL=1`` to measure the speed-up only.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parent.parent
QESIF = [sys.executable, "-m", "bridge.cli"]
TARGET_WALL_S = 300.0
TARGET_PEAK_GIB = 2.0


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def measure(scenario: Path, jobs: int) -> dict[str, float | int]:
    """One fresh batch: wall seconds, peak resident memory of the process tree (GiB), exit code."""
    with tempfile.TemporaryDirectory(prefix="qesif-bench-") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [*QESIF, "run", str(scenario), "--jobs", str(jobs), "--out", out, "--no-progress"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        parent = psutil.Process(proc.pid)
        peak = 0
        cpu_by_pid: dict[int, float] = {}
        while proc.poll() is None:
            rss = 0
            for process in [parent, *_children(parent)]:
                try:
                    with process.oneshot():
                        rss += process.memory_info().rss
                        times = process.cpu_times()
                        cpu_by_pid[process.pid] = times.user + times.system
                except psutil.Error:
                    continue
            peak = max(peak, rss)
            time.sleep(0.1)
        wall = time.perf_counter() - started
        cpu = sum(cpu_by_pid.values())
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        runs = len(list(Path(out, "runs").glob("*.parquet")))
    if proc.returncode != 0:
        print(stderr[-2000:], file=sys.stderr)
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 1),
        "peak_gib": round(peak / 2**30, 3),
        "exit": proc.returncode,
        "runs": runs,
    }


def _first_dataset_only(scenario: Path, folder: Path) -> Path:
    data = yaml.safe_load(scenario.read_text())
    data["datasets"] = data.get("datasets", ["ton_iot"])[:1]
    for entry in data["datasets"]:
        if isinstance(entry, dict) and entry.get("path") and not Path(entry["path"]).is_absolute():
            entry["path"] = str((scenario.parent / entry["path"]).resolve())
    data["name"] = f"{data.get('name', 'bench')}-first-dataset"
    path = folder / "subgrid.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run() -> dict:
    scenario = Path(os.environ.get("QESIF_BENCH_SCENARIO", REPO / "scenarios" / "paper.yaml"))
    jobs = int(os.environ.get("QESIF_BENCH_JOBS", "2"))
    repeats = int(os.environ.get("QESIF_BENCH_REPEATS", "1"))
    figures: dict[str, object] = {
        "scenario": str(scenario.relative_to(REPO) if scenario.is_relative_to(REPO) else scenario)
    }
    figures["cpu_count"] = os.cpu_count()
    if os.environ.get("QESIF_BENCH_SKIP_FULL") != "1":
        full = measure(scenario, jobs)
        figures.update({f"full_jobs{jobs}_{k}": v for k, v in full.items()})
        figures["full_within_targets"] = (
            full["exit"] == 0 and full["wall_s"] <= TARGET_WALL_S and full["peak_gib"] <= TARGET_PEAK_GIB
        )
    with tempfile.TemporaryDirectory() as tmp:
        sub = _first_dataset_only(scenario, Path(tmp))
        one, two = [], []
        for _ in range(repeats):
            one.append(measure(sub, 1))
            two.append(measure(sub, 2))
    wall_1 = statistics.median(m["wall_s"] for m in one)
    wall_2 = statistics.median(m["wall_s"] for m in two)
    figures.update(
        {
            "subgrid_runs": one[0]["runs"],
            "subgrid_jobs1_wall_s": wall_1,
            "subgrid_jobs2_wall_s": wall_2,
            "subgrid_jobs1_peak_gib": max(m["peak_gib"] for m in one),
            "subgrid_jobs2_peak_gib": max(m["peak_gib"] for m in two),
            "speedup_jobs2_over_jobs1": round(wall_1 / wall_2, 2) if wall_2 else None,
            "subgrid_all_ok": all(m["exit"] == 0 for m in one + two),
        }
    )
    return figures


if __name__ == "__main__":
    import json

    print(json.dumps(run()))
