"""Start-up time of the command line: ``qesif --help`` and ``qesif validate scenarios/paper.yaml``.

Each is a fresh interpreter (``<tree>/.venv/bin/python -m bridge.cli ...``), timed from spawn to exit,
median of ``QESIF_BENCH_REPEATS`` runs (default 7) after one unmeasured warm-up run (a warm file cache,
as a user's second call). Target (issue 14): both < 0.3 s. ``QESIF_BENCH_BASELINE`` (a second tree with
its own ``.venv``, e.g. the pre-change commit) is measured in the same run, alternating, and the ratios
quoted.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 0.3
COMMANDS = {"help": ["--help"], "validate": ["validate", "scenarios/paper.yaml"]}


def _python(tree: Path) -> str:
    venv = tree / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def _seconds(tree: Path, arguments: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [_python(tree), "-m", "bridge.cli", *arguments],
        cwd=tree,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - started


def run() -> dict:
    repeats = int(os.environ.get("QESIF_BENCH_REPEATS", "7"))
    trees = {"tree": REPO}
    if os.environ.get("QESIF_BENCH_BASELINE"):
        trees["baseline"] = Path(os.environ["QESIF_BENCH_BASELINE"]).resolve()
    figures: dict = {"repeats": repeats, "load_average_1min": round(os.getloadavg()[0], 2)}
    for command, arguments in COMMANDS.items():
        samples: dict[str, list[float]] = {name: [] for name in trees}
        for tree in trees.values():
            _seconds(tree, arguments)  # warm-up
        for _ in range(repeats):
            for name, tree in trees.items():
                samples[name].append(_seconds(tree, arguments))
        for name, values in samples.items():
            figures[f"{name}_{command}_s"] = round(statistics.median(values), 3)
        figures[f"tree_{command}_within_target"] = figures[f"tree_{command}_s"] < TARGET_S
        if "baseline" in trees:
            figures[f"baseline_over_tree_{command}"] = round(
                figures[f"baseline_{command}_s"] / figures[f"tree_{command}_s"], 2
            )
    return figures


if __name__ == "__main__":
    import json

    print(json.dumps(run()))
