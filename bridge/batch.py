"""Batch execution of a scenario's runs: a local process pool (default) or a Dask distributed cluster.

Each run is executed by :func:`execute_run`, which returns the run's encoded table (or why it failed) to
the parent; only the parent writes the store, atomically, so a cluster needs no shared file system and a
batch killed at any moment loses nothing finished. Finished runs are skipped on re-run. A failing run is
recorded with its reason and log tail and the batch goes on. Every run draws its randomness from its own
spec's seed (inside ``run_once``), so results do not depend on ``--jobs`` or on the order of completion.
What several runs share (a channel's QKD blocks, a dataset's flow table and trained classifier) is
computed once and kept in a content-addressed cache beside the store (``bridge.cache``; ``cache=False``
turns it off, with the same results).
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import logging
import multiprocessing
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from bridge import cache as cache_module
from bridge import store as store_module
from bridge.scenario import Run
from bridge.store import ResultStore
from qesif_core.errors import UserInputError

LOG_TAIL_LINES = 40
#: How many times a local pool whose worker process died is replaced before the remaining runs fail.
POOL_RESTARTS = 2
BRIDGES = ("inprocess", "zmq")
#: How long to wait for a Dask scheduler before giving up.
SCHEDULER_TIMEOUT = "10s"

RunFunction = Callable[..., Any]


@dataclass(frozen=True)
class Outcome:
    """What a worker reports for one run: the encoded table, or the reason and log tail of a failure."""

    key: str
    label: str
    ok: bool
    elapsed_s: float
    payload: bytes | None = None
    reason: str | None = None
    log_tail: str | None = None
    user_error: bool = False


@dataclass(frozen=True)
class BatchSummary:
    total: int
    skipped: int
    succeeded: int
    failed: int
    #: Why the runs failed when every failure was a user mistake (a bad parameter, a missing backend).
    user_error: str | None = None

    @property
    def exit_code(self) -> int:
        """0 when every run is finished; 2 when every failure was a user mistake; 1 otherwise."""
        if not self.failed:
            return 0
        return 2 if self.user_error else 1


def _default_run_once(spec: dict[str, Any], *, bridge: str) -> Any:
    from bridge.cosim.orchestrator import run_once

    return run_once(spec, bridge=bridge)


def execute_run(
    run: Run,
    bridge: str = "inprocess",
    scheme_files: Sequence[str] = (),
    run_function: RunFunction | None = None,
    cache_root: str | None = None,
) -> Outcome:
    """Execute one run and encode its table; never raises for a failure of the run itself.

    ``cache_root``: the folder of the batch's shared-work cache (None: compute everything)."""
    from qesif_core.schemes import load_scheme_file

    started = time.perf_counter()
    lines: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)

    class _Tail(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = _Tail()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    saved_level = root.level
    root.setLevel(min(saved_level or logging.WARNING, logging.INFO))  # INFO lines belong in a failure's tail
    root.addHandler(handler)
    captured = io.StringIO()
    try:
        shared = cache_module.ContentCache(cache_root) if cache_root else None
        with (
            contextlib.redirect_stdout(captured),
            contextlib.redirect_stderr(captured),
            cache_module.activated(shared),
        ):
            for path in scheme_files:
                load_scheme_file(path)
            table = (run_function or _default_run_once)(run.spec, bridge=bridge)
            payload = store_module.encode(table, run.key, run.spec, run.itervars)
        return Outcome(run.key, run.label, True, time.perf_counter() - started, payload=payload)
    except Exception as exc:  # the run failed: report it, the batch goes on
        output = captured.getvalue().splitlines()[-LOG_TAIL_LINES:]
        tail = "\n".join([*output, *lines, *traceback.format_exc().splitlines()[-LOG_TAIL_LINES:]])
        return Outcome(
            run.key,
            run.label,
            False,
            time.perf_counter() - started,
            reason=f"{type(exc).__name__}: {exc}",
            log_tail=tail,
            user_error=isinstance(exc, UserInputError),
        )
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)


def _sharing_keys(run: Run) -> tuple[str, str]:
    """What a run shares with others (``bridge.cache``): its dataset's work, its channel's QKD."""
    spec = run.spec
    dataset = json.dumps([spec.get("dataset"), spec.get("seed")], sort_keys=True)
    channel = json.dumps([spec.get("channel"), spec.get("qkd"), spec.get("seed")], sort_keys=True)
    return dataset, channel


def order_for_sharing(runs: Sequence[Run]) -> list[Run]:
    """The runs in an order that keeps parallel workers from waiting on each other's shared work.

    Pioneers first: runs that each bring a dataset and a channel no earlier pioneer had (both new when
    possible, in the given order), so the first workers compute different shared pieces at once. Then
    the others, those whose dataset and channel the earliest pioneers computed first (stable otherwise).
    The order changes no result: every run draws from its own seed.
    """
    introduced: dict[str, int] = {}
    pioneers: dict[int, Run] = {}  # position in ``runs`` -> run
    for wanted in (2, 1):  # runs that bring two new pieces, then those that bring one
        for index, run in enumerate(runs):
            keys = _sharing_keys(run)
            if index not in pioneers and sum(k not in introduced for k in keys) >= wanted:
                pioneers[index] = run
                for key in keys:
                    introduced.setdefault(key, len(pioneers))
    rest = [run for index, run in enumerate(runs) if index not in pioneers]
    rest.sort(key=lambda run: max(introduced[k] for k in _sharing_keys(run)))
    return [*pioneers.values(), *rest]


def _failure(run: Run, reason: str, log_tail: str = "", elapsed_s: float = 0.0) -> Outcome:
    return Outcome(run.key, run.label, False, elapsed_s, reason=reason, log_tail=log_tail)


def _serial(
    runs: Sequence[Run], bridge: str, scheme_files: Sequence[str], fn: RunFunction | None, cache: str | None
):
    for run in runs:
        yield execute_run(run, bridge, scheme_files, fn, cache)


def _local_pool(
    runs: Sequence[Run],
    jobs: int,
    bridge: str,
    scheme_files: Sequence[str],
    fn: RunFunction | None,
    cache: str | None,
) -> Iterator[Outcome]:
    """Runs on a process pool; a pool broken by a dying worker is replaced (POOL_RESTARTS times)."""
    pending = list(runs)
    context = multiprocessing.get_context("forkserver")
    for attempt in range(POOL_RESTARTS + 1):
        broken: list[Run] = []
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = {pool.submit(execute_run, run, bridge, scheme_files, fn, cache): run for run in pending}
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    run = futures.pop(future)
                    try:
                        yield future.result()
                    except BrokenProcessPool:
                        broken.append(run)
        if not broken:
            return
        pending = broken
        if attempt == POOL_RESTARTS:
            for run in pending:
                yield _failure(
                    run, f"worker process died {POOL_RESTARTS + 1} times while this run was queued"
                )


def _dask(
    runs: Sequence[Run],
    address: str,
    bridge: str,
    scheme_files: Sequence[str],
    fn: RunFunction | None,
    cache: str | None,
) -> Iterator[Outcome]:
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise UserInputError("--scheduler: needs dask[distributed] (pip install 'qesif[dask]')") from None
    try:
        client = Client(address, timeout=SCHEDULER_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise UserInputError(f"--scheduler: cannot connect to {address!r}: {exc}") from None
    with client:
        futures = {
            client.submit(
                execute_run, run, bridge, scheme_files, fn, cache, key=f"qesif-run-{run.key}", pure=False
            ): run
            for run in runs
        }
        for future in as_completed(futures):
            run = futures[future]
            try:
                yield future.result()
            except Exception as exc:  # a worker lost by the cluster: record it, go on
                yield _failure(run, f"cluster task failed: {type(exc).__name__}: {exc}")


def run_batch(
    runs: Sequence[Run],
    result_store: ResultStore,
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    bridge: str = "inprocess",
    scheme_files: Sequence[str] = (),
    progress: bool = True,
    description: str = "runs",
    run_function: RunFunction | None = None,
    cache: bool = True,
) -> BatchSummary:
    """Execute the unfinished runs and store each as it completes.

    ``run_function`` replaces ``run_once`` (it must be importable by workers); tests use it to make runs
    fail or to stand in for the orchestrator. ``cache``: share work between runs through the cache beside
    the store (``bridge.cache``).
    """
    if jobs < 1:
        raise UserInputError(f"--jobs: must be >= 1 (got {jobs})")
    if bridge not in BRIDGES:
        raise UserInputError(f"--bridge: unknown bridge {bridge!r}; known: {', '.join(BRIDGES)}")
    result_store.remove_stale_temporaries()
    shared = cache_module.for_results(result_store.root) if cache else None
    if shared is not None:
        shared.remove_stale_temporaries()
    cache_root = str(shared.root) if shared is not None else None
    todo = order_for_sharing([run for run in runs if not result_store.is_finished(run.key)])
    skipped = len(runs) - len(todo)
    outcomes: Iterable[Outcome]
    if scheduler:
        outcomes = _dask(todo, scheduler, bridge, scheme_files, run_function, cache_root)
    elif jobs == 1 or len(todo) <= 1:
        outcomes = _serial(todo, bridge, scheme_files, run_function, cache_root)
    else:
        outcomes = _local_pool(todo, min(jobs, len(todo)), bridge, scheme_files, run_function, cache_root)
    succeeded = failed = 0
    user_errors: list[str] = []
    by_key = {run.key: run for run in todo}
    with tqdm(
        total=len(todo),
        desc=description,
        unit="run",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    ) as bar:
        for outcome in outcomes:
            if outcome.ok and outcome.payload is not None:
                result_store.save_run(outcome.key, outcome.payload)
                succeeded += 1
            else:
                failed += 1
                if outcome.user_error and outcome.reason:
                    user_errors.append(outcome.reason)
                result_store.save_failure(
                    outcome.key,
                    {
                        "key": outcome.key,
                        "label": outcome.label,
                        "reason": outcome.reason,
                        "log_tail": outcome.log_tail,
                        "elapsed_s": round(outcome.elapsed_s, 3),
                        "spec": by_key[outcome.key].spec,
                    },
                )
                bar.write(f"run failed: {outcome.label} [{outcome.key}]: {outcome.reason}", file=sys.stderr)
            bar.update(1)
    all_user_errors = failed > 0 and len(user_errors) == failed
    return BatchSummary(
        total=len(runs),
        skipped=skipped,
        succeeded=succeeded,
        failed=failed,
        user_error=user_errors[0].removeprefix("UserInputError: ") if all_user_errors else None,
    )
