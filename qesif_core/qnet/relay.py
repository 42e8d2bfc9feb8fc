"""Hop-by-hop one-time-pad relay of end-to-end keys through trusted nodes.

The source KME draws a fresh key K. On each hop u -> v of the route, u sends ``K xor k_uv`` over the
classical channel, where ``k_uv`` is u's copy of a link key shared with v (used for this one message and
then erased), and v recovers ``K = c xor k_uv`` with its own copy. Each intermediate node therefore holds K
in the clear for a moment: the scheme is secure only if every relay is trusted (ITU-T Y.3800-series
"trusted nodes"), and the network counts, per node, how many end-to-end keys it has seen. An eavesdropper
on the classical channel sees only ciphertexts, each padded by a link key used once.

If a hop's two copies of the link key differ (a verification miss, probability ~2^-64 per block), the key
that arrives differs from K; the two ends compare a hash of their copies before use, so such a key is
discarded, never delivered.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def one_time_pad_relay(secret: np.ndarray, hops: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The key each of ``secret``'s rows becomes at the far end after the ``hops`` (``(sender's copy,
    receiver's copy)`` of each hop's link keys, one row per end-to-end key, uint8)."""
    key = np.asarray(secret, dtype=np.uint8)
    for sender_copy, receiver_copy in hops:
        ciphertext = np.bitwise_xor(key, sender_copy)  # what travels on the classical channel
        key = np.bitwise_xor(ciphertext, receiver_copy)
    return key
