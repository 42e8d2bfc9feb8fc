import numpy as np

from qesif_core.network.queues import fifo_departures, last_departure_per_queue, queue_order


def _loop_reference(arrival, service, queue, busy, lead, gap):
    departure = np.empty(arrival.size)
    free = dict(enumerate(busy))
    for i in np.lexsort((np.arange(arrival.size), arrival, queue)):
        departure[i] = max(arrival[i] + lead[i], free[queue[i]] + gap[i]) + service[i]
        free[queue[i]] = departure[i]
    return departure


def test_vectorised_recursion_matches_the_sequential_lindley_loop(rng):
    n, queues = 5000, 50
    arrival = rng.random(n) * 20.0
    service = rng.exponential(0.01, n)
    queue = rng.integers(0, queues, n)
    busy = rng.random(queues) * 2.0 - 1.0
    lead, gap = rng.random(n) * 0.003, rng.random(n) * 0.002
    start, departure = fifo_departures(arrival, service, queue, busy, lead=lead, gap=gap)
    np.testing.assert_allclose(
        departure, _loop_reference(arrival, service, queue, busy, lead, gap), atol=1e-9
    )
    np.testing.assert_allclose(start, departure - service)
    zeros = np.zeros(n)
    _, plain = fifo_departures(arrival, service, queue, busy)
    np.testing.assert_allclose(plain, _loop_reference(arrival, service, queue, busy, zeros, zeros), atol=1e-9)


def test_a_single_queue_by_hand():
    _, departure = fifo_departures(
        np.array([0.0, 0.5, 0.6, 5.0]), np.array([1.0, 1.0, 1.0, 1.0]), np.zeros(4)
    )
    np.testing.assert_allclose(departure, [1.0, 2.0, 3.0, 6.0])
    _, late = fifo_departures(np.array([0.0]), np.array([1.0]), np.zeros(1), busy_until=np.array([4.0]))
    assert late[0] == 5.0


def test_ties_keep_input_order_and_last_departure_per_queue():
    order = queue_order(np.array([1, 0, 1, 0]), np.array([2.0, 3.0, 2.0, 1.0]))
    assert order.tolist() == [3, 1, 0, 2]
    busy = last_departure_per_queue(np.array([0, 0, 2]), np.array([1.0, 3.0, 2.0]), 3)
    assert busy.tolist() == [3.0, -np.inf, 2.0]
