"""The event-exact access channels (802.15.4 CSMA/CA, 802.11 DCF) and exchanges, compiled and pure twins.

Each test builds one PAN by hand (devices 0..n-1, gateway station n) and runs the kernel directly, so the
standard's timings can be checked to the microsecond; where a test needs a busy channel or a frame on air
at the start, it sets the station's state the way the kernel would have left it at a round's end.
"""

from dataclasses import replace

import numpy as np
import pytest

from qesif_core import _native
from qesif_core.network import _channel_py as k
from qesif_core.network.ieee802154 import Ieee802154
from qesif_core.network.model import NetworkParams, idle_mac_state
from qesif_core.network.wifi import Wifi80211

ZIGBEE = Ieee802154(bit_error_rate=0.0)
WIFI = Wifi80211(bit_error_rate=0.0)
JOB_DEFAULTS = dict(
    arrival=0.0,
    pre_delay=0.0,
    resp_delay=1e-3,
    post_delay=0.0,
    n_att=1,
    has_resp=0,
    droppable=1,
    req_bytes=80,
    resp_bytes=20,
)


def _compiled():
    try:
        return _native.load("qesif_core.network._channel", "qesif_core.network._channel_py", impl="cython")
    except _native.NativeExtensionMissing:
        pytest.skip("compiled _channel not built (make build)")


@pytest.fixture(params=["python", "cython"])
def kernel(request):
    return k if request.param == "python" else _compiled()


class Pan:
    """One PAN: ``jobs[d]`` lists device d's jobs (``JOB_DEFAULTS`` overridden), 2 s timers doubling."""

    def __init__(self, jobs, access=ZIGBEE, seed=1, queue_limit=8):
        self.access = access
        self.n = len(jobs)
        rows = [(d, dict(JOB_DEFAULTS, **j)) for d, device_jobs in enumerate(jobs) for j in device_jobs]
        self.job = {
            name: np.array([r[name] for _, r in rows], dtype=np.float64)
            for name in ("arrival", "pre_delay", "resp_delay", "post_delay")
        }
        for name in ("n_att", "has_resp", "droppable", "req_bytes", "resp_bytes"):
            self.job[name] = np.array([r[name] for _, r in rows], dtype=np.int64)
        n_jobs = len(rows)
        self.job["earliest"] = self.job["arrival"] + self.job["pre_delay"]
        self.job["timeout_base"] = np.cumsum(self.job["n_att"]) - self.job["n_att"]
        for name in ("attempt_start", "req_done", "listen"):
            self.job[name] = np.zeros(n_jobs)
        self.job["arrived"] = np.full(n_jobs, np.nan)
        self.job["end"] = np.full(n_jobs, np.nan)
        for name in ("phase", "attempt", "acked", "decided"):
            self.job[name] = np.zeros(n_jobs, dtype=np.int64)
        self.job["seq"] = np.full(n_jobs, -1, dtype=np.int64)
        self.timeouts = np.concatenate([2.0 * 2.0 ** np.arange(a) for a in self.job["n_att"]] or [[]])
        owner = np.array([d for d, _ in rows], dtype=np.int64)
        self.cursor = np.searchsorted(owner, np.arange(self.n)).astype(np.int64)
        self.hi = np.searchsorted(owner, np.arange(self.n), side="right").astype(np.int64)
        self.free = np.full(self.n, -np.inf)
        params = NetworkParams(access=access, device_queue_limit=queue_limit)
        self.st = idle_mac_state(self.n, 1, params, np.random.default_rng(seed))
        self.acc_f, self.acc_i = access.kernel_params(params.gateway_mac_queue)
        self.queue_limit = queue_limit
        self.out = {name: np.zeros(self.n + 1) for name in ("en_tx", "en_rx", "en_idle")}
        self.out.update({name: np.zeros(1, dtype=np.int64) for name in ("frames", "drops", "ring_drops")})

    def run(self, kernel, horizon=100.0):
        kernel.run_pans(
            np.arange(self.n, dtype=np.int64),
            np.array([0, self.n], dtype=np.int64),
            self.cursor,
            self.hi,
            self.free,
            self.job,
            self.timeouts,
            self.st,
            self.out,
            self.acc_f,
            self.acc_i,
            self.queue_limit,
            horizon,
        )
        return self

    @property
    def gateway(self):
        return self.n

    def holding(self, station, job, t_event, state, device=None):
        """Put ``station`` in MAC ``state`` until ``t_event`` with job ``job``'s request (under way)."""
        device = station if device is None else device
        self.job["phase"][job] = k.REQUEST
        self.job["seq"][job] = 0
        self.job["decided"][job] = 1
        self.st["seq"][device] = 1
        st = self.st
        st["has"][station], st["pkind"][station], st["pdev"][station] = 1, k.PK_UP, device
        st["pseq"][station], st["pbytes"][station] = 0, self.job["req_bytes"][job]
        st["nfrag"][station], st["pok"][station] = 1, 1
        st["state"][station], st["t"][station], st["t0"][station] = state, t_event, 0.0
        if state in (k.S_AIR, k.S_ACKAIR):
            st["air"][0] += 1

    def airtime(self, packet_bytes):
        return (packet_bytes + self.access.mac_overhead_bytes + self.access.phy_overhead_bytes) * 32e-6


def test_fragments_follow_rfc4944_and_the_ipv6_mtu():
    _, acc_i = ZIGBEE.kernel_params(1)
    sizes = [k.fragment_sizes(b, acc_i) for b in (50, 116, 117, 300)]
    # 117 bytes: FRAG1 (4 + 112) then FRAGN (5 + 5); 300: 112, 104, 84 payload bytes (+ MAC 11).
    assert sizes == [[61], [127], [127, 21], [127, 120, 100]]
    # INET's framing: IPv4 fragments of at most 118 bytes (127 - a 9-byte MAC header), header 20 each
    _, acc_i = replace(ZIGBEE, fragmentation="ipv4", mac_overhead_bytes=9).kernel_params(1)
    assert [k.fragment_sizes(b, acc_i) for b in (118, 319)] == [[127], [125, 125, 125, 40]]
    _, acc_i = WIFI.kernel_params(1)
    assert k.fragment_sizes(1500, acc_i) == [1536]
    # 3000 bytes: 1488 + 1488 + 24, each with the 8-byte fragment header and 36 bytes of MAC
    assert k.fragment_sizes(3000, acc_i) == [1532, 1532, 68]


def test_a_lone_frame_takes_a_backoff_a_cca_the_turnaround_its_airtime_and_the_ack(kernel):
    pan = Pan([[dict(arrival=0.01, req_bytes=80)]]).run(kernel)
    air = pan.airtime(80)
    slots = (pan.job["arrived"][0] - 0.01 - ZIGBEE.cca_s - ZIGBEE.turnaround_s - air) / ZIGBEE.unit_backoff_s
    assert slots == pytest.approx(round(slots), abs=1e-6) and 0 <= round(slots) <= 7  # BE = macMinBE
    ack_back = ZIGBEE.turnaround_s + ZIGBEE.ack_airtime_s()
    assert pan.job["end"][0] == pytest.approx(pan.job["arrived"][0] + ack_back)  # NON: done when ACKed
    assert pan.out["frames"][0] == 1 and pan.out["drops"][0] == 0
    assert pan.out["en_tx"][0] == pytest.approx(air + 0.0) and pan.out["en_tx"][1] == pytest.approx(
        ZIGBEE.ack_airtime_s()
    )


def test_a_channel_busy_at_every_cca_is_a_channel_access_failure_after_five(kernel):
    pan = Pan([[dict(arrival=0.01)]])
    pan.st["state"][pan.gateway], pan.st["air"][0] = k.S_AIR, 1  # the gateway never stops transmitting
    pan.run(kernel)
    assert pan.out["drops"][0] == 1 and pan.out["frames"][0] == 0
    assert np.isnan(pan.job["arrived"][0]) and pan.job["phase"][0] == k.DONE
    assert pan.out["en_rx"][0] == pytest.approx(5 * ZIGBEE.cca_s)  # NB 0..4 busy: macMaxCSMABackoffs = 4
    slots = (pan.job["end"][0] - 0.01 - 5 * ZIGBEE.cca_s) / ZIGBEE.unit_backoff_s
    assert slots == pytest.approx(round(slots), abs=1e-6)
    assert 0 <= round(slots) <= 7 + 15 + 3 * 31  # BE 3, 4, then macMaxBE = 5


def test_dcf_never_gives_up_a_busy_medium_it_freezes(kernel):
    pan = Pan([[dict(arrival=0.01)]], access=WIFI)
    pan.st["state"][pan.gateway], pan.st["air"][0] = k.S_AIR, 1
    pan.run(kernel)
    assert pan.out["drops"][0] == 0 and pan.out["frames"][0] == 0
    assert pan.job["phase"][0] == k.REQUEST and pan.st["state"][0] == k.S_DEFER


def test_frames_whose_ccas_see_the_same_idle_channel_collide_and_are_sent_again(kernel):
    pan = Pan([[dict()], [dict()]])
    for device in (0, 1):
        pan.holding(device, device, 0.001, k.S_TURN)  # both cleared the channel: on air at 1 ms
    pan.run(kernel)
    air = pan.airtime(80)
    first_ack_due = 0.001 + air + ZIGBEE.ack_wait_s
    assert (pan.job["arrived"] > first_ack_due).all()  # the first transmissions were both lost
    assert pan.out["frames"][0] >= 4


def test_a_cca_in_the_gap_before_an_ack_transmits_into_the_ack(kernel):
    pan = Pan([[dict()], [dict()]])
    t_end = 0.005
    pan.holding(0, 0, t_end, k.S_AIR)  # device 0's frame ends at 5 ms, intact
    pan.holding(1, 1, t_end + 100e-6, k.S_BACKOFF)  # device 1's CCA ends 100 us later: idle
    pan.run(kernel)
    assert pan.job["arrived"][0] == t_end  # the gateway has device 0's frame ...
    # ... but its ACK (from 5.192 ms) met device 1's frame (from 5.292 ms): device 0 sent its frame again
    assert pan.job["end"][0] > t_end + ZIGBEE.ack_wait_s
    assert pan.job["arrived"][1] > t_end + 100e-6 + ZIGBEE.turnaround_s + pan.airtime(80)
    assert pan.out["frames"][0] >= 3  # device 1 twice, device 0 once more


def test_bit_errors_exhaust_macmaxframeretries_then_the_frame_is_dropped(kernel):
    lossy = Ieee802154(bit_error_rate=0.05)
    pan = Pan([[dict(req_bytes=80)]], access=lossy).run(kernel)
    assert pan.out["frames"][0] == 1 + lossy.max_frame_retries
    assert pan.out["drops"][0] == 1 and np.isnan(pan.job["arrived"][0])
    wifi = Pan([[dict(req_bytes=80)]], access=replace(WIFI, bit_error_rate=0.05)).run(kernel)
    assert wifi.out["frames"][0] == WIFI.max_attempts and wifi.out["drops"][0] == 1


def test_dcf_goes_at_once_on_an_idle_medium_and_defers_through_the_nav_of_an_ack(kernel):
    pan = Pan([[dict(arrival=0.01)], [dict(arrival=0.02)]], access=WIFI)
    t_end = 0.0201
    pan.holding(0, 0, t_end, k.S_AIR)  # device 0 is on air when device 1's frame arrives
    pan.job["phase"][1] = k.NOT_STARTED
    pan.run(kernel)
    air = float(WIFI.ppdu_s(80 + WIFI.mac_overhead_bytes, WIFI.phy_rate_bps))
    ack_end = t_end + WIFI.sifs_s + WIFI.ack_airtime_s()
    # frozen until the ACK (NAV) is over, then DIFS and its backoff slots, CW = aCWmin
    slots = (pan.job["arrived"][1] - ack_end - WIFI.difs_s - air) / WIFI.slot_s
    assert slots == pytest.approx(round(slots), abs=1e-6) and 0 <= round(slots) <= WIFI.cw_min
    lone = Pan([[dict(arrival=0.01)]], access=WIFI).run(kernel)
    assert lone.job["arrived"][0] == pytest.approx(0.01 + air)  # medium idle for long: no wait


def test_a_request_waits_for_the_response_of_the_one_before(kernel):
    pan = Pan([[dict(arrival=0.0, has_resp=1), dict(arrival=0.001, has_resp=1)], [dict(arrival=0.05)]])
    pan.run(kernel)
    assert (pan.job["phase"] == k.DONE).all() and pan.job["acked"][:2].tolist() == [1, 1]
    assert pan.job["arrived"][1] > pan.job["end"][0]  # sent only once the first response was back
    assert pan.out["frames"][0] == 5  # three requests, two responses


def test_a_session_start_answered_by_a_gateway_flight_waits_for_it_and_asks_again(kernel):
    flight = dict(arrival=0.01, req_bytes=0, has_resp=1, resp_bytes=97, n_att=2, post_delay=0.005)
    pan = Pan([[flight]]).run(kernel)
    assert pan.out["frames"][0] == 1  # the request costs no frame: only the gateway's flight
    slots = (pan.job["end"][0] - 0.005 - 0.01 - 1e-3 - ZIGBEE.cca_s - ZIGBEE.turnaround_s) / 320e-6
    slots -= pan.airtime(97) / 320e-6
    assert 0 <= slots <= 7 + 1e-6  # response queued 1 ms after the start, one backoff, then on air
    lost = Pan([[flight]], access=Ieee802154(bit_error_rate=0.05)).run(kernel)
    # Every flight is lost: the gateway sends each 1 + macMaxFrameRetries times, the device asks again when
    # its 2 s timer fires and gives up at the second (4 s later).
    assert lost.out["frames"][0] == 2 * 4 and lost.job["acked"][0] == 0
    assert lost.job["end"][0] == pytest.approx(0.01 + 2.0 + 4.0)


def test_a_full_device_queue_drops_arrivals_and_a_give_up_frees_the_device(kernel):
    # The first message's response never comes back in time: timers 2 s then 4 s, given up at 6 s.
    first = dict(arrival=0.0, has_resp=1, n_att=2, resp_delay=100.0)
    later = [dict(arrival=0.1 + 0.01 * i) for i in range(5)]
    pan = Pan([[first, *later]], queue_limit=3).run(kernel)
    assert pan.job["end"][0] == pytest.approx(6.0) and pan.job["acked"][0] == 0
    assert pan.job["phase"].tolist() == [k.DONE] * 4 + [k.QUEUE_DROPPED] * 2
    assert pan.job["arrived"][1] > 6.0  # waited behind the given-up message
    assert pan.out["frames"][0] == 2 + 3  # both attempts of the first request, then the three kept


@pytest.mark.parametrize("access", [ZIGBEE, WIFI], ids=["802.15.4", "wifi"])
def test_a_run_cut_at_horizons_resumes_exactly(kernel, access):
    def pan():
        rng = np.random.default_rng(4)
        jobs = [
            [dict(arrival=t, has_resp=1, n_att=3, req_bytes=150) for t in np.sort(rng.random(15)) * 2.0]
            for _ in range(6)
        ]
        return Pan(jobs, access=replace(access, bit_error_rate=2e-4), seed=9)

    whole = pan().run(kernel, horizon=1e9)
    split = pan()
    for horizon in (0.3, 0.30001, 1.1, 2.5, 1e9):
        split.run(kernel, horizon=horizon)
    for name in ("phase", "attempt", "arrived", "end", "acked", "listen"):
        assert np.array_equal(whole.job[name], split.job[name], equal_nan=True), name
    for name in ("frames", "drops", "en_tx", "en_rx", "en_idle"):
        assert np.array_equal(whole.out[name], split.out[name]), name
    assert np.isin(whole.job["phase"], [k.DONE, k.QUEUE_DROPPED]).all() and whole.out["frames"][0] > 90


@pytest.mark.parametrize("access", [Ieee802154(), Wifi80211()], ids=["802.15.4", "wifi"])
def test_twins_agree_bit_for_bit_on_a_loaded_network(monkeypatch, access, loaded_rounds):
    _compiled()
    load = dict(seed=3, devices=40, gateways=4, payload=90, handshake_bytes=64)
    monkeypatch.setenv("QESIF_IMPL", "cython")
    compiled = loaded_rounds(access, **load)
    monkeypatch.setenv("QESIF_IMPL", "python")
    pure = loaded_rounds(access, **load)
    for a, b in zip(compiled, pure, strict=True):
        assert np.array_equal(a.latency_s, b.latency_s)
        assert np.array_equal(a.session_energy_j, b.session_energy_j)
        assert (a.frames, a.mac_drops, a.queue_drops, a.retransmissions, a.in_flight) == (
            b.frames, b.mac_drops, b.queue_drops, b.retransmissions, b.in_flight,
        )  # fmt: skip
    assert sum(r.frames for r in pure) > 1000
    if isinstance(access, Ieee802154):
        assert sum(r.mac_drops for r in pure) > 0
