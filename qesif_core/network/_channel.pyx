"""Compiled shared-channel loop of an 802.15.4 PAN; pure twin: ``qesif_core.network._channel_py``."""

import numpy as np

cimport numpy as cnp


def channel_departures(
    const cnp.int64_t[::1] pan,
    const double[::1] ready,
    const double[::1] service,
    const double[::1] gap,
    const double[::1] patience,
    double[::1] busy_until,
):
    """FIFO channel with impatient frames (see the pure twin for the model)."""
    cdef Py_ssize_t n = ready.shape[0]
    start_arr = np.empty(n)
    departure_arr = np.empty(n)
    dropped_arr = np.zeros(n, dtype=np.uint8)
    cdef double[::1] start = start_arr
    cdef double[::1] departure = departure_arr
    cdef cnp.uint8_t[::1] dropped = dropped_arr
    cdef Py_ssize_t i, ahead = 0
    cdef cnp.int64_t p, current = -1
    cdef double free = 0.0, t, s
    for i in range(n):
        p = pan[i]
        if p != current:
            if current >= 0:
                busy_until[current] = free
            current = p
            free = busy_until[p]
        t = ready[i]
        if t >= free:
            s = t
        else:
            if ahead <= i:
                ahead = i + 1
            while ahead < n and pan[ahead] == p and ready[ahead] <= free:
                ahead += 1
            s = free + gap[i] * 2.0 / (ahead - i + 1)
            if s - t > patience[i]:
                dropped[i] = 1
                start[i] = t + patience[i]
                departure[i] = t + patience[i]
                continue
        start[i] = s
        departure[i] = s + service[i]
        free = departure[i]
    if current >= 0:
        busy_until[current] = free
    return start_arr, departure_arr, dropped_arr
