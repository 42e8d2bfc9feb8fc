"""Compiled event loop of the 802.15.4 PANs; pure twin (and the model's description):
``qesif_core.network._channel_py``."""

import numpy as np

cimport numpy as cnp
from libc.math cimport INFINITY, isnan

cdef enum:
    NOT_STARTED = 0
    REQUEST = 1
    RESPONSE = 2
    DONE = 3
    QUEUE_DROPPED = 4


cdef class _Loop:
    cdef cnp.int64_t[::1] dev_cursor, dev_hi, undecided, waiting
    cdef double[::1] dev_free, cur_ready, timeouts
    cdef const double[::1] arrival, earliest, pre_delay, resp_delay, post_delay, lead
    cdef const cnp.int64_t[::1] n_att, nf_req, nf_resp, frame_base, timeout_base
    cdef const cnp.uint8_t[::1] has_resp, droppable
    cdef cnp.int64_t[::1] phase, attempt, frag
    cdef double[::1] ready, attempt_start, req_done, end, listen
    cdef cnp.uint8_t[::1] decided
    cdef cnp.int64_t queue_limit

    cdef Py_ssize_t decide(self, Py_ssize_t d, double t):
        cdef Py_ssize_t hi = self.dev_hi[d]
        cdef Py_ssize_t u = self.undecided[d]
        while u < hi and self.arrival[u] < t:
            if self.droppable[u]:
                if self.waiting[d] >= self.queue_limit:
                    self.phase[u] = QUEUE_DROPPED
                else:
                    self.waiting[d] += 1
            self.decided[u] = 1
            u += 1
        self.undecided[d] = u
        return u

    cdef void begin(self, Py_ssize_t d, double t_free):
        cdef Py_ssize_t hi = self.dev_hi[d]
        cdef Py_ssize_t u = self.decide(d, t_free)
        cdef Py_ssize_t j
        cdef double s, alt
        j = self.dev_cursor[d]
        while j < hi and self.phase[j] == QUEUE_DROPPED:
            j += 1
        self.dev_cursor[d] = j
        if j == hi:
            self.undecided[d] = u
            self.cur_ready[d] = INFINITY
            return
        if self.decided[j] == 0:
            self.decided[j] = 1
            u = j + 1
        elif self.droppable[j]:
            self.waiting[d] -= 1
        self.undecided[d] = u
        s = self.earliest[j]
        alt = t_free + self.pre_delay[j]
        if alt > s:
            s = alt
        self.phase[j] = REQUEST
        self.attempt[j] = 0
        self.frag[j] = 0
        self.attempt_start[j] = s
        self.ready[j] = s + self.lead[self.frame_base[j]]
        self.cur_ready[d] = self.ready[j]

    cdef void finish(self, Py_ssize_t d, Py_ssize_t j, double t_end):
        self.end[j] = t_end
        self.phase[j] = DONE
        self.dev_free[d] = t_end
        self.dev_cursor[d] = j + 1
        self.begin(d, t_end)

    cdef void retry(self, Py_ssize_t d, Py_ssize_t j, double t_fail):
        cdef cnp.int64_t a = self.attempt[j]
        cdef double timer = self.attempt_start[j] + self.timeouts[self.timeout_base[j] + a]
        cdef double t_next = timer
        if self.phase[j] == RESPONSE:
            self.listen[j] += timer - self.req_done[j]
        if t_fail > t_next:
            t_next = t_fail
        if a + 1 < self.n_att[j]:
            self.attempt[j] = a + 1
            self.phase[j] = REQUEST
            self.frag[j] = 0
            self.attempt_start[j] = t_next
            self.ready[j] = t_next + self.lead[self.frame_base[j] + (a + 1) * (self.nf_req[j] + self.nf_resp[j])]
            self.cur_ready[d] = self.ready[j]
        else:
            self.finish(d, j, t_next)


def run_exchanges(
    const cnp.int64_t[::1] dev_pan,
    cnp.int64_t[::1] dev_cursor,
    cnp.int64_t[::1] dev_hi,
    double[::1] dev_free,
    dict job,
    double[::1] timeouts,
    dict frame,
    cnp.int64_t queue_limit,
    double horizon,
    double[::1] busy_until,
):
    """Run every PAN's exchanges in time order until ``horizon``, in place (see the pure twin)."""
    cdef Py_ssize_t n_dev = dev_pan.shape[0]
    cdef _Loop L = _Loop()
    L.dev_cursor = dev_cursor
    L.dev_hi = dev_hi
    L.dev_free = dev_free
    L.timeouts = timeouts
    L.cur_ready = np.full(n_dev, np.inf)
    L.undecided = np.empty(n_dev, dtype=np.int64)
    L.waiting = np.zeros(n_dev, dtype=np.int64)
    L.queue_limit = queue_limit
    L.arrival = job["arrival"]
    L.earliest = job["earliest"]
    L.pre_delay = job["pre_delay"]
    L.resp_delay = job["resp_delay"]
    L.post_delay = job["post_delay"]
    L.n_att = job["n_att"]
    L.has_resp = job["has_resp"]
    L.droppable = job["droppable"]
    L.nf_req = job["nf_req"]
    L.nf_resp = job["nf_resp"]
    L.frame_base = job["frame_base"]
    L.timeout_base = job["timeout_base"]
    L.phase = job["phase"]
    L.attempt = job["attempt"]
    L.frag = job["frag"]
    L.ready = job["ready"]
    L.attempt_start = job["attempt_start"]
    L.req_done = job["req_done"]
    L.end = job["end"]
    L.listen = job["listen"]
    L.decided = job["decided"]
    L.lead = frame["lead"]
    cdef double[::1] arrived = job["arrived"]
    cdef cnp.uint8_t[::1] acked = job["acked"]
    cdef const double[::1] gap = frame["gap"]
    cdef const double[::1] patience = frame["patience"]
    cdef const double[::1] service = frame["service"]
    cdef const cnp.uint8_t[::1] ok = frame["ok"]
    cdef cnp.uint8_t[::1] used = frame["used"]
    cdef double[::1] fready = frame["ready"]
    cdef double[::1] start = frame["start"]
    cdef double[::1] departure = frame["departure"]
    cdef cnp.uint8_t[::1] cadrop = frame["cadrop"]

    cdef Py_ssize_t d, e, j, u, hi, lo, hi_d, f, n_frags, per, k
    cdef cnp.int64_t p
    cdef double free, t, s, t_done
    cdef bint delivered

    for d in range(n_dev):
        j = dev_cursor[d]
        u = j
        hi = dev_hi[d]
        while u < hi and L.decided[u]:
            if L.droppable[u] and L.phase[u] == NOT_STARTED:
                L.waiting[d] += 1
            u += 1
        L.undecided[d] = u
        if j < hi and (L.phase[j] == REQUEST or L.phase[j] == RESPONSE):
            L.cur_ready[d] = L.ready[j]
        else:
            L.begin(d, dev_free[d])

    lo = 0
    while lo < n_dev:
        p = dev_pan[lo]
        hi_d = lo
        while hi_d < n_dev and dev_pan[hi_d] == p:
            hi_d += 1
        free = busy_until[p]
        while True:
            d = -1
            t = INFINITY
            for e in range(lo, hi_d):
                if L.cur_ready[e] < t:
                    t = L.cur_ready[e]
                    d = e
            if d < 0 or t >= horizon:
                break
            j = dev_cursor[d]
            per = L.nf_req[j] + L.nf_resp[j]
            if L.phase[j] == REQUEST:
                f = L.frame_base[j] + L.attempt[j] * per + L.frag[j]
                n_frags = L.nf_req[j]
            else:
                f = L.frame_base[j] + L.attempt[j] * per + L.nf_req[j] + L.frag[j]
                n_frags = L.nf_resp[j]
            used[f] = 1
            fready[f] = t
            delivered = False
            if t >= free:
                s = t
            else:
                k = 0
                for e in range(lo, hi_d):
                    if L.cur_ready[e] <= free:
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
            if delivered and L.frag[j] + 1 < n_frags:
                L.frag[j] += 1
                L.ready[j] = t_done + L.lead[f + 1]
                L.cur_ready[d] = L.ready[j]
            elif L.phase[j] == REQUEST:
                if delivered:
                    if isnan(arrived[j]):
                        arrived[j] = t_done
                    L.req_done[j] = t_done
                    if L.has_resp[j]:
                        L.phase[j] = RESPONSE
                        L.frag[j] = 0
                        L.ready[j] = t_done + L.resp_delay[j] + L.lead[f + 1]
                        L.cur_ready[d] = L.ready[j]
                    else:
                        L.finish(d, j, t_done + L.post_delay[j])
                elif L.has_resp[j]:
                    L.retry(d, j, t_done)
                else:
                    L.finish(d, j, t_done)
            elif delivered:
                acked[j] = 1
                L.listen[j] += t_done - L.req_done[j]
                L.finish(d, j, t_done + L.post_delay[j])
            else:
                L.retry(d, j, t_done)
        busy_until[p] = free
        lo = hi_d
    for d in range(n_dev):
        L.decide(d, horizon)
