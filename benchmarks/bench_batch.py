"""``make run``'s batch: wall time, CPU and peak memory of the paper's two scenarios, and the same
measurement of another source tree (the pre-change code) in the same session, with the two trees' tables
compared value by value.

What is measured (issue 14): ``qesif run scenarios/paper.yaml`` then ``qesif run scenarios/ablation.yaml``
(72 distinct runs; the full-QESIF runs are shared) with ``--jobs 2`` into one empty results folder, each
tree with its own interpreter (``<tree>/.venv/bin/python``, a warm venv) and its own scenario files. The
results folder starts empty, so the shared-work cache beside it (``<out>/cache``) starts cold too. Target:
<= 60 s wall on two cores. Peak memory is the largest sum of the resident set sizes of the batch process
and all its descendants (workers included), sampled every 0.1 s; CPU seconds are those of the whole
process tree (user + system, as last sampled): wall ~ CPU / cores on an idle machine, so CPU shows what a
batch costs when other work shares the machine.

Environment: ``QESIF_BENCH_TREE`` (tree to measure; default this repository), ``QESIF_BENCH_BASELINE``
(a second tree, e.g. ``git worktree add --detach ../baseline <commit>`` with ``make install build`` there:
measured in the same run, alternating with the first, and compared), ``QESIF_BENCH_JOBS`` (2),
``QESIF_BENCH_REPEATS`` (1; medians over repeats), ``QESIF_BENCH_SCENARIOS`` (comma-separated paths
relative to each tree; default the two above), ``QESIF_BENCH_SPEEDUP=1`` (also the ``--jobs 1`` vs
``--jobs 2`` speed-up on the first scenario's first dataset), ``QESIF_BENCH_KEEP`` (a folder that keeps the
results folders, for a later look; default: a temporary folder, removed).

The comparison pairs runs by their label (scheme, dataset, channel, seed and swept values; run keys differ
between trees because they include the code fingerprint) and counts scalars and vector values that are not
identical (NaN equals NaN): 0 means the same tables.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SCENARIOS = ("scenarios/paper.yaml", "scenarios/ablation.yaml")
TARGET_WALL_S = 60.0
#: How many differing values a comparison names (the count covers all).
SHOWN_DIFFERENCES = 5


def _python(tree: Path) -> str:
    venv = tree / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def _watch(command: list[str], cwd: Path) -> dict[str, Any]:
    """Run ``command``; its wall seconds, CPU seconds and peak RSS (bytes) of the process tree, exit code."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        print(stderr[-2000:], file=sys.stderr)
    return {
        "wall_s": time.perf_counter() - started,
        "cpu_s": sum(cpu_by_pid.values()),
        "peak": peak,
        "exit": proc.returncode,
    }


def _options(jobs: int, out: Path) -> list[str]:
    return ["--jobs", str(jobs), "--out", str(out)]


def measure(tree: Path, scenarios: list[str], jobs: int, out: Path) -> dict[str, Any]:
    """The scenarios run one after the other into the empty folder ``out`` with ``tree``'s code."""
    total = {"wall_s": 0.0, "cpu_s": 0.0, "peak": 0, "exit": 0}
    for scenario in scenarios:
        step = _watch(
            [_python(tree), "-m", "bridge.cli", "run", scenario, "--no-progress", *_options(jobs, out)],
            tree,
        )
        total["wall_s"] += step["wall_s"]
        total["cpu_s"] += step["cpu_s"]
        total["peak"] = max(total["peak"], step["peak"])
        total["exit"] = total["exit"] or step["exit"]
    runs = len(list((out / "runs").glob("*.parquet")))
    return {
        "wall_s": round(total["wall_s"], 2),
        "cpu_s": round(total["cpu_s"], 1),
        "peak_gib": round(total["peak"] / 2**30, 3),
        "exit": total["exit"],
        "runs": runs,
        "wall_per_run_s": round(total["wall_s"] / runs, 3) if runs else None,
        "cpu_per_run_s": round(total["cpu_s"] / runs, 3) if runs else None,
    }


def stored_values(out: Path) -> dict[str, dict[str, Any]]:
    """Per run label: its scalars and vectors (``module/name`` -> value or tuple of values)."""
    tables: dict[str, dict[str, Any]] = {}
    for path in sorted((out / "runs").glob("*.parquet")):
        rows = pq.read_table(path).to_pylist()
        attrs = {r["attrname"]: r["attrvalue"] for r in rows if r["type"] in ("runattr", "itervar")}
        label = " ".join(f"{k}={attrs[k]}" for k in sorted(attrs) if k != "backend")
        values: dict[str, Any] = {}
        for row in rows:
            if row["type"] == "scalar":
                values[f"{row['module']}/{row['name']}"] = row["value"]
            elif row["type"] == "vector":
                values[f"{row['module']}/{row['name']}[]"] = tuple(row["vecvalue"] or ())
        tables[label] = values
    return tables


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def compare(baseline: dict[str, dict[str, Any]], candidate: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """How many values of the runs both trees stored differ (missing names count as differences)."""
    common = sorted(set(baseline) & set(candidate))
    compared = differing = 0
    shown: list[str] = []
    for label in common:
        before, after = baseline[label], candidate[label]
        for name in sorted(set(before) | set(after)):
            compared += 1
            if name in before and name in after and _same(before[name], after[name]):
                continue
            differing += 1
            if len(shown) < SHOWN_DIFFERENCES:
                shown.append(f"{label}: {name}: {before.get(name)!r} -> {after.get(name)!r}"[:300])
    return {
        "runs_compared": len(common),
        "runs_only_in_one_tree": len(set(baseline) ^ set(candidate)),
        "values_compared": compared,
        "values_differing": differing,
        "first_differences": shown,
    }


def _speedup(tree: Path, scenario: str, repeats: int, folder: Path) -> dict[str, Any]:
    """``--jobs 1`` against ``--jobs 2`` on the scenario restricted to its first dataset."""
    data = yaml.safe_load((tree / scenario).read_text())
    data["datasets"] = data.get("datasets", ["ton_iot"])[:1]
    for entry in data["datasets"]:
        if isinstance(entry, dict) and entry.get("path") and not Path(entry["path"]).is_absolute():
            entry["path"] = str(((tree / scenario).parent / entry["path"]).resolve())
    data["name"] = f"{data.get('name', 'bench')}-first-dataset"
    sub = folder / "subgrid.yaml"
    sub.write_text(yaml.safe_dump(data))
    walls: dict[int, list[float]] = {1: [], 2: []}
    for index in range(repeats):
        for jobs in (1, 2):
            out = folder / f"speedup-{jobs}-{index}"
            walls[jobs].append(measure(tree, [str(sub)], jobs, out)["wall_s"])
    one, two = statistics.median(walls[1]), statistics.median(walls[2])
    return {
        "subgrid_jobs1_wall_s": one,
        "subgrid_jobs2_wall_s": two,
        "speedup_jobs2_over_jobs1": round(one / two, 2) if two else None,
    }


def run() -> dict:
    tree = Path(os.environ.get("QESIF_BENCH_TREE", REPO)).resolve()
    baseline_env = os.environ.get("QESIF_BENCH_BASELINE")
    baseline = Path(baseline_env).resolve() if baseline_env else None
    jobs = int(os.environ.get("QESIF_BENCH_JOBS", "2"))
    repeats = int(os.environ.get("QESIF_BENCH_REPEATS", "1"))
    scenarios = os.environ.get("QESIF_BENCH_SCENARIOS", ",".join(DEFAULT_SCENARIOS)).split(",")
    trees = {"tree": tree, **({"baseline": baseline} if baseline else {})}
    figures: dict[str, Any] = {
        "scenarios": scenarios,
        "jobs": jobs,
        "cpu_count": os.cpu_count(),
        "load_average_1min_at_start": round(os.getloadavg()[0], 2),
        **{f"{name}_path": str(path) for name, path in trees.items()},
    }
    measured: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    keep = os.environ.get("QESIF_BENCH_KEEP")
    with tempfile.TemporaryDirectory(prefix="qesif-bench-batch-", dir=keep) as tmp:
        for index in range(repeats):
            for name, path in trees.items():  # alternated, so both trees see the same machine load
                out = Path(keep or tmp, f"{name}-{index}")
                if out.exists():
                    raise SystemExit(f"bench_batch: {out} exists; the batch needs an empty results folder")
                measured[name].append(measure(path, scenarios, jobs, out))
                if index == 0:
                    figures[f"{name}_values"] = stored_values(out)
        for name, runs in measured.items():
            for field in ("wall_s", "cpu_s", "wall_per_run_s", "cpu_per_run_s"):
                values = [r[field] for r in runs if r[field] is not None]
                figures[f"{name}_{field}"] = round(statistics.median(values), 3) if values else None
            figures[f"{name}_peak_gib"] = max(r["peak_gib"] for r in runs)
            figures[f"{name}_runs"] = runs[0]["runs"]
            figures[f"{name}_all_ok"] = all(r["exit"] == 0 for r in runs)
        figures["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
        figures["tree_within_target"] = bool(
            figures["tree_all_ok"] and figures["tree_wall_s"] <= TARGET_WALL_S
        )
        if baseline:
            figures["baseline_over_tree_wall"] = round(figures["baseline_wall_s"] / figures["tree_wall_s"], 2)
            figures["baseline_over_tree_cpu"] = round(figures["baseline_cpu_s"] / figures["tree_cpu_s"], 2)
            figures["tables_vs_baseline"] = compare(figures["baseline_values"], figures["tree_values"])
        for name in trees:
            del figures[f"{name}_values"]
        if os.environ.get("QESIF_BENCH_SPEEDUP") == "1":
            figures.update(_speedup(tree, scenarios[0], repeats, Path(tmp)))
    return figures


if __name__ == "__main__":
    print(json.dumps(run()))
