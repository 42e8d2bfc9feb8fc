import logging

import pytest

from bridge import batch
from bridge.batch import execute_run, run_batch
from bridge.scenario import expand, parse_scenario
from bridge.store import ResultStore
from qesif_core.errors import UserInputError


def _runs():
    return expand(
        parse_scenario(
            {
                "name": "t",
                "datasets": ["ton_iot"],
                "channels": ["clean", "noisy"],
                "schemes": ["QESIF", "QRHE"],
                "rounds": 3,
            }
        )
    )


class CountingRunOnce:
    """Counts calls; fails for one scheme to check that a failure is recorded and the batch goes on."""

    def __init__(self, inner, failing_scheme=None):
        self.inner = inner
        self.failing_scheme = failing_scheme
        self.calls = 0

    def __call__(self, spec, *, bridge):
        self.calls += 1
        if spec["scheme"] == self.failing_scheme:
            print("about to fail: simulated backend crash")
            logging.getLogger("bridge.cosim.test").info("backend state before the crash")
            raise RuntimeError("simulated backend crash")
        return self.inner(spec, bridge=bridge)


def test_batch_stores_every_run_and_rerun_skips_finished(tmp_path, fake_run_once):
    runs = _runs()
    store = ResultStore(tmp_path)
    fn = CountingRunOnce(fake_run_once)
    summary = run_batch(runs, store, run_function=fn, progress=False)
    assert (summary.succeeded, summary.failed, summary.skipped, summary.exit_code) == (4, 0, 0, 0)
    assert store.finished_keys() == sorted(r.key for r in runs)
    again = run_batch(runs, store, run_function=fn, progress=False)
    assert (again.succeeded, again.skipped) == (0, 4)
    assert fn.calls == 4


def test_a_failed_run_is_recorded_with_reason_and_log_tail_and_the_batch_goes_on(tmp_path, fake_run_once):
    runs = _runs()
    store = ResultStore(tmp_path)
    summary = run_batch(runs, store, run_function=CountingRunOnce(fake_run_once, "QRHE"), progress=False)
    assert (summary.succeeded, summary.failed, summary.exit_code) == (2, 2, 1)
    failures = store.failures()
    assert {f["spec"]["scheme"] for f in failures} == {"QRHE"}
    assert failures[0]["reason"] == "RuntimeError: simulated backend crash"
    assert "about to fail" in failures[0]["log_tail"]
    assert "INFO bridge.cosim.test: backend state before the crash" in failures[0]["log_tail"]
    assert "Traceback" in failures[0]["log_tail"]
    fixed = run_batch(runs, store, run_function=CountingRunOnce(fake_run_once), progress=False)
    assert (fixed.succeeded, fixed.skipped, fixed.exit_code) == (2, 2, 0)
    assert store.failures() == []


def test_execute_run_reports_a_bad_table_as_a_failure(fake_run_once):
    run = _runs()[0]
    outcome = execute_run(run, run_function=lambda spec, bridge: fake_run_once(spec).drop(columns="vecvalue"))
    assert not outcome.ok
    assert "CSV-R columns" in outcome.reason


def test_bad_options_are_user_errors(tmp_path):
    with pytest.raises(UserInputError, match="--jobs"):
        run_batch(_runs(), ResultStore(tmp_path), jobs=0)
    with pytest.raises(UserInputError, match="--bridge"):
        run_batch(_runs(), ResultStore(tmp_path), bridge="carrier-pigeon")


def test_dask_cluster_gives_the_same_bytes_as_a_local_batch(tmp_path, fake_run_once):
    distributed = pytest.importorskip("dask.distributed")
    runs = _runs()
    local = ResultStore(tmp_path / "local")
    run_batch(runs, local, run_function=fake_run_once, progress=False)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as c:
        remote = ResultStore(tmp_path / "dask")
        summary = run_batch(
            runs, remote, scheduler=c.scheduler_address, run_function=fake_run_once, progress=False
        )
    assert summary.succeeded == len(runs)
    for run in runs:
        assert remote.run_path(run.key).read_bytes() == local.run_path(run.key).read_bytes()


def test_unreachable_scheduler_is_a_user_error(tmp_path, monkeypatch):
    pytest.importorskip("dask.distributed")
    monkeypatch.setattr(batch, "SCHEDULER_TIMEOUT", "1s")
    with pytest.raises(UserInputError, match="--scheduler"):
        run_batch(_runs(), ResultStore(tmp_path), scheduler="tcp://127.0.0.1:9", progress=False)


def test_a_user_mistake_in_every_failed_run_exits_2_with_its_message(tmp_path, fake_run_once):
    def bad_parameter(spec, *, bridge):
        raise UserInputError("keys.epsilon_min must be a number > 0, got -1")

    summary = run_batch(_runs(), ResultStore(tmp_path / "a"), run_function=bad_parameter, progress=False)
    assert summary.exit_code == 2
    assert summary.user_error == "keys.epsilon_min must be a number > 0, got -1"

    def mixed(spec, *, bridge):
        if spec["scheme"] == "QRHE":
            raise RuntimeError("crash")
        return bad_parameter(spec, bridge=bridge)

    summary = run_batch(_runs(), ResultStore(tmp_path / "b"), run_function=mixed, progress=False)
    assert (summary.exit_code, summary.user_error) == (1, None)


def test_runs_are_ordered_so_that_workers_start_on_different_shared_work():
    from bridge.batch import order_for_sharing
    from bridge.scenario import Run

    def run(dataset: str, channel: str, scheme: str) -> Run:
        spec = {"seed": 1, "dataset": {"name": dataset}, "channel": {"name": channel}, "scheme": scheme}
        return Run(key=f"{dataset}-{channel}-{scheme}", spec=spec)

    grid = [run(d, c, s) for d in ("a", "b", "c") for c in ("clean", "noisy", "eve") for s in ("S1", "S2")]
    ordered = order_for_sharing(grid)
    assert sorted(r.key for r in ordered) == sorted(r.key for r in grid)
    pioneers = [(r.spec["dataset"]["name"], r.spec["channel"]["name"]) for r in ordered[:3]]
    assert pioneers == [("a", "clean"), ("b", "noisy"), ("c", "eve")]  # each brings new work
    # then the runs whose pieces the first two pioneers computed: datasets a, b on channels clean, noisy
    early = {(r.spec["dataset"]["name"], r.spec["channel"]["name"]) for r in ordered[3:9]}
    assert early == {("a", "clean"), ("a", "noisy"), ("b", "clean"), ("b", "noisy")}
