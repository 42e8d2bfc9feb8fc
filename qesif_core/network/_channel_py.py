"""Pure-Python twin of ``qesif_core.network._channel`` (the event loop of the 802.15.4 PANs).

Same double operations in the same order as the Cython loop, so both agree bit for bit; the reference the
compiled loop is tested against and the fallback when it is not built.
"""

from __future__ import annotations

import math

import numpy as np

NOT_STARTED, REQUEST, RESPONSE, DONE, QUEUE_DROPPED = 0, 1, 2, 3, 4


def run_exchanges(
    dev_pan: np.ndarray,
    dev_cursor: np.ndarray,
    dev_hi: np.ndarray,
    dev_free: np.ndarray,
    job: dict[str, np.ndarray],
    timeouts: np.ndarray,
    frame: dict[str, np.ndarray],
    queue_limit: int,
    horizon: float,
    busy_until: np.ndarray,
) -> None:
    """Run every PAN's exchanges in time order until ``horizon``; all arrays are updated in place.

    Devices (``dev_*``, sorted by PAN) own contiguous runs of jobs ``[dev_cursor, dev_hi)`` served one at a
    time (NSTART = 1): a job is a request packet (device -> gateway, or a gateway flight when ``req_up`` is
    0) and, when ``has_resp``, a response packet (gateway -> device) after ``resp_delay``; a lost request or
    response is sent again when the attempt's timer (``timeouts[timeout_base + attempt]``, from the
    attempt's start) fires, up to ``n_att`` attempts, then the job is given up when the last timer fires.
    A job without response ends when its request is through. Packets are 6LoWPAN fragments sent one after
    the other; a lost fragment loses the packet. Each frame waits its random backoff (``lead``, part of its
    ready time); if its PAN's channel is busy, the channel's release plus a contention backoff: the first
    of the k frames then waiting wins, so ``gap`` is scaled by 2 / (k + 1); a frame that would wait longer
    than ``patience`` fails channel access and does not occupy the channel; ``ok`` says whether the MAC
    delivered an admitted frame. Messages (``droppable``) that arrive while ``queue_limit`` messages
    already wait in the device's queue are dropped. Frames ready at ``horizon`` or later stay pending: the
    job state (``phase``, ``attempt``, ``frag``, ``ready``, ...) lets the next call resume them.
    """
    n_dev = dev_pan.shape[0]
    cur_ready = np.full(n_dev, math.inf)
    undecided = np.empty(n_dev, dtype=np.int64)
    waiting = np.zeros(n_dev, dtype=np.int64)
    arrival, earliest, pre_delay = job["arrival"], job["earliest"], job["pre_delay"]
    resp_delay, post_delay = job["resp_delay"], job["post_delay"]
    n_att, has_resp, droppable = job["n_att"], job["has_resp"], job["droppable"]
    nf_req, nf_resp, frame_base, timeout_base = (
        job["nf_req"],
        job["nf_resp"],
        job["frame_base"],
        job["timeout_base"],
    )
    phase, attempt, frag, ready = job["phase"], job["attempt"], job["frag"], job["ready"]
    attempt_start, req_done, arrived, end = job["attempt_start"], job["req_done"], job["arrived"], job["end"]
    acked, decided, listen = job["acked"], job["decided"], job["listen"]
    lead, gap, patience, service, ok = (
        frame["lead"],
        frame["gap"],
        frame["patience"],
        frame["service"],
        frame["ok"],
    )
    used, fready, start, departure, cadrop = (
        frame["used"],
        frame["ready"],
        frame["start"],
        frame["departure"],
        frame["cadrop"],
    )

    def decide(d: int, t: float) -> int:
        """Queue or drop the device's arrivals before ``t`` (its queue has not moved since they came)."""
        hi = dev_hi[d]
        u = undecided[d]
        while u < hi and arrival[u] < t:
            if droppable[u]:
                if waiting[d] >= queue_limit:
                    phase[u] = QUEUE_DROPPED
                else:
                    waiting[d] += 1
            decided[u] = 1
            u += 1
        undecided[d] = u
        return u

    def begin(d: int, t_free: float) -> None:
        """The device is free at ``t_free``: decide the arrivals meanwhile, start its next job."""
        hi = dev_hi[d]
        u = decide(d, t_free)
        j = dev_cursor[d]
        while j < hi and phase[j] == QUEUE_DROPPED:
            j += 1
        dev_cursor[d] = j
        if j == hi:
            undecided[d] = u
            cur_ready[d] = math.inf
            return
        if decided[j] == 0:
            decided[j] = 1
            u = j + 1
        elif droppable[j]:
            waiting[d] -= 1
        undecided[d] = u
        s = max(earliest[j], t_free + pre_delay[j])
        phase[j] = REQUEST
        attempt[j] = 0
        frag[j] = 0
        attempt_start[j] = s
        ready[j] = s + lead[frame_base[j]]
        cur_ready[d] = ready[j]

    def finish(d: int, j: int, t_end: float) -> None:
        end[j] = t_end
        phase[j] = DONE
        dev_free[d] = t_end
        dev_cursor[d] = j + 1
        begin(d, t_end)

    def retry(d: int, j: int, t_fail: float) -> None:
        """The attempt's request or response was lost: send again when its timer fires, or give up."""
        a = attempt[j]
        timer = attempt_start[j] + timeouts[timeout_base[j] + a]
        if phase[j] == RESPONSE:
            listen[j] += timer - req_done[j]
        t_next = max(timer, t_fail)
        if a + 1 < n_att[j]:
            attempt[j] = a + 1
            phase[j] = REQUEST
            frag[j] = 0
            attempt_start[j] = t_next
            ready[j] = t_next + lead[frame_base[j] + (a + 1) * (nf_req[j] + nf_resp[j])]
            cur_ready[d] = ready[j]
        else:
            finish(d, j, t_next)

    for d in range(n_dev):
        j = dev_cursor[d]
        u = j
        hi = dev_hi[d]
        while u < hi and decided[u]:
            if droppable[u] and phase[u] == NOT_STARTED:
                waiting[d] += 1
            u += 1
        undecided[d] = u
        if j < hi and (phase[j] == REQUEST or phase[j] == RESPONSE):
            cur_ready[d] = ready[j]
        else:
            begin(d, dev_free[d])

    lo = 0
    while lo < n_dev:
        p = dev_pan[lo]
        hi_d = lo
        while hi_d < n_dev and dev_pan[hi_d] == p:
            hi_d += 1
        free = busy_until[p]
        while True:
            d = -1
            t = math.inf
            for e in range(lo, hi_d):
                if cur_ready[e] < t:
                    t = cur_ready[e]
                    d = e
            if d < 0 or t >= horizon:
                break
            j = dev_cursor[d]
            per = nf_req[j] + nf_resp[j]
            if phase[j] == REQUEST:
                f = frame_base[j] + attempt[j] * per + frag[j]
                n_frags = nf_req[j]
            else:
                f = frame_base[j] + attempt[j] * per + nf_req[j] + frag[j]
                n_frags = nf_resp[j]
            used[f] = 1
            fready[f] = t
            delivered = False
            if t >= free:
                s = t
            else:
                k = 0
                for e in range(lo, hi_d):
                    if cur_ready[e] <= free:
                        k += 1
                s = free + gap[f] * 2.0 / (k + 1)
            if s - t > patience[f]:
                cadrop[f] = 1
                start[f] = t + patience[f]
                departure[f] = t + patience[f]
            else:
                start[f] = s
                departure[f] = s + service[f]
                free = departure[f]
                delivered = ok[f] != 0
            t_done = departure[f]
            if delivered and frag[j] + 1 < n_frags:
                frag[j] += 1
                ready[j] = t_done + lead[f + 1]
                cur_ready[d] = ready[j]
            elif phase[j] == REQUEST:
                if delivered:
                    if math.isnan(arrived[j]):
                        arrived[j] = t_done
                    req_done[j] = t_done
                    if has_resp[j]:
                        phase[j] = RESPONSE
                        frag[j] = 0
                        ready[j] = t_done + resp_delay[j] + lead[f + 1]
                        cur_ready[d] = ready[j]
                    else:
                        finish(d, j, t_done + post_delay[j])
                elif has_resp[j]:
                    retry(d, j, t_done)
                else:
                    finish(d, j, t_done)
            elif delivered:
                acked[j] = 1
                listen[j] += t_done - req_done[j]
                finish(d, j, t_done + post_delay[j])
            else:
                retry(d, j, t_done)
        busy_until[p] = free
        lo = hi_d
    for d in range(n_dev):
        decide(d, horizon)
