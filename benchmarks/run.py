"""Run the benchmarks and print one JSON object per benchmark module.

Each ``benchmarks/bench_<area>.py`` defines ``run() -> dict`` returning measured figures (medians of
several repetitions, with the baseline measured in the same run where a ratio is quoted).
Usage: ``python benchmarks/run.py [AREA ...]`` (default: all).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the benchmarks share ``timing.py``


def main(argv: list[str]) -> int:
    names = argv or sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    for name in names:
        path = HERE / f"bench_{name}.py"
        if not path.exists():
            print(f"no benchmark {name!r} ({path} missing)", file=sys.stderr)
            return 2
        spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        started = time.perf_counter()
        figures = module.run()
        figures["benchmark_wall_s"] = round(time.perf_counter() - started, 3)
        print(json.dumps({"benchmark": name, **figures}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
