"""The compiled PAN event loop and its pure twin agree bit for bit, and follow the model."""

import numpy as np
import pytest

from qesif_core import _native
from qesif_core.network import _channel_py
from qesif_core.network._channel_py import DONE, QUEUE_DROPPED, REQUEST
from qesif_core.network.model import NetworkParams, QueueState, SessionCosts, simulate_round
from qesif_core.network.traffic import build_topology, poisson_arrivals, round_traffic


def _compiled():
    try:
        return _native.load("qesif_core.network._channel", "qesif_core.network._channel_py", impl="cython")
    except _native.NativeExtensionMissing:
        pytest.skip("compiled _channel not built (make build)")


@pytest.fixture(params=["python", "cython"])
def kernel(request):
    return _channel_py if request.param == "python" else _compiled()


def _tables(jobs, frames_ok, service=0.004):
    """One device per entry of ``jobs`` (list of lists of job dicts), all on PAN 0; every frame gets no
    backoff, a fixed service time and the MAC outcome from ``frames_ok`` (default delivered)."""
    defaults = dict(pre_delay=0.0, resp_delay=0.001, post_delay=0.0, n_att=1, has_resp=0, droppable=1)
    rows = [dict(defaults, **j) for device in jobs for j in device]
    n = len(rows)
    job = {}
    for name in ("arrival", "pre_delay", "resp_delay", "post_delay"):
        job[name] = np.array([r[name] for r in rows], dtype=float)
    job["earliest"] = job["arrival"] + job["pre_delay"]
    for name in ("n_att",):
        job[name] = np.array([r[name] for r in rows], dtype=np.int64)
    for name in ("has_resp", "droppable"):
        job[name] = np.array([r[name] for r in rows], dtype=np.uint8)
    job["nf_req"] = np.ones(n, dtype=np.int64)
    job["nf_resp"] = job["has_resp"].astype(np.int64)
    n_frames = job["n_att"] * (job["nf_req"] + job["nf_resp"])
    job["frame_base"] = np.cumsum(n_frames) - n_frames
    job["timeout_base"] = np.cumsum(job["n_att"]) - job["n_att"]
    for name in ("phase", "attempt", "frag"):
        job[name] = np.zeros(n, dtype=np.int64)
    for name in ("ready", "attempt_start", "req_done", "listen"):
        job[name] = np.zeros(n)
    job["arrived"] = np.full(n, np.nan)
    job["end"] = np.full(n, np.nan)
    job["acked"] = np.zeros(n, dtype=np.uint8)
    job["decided"] = np.zeros(n, dtype=np.uint8)
    total = int(n_frames.sum())
    ok = np.ones(total, dtype=np.uint8)
    for index in frames_ok:
        ok[index] = 0
    frame = {
        "lead": np.zeros(total),
        "gap": np.zeros(total),
        "patience": np.full(total, 1.0),
        "service": np.full(total, service),
        "ok": ok,
        "used": np.zeros(total, dtype=np.uint8),
        "cadrop": np.zeros(total, dtype=np.uint8),
        "ready": np.zeros(total),
        "start": np.zeros(total),
        "departure": np.zeros(total),
    }
    sizes = [len(device) for device in jobs]
    lo = np.cumsum(sizes) - sizes
    dev = {
        "pan": np.zeros(len(jobs), dtype=np.int64),
        "cursor": lo.astype(np.int64),
        "hi": (lo + sizes).astype(np.int64),
        "free": np.full(len(jobs), -np.inf),
        "busy": np.array([-np.inf]),
    }
    timeouts = np.concatenate([2.0 * 2.0 ** np.arange(a) for a in job["n_att"]])
    return dev, job, timeouts, frame


def _run(kernel, dev, job, timeouts, frame, horizon=100.0, queue_limit=8):
    kernel.run_exchanges(
        dev["pan"],
        dev["cursor"],
        dev["hi"],
        dev["free"],
        job,
        timeouts,
        frame,
        queue_limit,
        horizon,
        dev["busy"],
    )


def test_a_confirmable_message_holds_back_the_next_until_its_ack(kernel):
    dev, job, timeouts, frame = _tables(
        [[dict(arrival=0.0, has_resp=1), dict(arrival=0.001, has_resp=1)]], []
    )
    _run(kernel, dev, job, timeouts, frame)
    assert job["phase"].tolist() == [DONE, DONE]
    ack_back = 0.004 + 0.001 + 0.004  # request, gateway path, ACK
    assert job["end"][0] == pytest.approx(ack_back)
    assert job["arrived"][1] == pytest.approx(ack_back + 0.004)  # sent only once the first ACK is back
    assert job["acked"].tolist() == [1, 1]


def test_a_lost_request_is_sent_again_on_the_channel_when_its_timer_fires(kernel):
    # Device 0's first request frame is lost; device 1 sends a frame at the retransmission time.
    dev, job, timeouts, frame = _tables(
        [[dict(arrival=0.0, has_resp=1, n_att=3)], [dict(arrival=2.0)]], frames_ok=[0]
    )
    _run(kernel, dev, job, timeouts, frame)
    assert job["attempt"][0] == 1 and job["acked"][0] == 1
    assert job["arrived"][0] == pytest.approx(2.004)  # timer (2 s from the first attempt), then airtime
    retry_frame = 2  # attempt 1's request: the retransmission is a real frame on the channel
    assert frame["used"][retry_frame] == 1
    other = job["frame_base"][1]
    assert frame["start"][other] == pytest.approx(2.004)  # device 1 waited for the retransmission
    # Used: the lost request, attempt 1's request and ACK, device 1's frame; no ACK for the lost request.
    assert np.flatnonzero(frame["used"]).tolist() == [0, 2, 3, other]


def test_a_full_device_queue_drops_arrivals_and_a_give_up_frees_the_device(kernel):
    # The first message's ACK is always lost: two attempts, timers 2 s then 4 s, given up at 6 s.
    first = dict(arrival=0.0, has_resp=1, n_att=2)
    later = [dict(arrival=0.1 + 0.01 * k) for k in range(5)]
    dev, job, timeouts, frame = _tables([[first, *later]], frames_ok=[1, 3])
    _run(kernel, dev, job, timeouts, frame, queue_limit=3)
    assert job["end"][0] == pytest.approx(6.0) and job["acked"][0] == 0
    assert job["phase"].tolist() == [DONE, DONE, DONE, DONE, QUEUE_DROPPED, QUEUE_DROPPED]
    assert job["arrived"][1] == pytest.approx(6.004)  # waited behind the given-up message
    assert job["listen"][0] == pytest.approx(6.0 - 2 * 0.004)  # listened for both lost ACKs


def test_a_run_cut_at_a_horizon_resumes_exactly(kernel, rng):
    def table():
        jobs = [
            [dict(arrival=t, has_resp=1, n_att=3) for t in np.sort(rng.random(12)) * 3.0] for _ in range(4)
        ]
        lost = rng.choice(4 * 12 * 6, size=25, replace=False).tolist()
        return _tables(jobs, lost)

    state = rng.bit_generator.state
    whole = table()
    rng.bit_generator.state = state
    split = table()
    _run(kernel, *whole, horizon=1e9)
    for horizon in (0.7, 2.1, 5.0, 1e9):
        _run(kernel, *split, horizon=horizon)
    for name in ("phase", "attempt", "arrived", "end", "acked"):
        assert np.array_equal(whole[1][name], split[1][name], equal_nan=True), name
    assert (whole[1]["phase"] != REQUEST).all()


def test_twins_agree_bit_for_bit_on_a_loaded_network(monkeypatch):
    def run(impl):
        monkeypatch.setenv("QESIF_IMPL", impl)
        rng = np.random.default_rng(3)
        params = NetworkParams()
        topology = build_topology(40, 4, 0.5, rng)
        state = QueueState.idle(4, params)
        out = []
        for r in range(4):
            device, time = poisson_arrivals(40, float(r), 1.0, 0.1, rng)
            traffic = round_traffic(device, time, np.full(device.size, 60))
            n = traffic.session_device.size
            full = lambda v, n=n: np.full(n, float(v))  # noqa: E731
            costs = SessionCosts(
                np.full(n, 64), np.full(n, 64), full(0.01), full(1e-4), np.full(n, 28), full(3e-5),
                full(4e-5), full(1e-6), full(1e-9),
            )  # fmt: skip
            result = simulate_round(
                params, topology.gateway, topology.protocol, traffic, costs, 1.0, state, rng, float(r)
            )
            out.append(result)
        return out

    _compiled()
    compiled, pure = run("cython"), run("python")
    for a, b in zip(compiled, pure, strict=True):
        assert np.array_equal(a.latency_s, b.latency_s)
        assert np.array_equal(a.session_energy_j, b.session_energy_j)
        assert (a.frames, a.mac_drops, a.queue_drops, a.retransmissions, a.in_flight) == (
            b.frames, b.mac_drops, b.queue_drops, b.retransmissions, b.in_flight,
        )  # fmt: skip
    assert sum(r.retransmissions for r in pure) > 0 and sum(r.mac_drops for r in pure) > 0
