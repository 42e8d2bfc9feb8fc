"""FIFO queues computed for many packets at once.

For one FIFO server the departure of the n-th customer is ``D_n = max(A_n, D_{n-1}) + S_n`` (Lindley).
Unrolled, ``D_n = C_n + max(b, max_{k<=n}(A_k - C_{k-1}))`` with ``C`` the cumulative service and ``b`` the
time the server was busy until before the first arrival, so a cumulative maximum replaces the Python loop.
Many independent queues are handled in one pass by sorting on (queue, arrival) and offsetting each queue's
values so that the running maximum restarts at every queue boundary.
"""

from __future__ import annotations

import numpy as np


def fifo_departures(
    arrival: np.ndarray,
    service: np.ndarray,
    queue: np.ndarray,
    busy_until: np.ndarray | None = None,
    tiebreak: np.ndarray | None = None,
    lead: np.ndarray | None = None,
    gap: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Service start and departure times (seconds) of each customer, in the input order.

    ``queue`` holds small non-negative integer queue ids; ``busy_until[q]`` (optional) is when queue ``q``
    finishes its earlier work; customers arriving at the same time are served in ``tiebreak`` order
    (default: input order). ``lead`` (optional) is time a customer spends before it can start on an idle
    server, ``gap`` (optional) time it needs after the server frees up when it found it busy: departures
    follow ``D_n = max(A_n + lead_n, D_{n-1} + gap_n) + S_n`` (a CSMA station's own backoff, and the
    contention backoff after a busy channel).
    """
    arrival = np.asarray(arrival, dtype=np.float64)
    service = np.asarray(service, dtype=np.float64)
    queue = np.asarray(queue, dtype=np.int64)
    n = arrival.size
    if n == 0:
        return np.empty(0), np.empty(0)
    order = np.lexsort((tiebreak, arrival, queue)) if tiebreak is not None else queue_order(queue, arrival)
    a, s, q = arrival[order], service[order], queue[order]
    if lead is not None:
        a = a + np.asarray(lead, dtype=np.float64)[order]
    step = s if gap is None else s + np.asarray(gap, dtype=np.float64)[order]

    total = np.cumsum(step)
    first = np.ones(n, dtype=bool)
    first[1:] = q[1:] != q[:-1]
    group_start = np.flatnonzero(first)
    group_id = np.cumsum(first) - 1
    before_group = (total - step)[group_start]  # cumulative steps before each queue's first customer
    cum = total - before_group[group_id]  # T_n, local to each queue
    x = a + s - cum  # unrolled recursion: D_n = T_n + max_k (A_k + lead_k + S_k - T_k)
    if busy_until is not None:
        initial = np.asarray(busy_until, dtype=np.float64)[q[group_start]]
        x[group_start] = np.maximum(x[group_start], initial)
    # Offsets larger than any spread of x make the running maximum restart at each queue boundary.
    spread = float(x.max() - x.min()) + 1.0
    offset = group_id * spread
    running = np.maximum.accumulate(x + offset) - offset
    departure = np.empty(n)
    departure[order] = cum + running
    start = departure - service
    return start, departure


def queue_order(queue: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Indices sorting by (queue, time), ties in input order: one stable sort on a combined key."""
    time = np.asarray(time, dtype=np.float64)
    if time.size == 0:
        return np.empty(0, dtype=np.int64)
    low = float(time.min())
    span = float(time.max()) - low + 1.0
    return np.argsort(np.asarray(queue, dtype=np.float64) * span + (time - low), kind="stable")


def last_departure_per_queue(queue: np.ndarray, departure: np.ndarray, n_queues: int) -> np.ndarray:
    """When each queue becomes idle (``-inf`` for a queue that served nothing)."""
    busy = np.full(n_queues, -np.inf)
    np.maximum.at(busy, np.asarray(queue, dtype=np.int64), departure)
    return busy
