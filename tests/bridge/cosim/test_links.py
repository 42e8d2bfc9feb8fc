"""A run's gateway links: the same blocks and the same key bits whether a run computes its QKD live or reads
the batch's shared entry (``bridge.cosim.links``)."""

from __future__ import annotations

import numpy as np

from bridge.cache import ContentCache, activated
from bridge.cosim.links import GatewayLinks
from bridge.scenario import QidsSpec, QkdSpec
from qesif_core.keys import key_bits_of
from qesif_core.qids.anomaly import QidsParams
from qesif_core.qkd.channel import preset


def _keys(min_key_bits: int = 0) -> list[np.ndarray]:
    links = GatewayLinks(
        QkdSpec(protocol="bb84", source="builtin", frame_bits=4096),
        preset("clean"),
        QidsParams(),
        QidsSpec(calibration_blocks=2),
        np.random.default_rng(5),
        n_links=2,
        rounds=4,
        seed=11,
        pulses=1_000_000,
    )
    return [key_bits_of(links.block(link, r, min_key_bits).alice_key) for r in range(4) for link in range(2)]


def test_a_run_reading_the_shared_entry_keys_its_pools_with_the_blocks_own_amplified_bits(tmp_path):
    live = _keys()
    assert sum(k.size for k in live) > 0
    with activated(ContentCache(tmp_path)):
        cold = _keys()
        warm = _keys()
    for ours in (cold, warm):
        assert len(ours) == len(live)
        assert all(np.array_equal(a, b) for a, b in zip(ours, live, strict=True))
