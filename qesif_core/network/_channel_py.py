"""Pure-Python twin of ``qesif_core.network._channel`` (the shared-channel loop of an 802.15.4 PAN).

Same double operations in the same order as the Cython loop, so both agree bit for bit; the reference the
compiled loop is tested against and the fallback when it is not built.
"""

from __future__ import annotations

import numpy as np


def channel_departures(
    pan: np.ndarray,
    ready: np.ndarray,
    service: np.ndarray,
    gap: np.ndarray,
    patience: np.ndarray,
    busy_until: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FIFO channel with impatient frames, frames sorted by (pan, ready).

    A frame ready when its PAN's channel is free starts at once; otherwise it starts after the channel frees
    and a contention backoff: the first of the k frames then waiting to expire its backoff wins, so the
    frame's drawn backoff ``gap`` is scaled by 2 / (k + 1) (the mean of the smallest of k uniforms), unless
    that wait exceeds its ``patience`` (its CSMA backoff budget): then it fails channel access, is dropped and
    does not occupy the channel. ``busy_until`` (per PAN) is updated in place. Returns ``(start, departure,
    dropped)``; a dropped frame's departure is when it gave up.
    """
    n = ready.shape[0]
    start = np.empty(n)
    departure = np.empty(n)
    dropped = np.zeros(n, dtype=np.uint8)
    current = -1
    ahead = 0
    free = 0.0
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
    return start, departure, dropped
