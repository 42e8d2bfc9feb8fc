"""Key lifetime in a run: rounds longer than the pools' key lifetime (3,600 s) must run, and no key past its
lifetime is ever granted."""

import pandas as pd

from bridge.cosim.orchestrator import Orchestrator, run_once
from qesif_core.keys import KeyPool


def _scalars(table: pd.DataFrame) -> dict[str, float]:
    rows = table[table["type"] == "scalar"]
    return dict(zip(rows["module"] + "/" + rows["name"], rows["value"], strict=True))


def long_round_spec(small_spec, rounds: int = 20):
    """20 rounds of 400 s with 2 devices on 1 gateway: the gateway's key cache outlives a key's 3,600 s."""
    spec = small_spec(seed=5, rounds=rounds, devices=2, gateways=1, mean_interarrival_s=20.0)
    spec["round_duration_s"] = 400.0
    spec["qkd"]["pulses_per_block"] = 1_000_000  # enough keys per block to fill an ETSI batch of 16
    return spec


def test_rounds_longer_than_the_key_lifetime_run_and_expired_keys_are_counted(small_spec):
    scalars = _scalars(run_once(long_round_spec(small_spec)))
    assert scalars["keys/keys_used"] > 0
    assert scalars["keys/keys_discarded"] > 0  # keys outlived their 3,600 s in the pools or the cache
    assert scalars["hybrid/quantum_sessions"] == scalars["keys/keys_used"]


def test_no_granted_key_is_past_its_lifetime(small_spec, monkeypatch):
    """Every key handed to a session was alive at the session's start (checked on the pool's own records)."""
    spec = long_round_spec(small_spec, rounds=12)
    granted: list[tuple[float, float]] = []  # (session time, key expiry)
    original = KeyPool.dec_keys

    def recording(self, master_sae_id, key_ids, *, caller, now):
        container = original(self, master_sae_id, key_ids, caller=caller, now=now)
        for key_id in key_ids:
            granted.append((now, self.provenance(key_id).created_at + self.key_lifetime_s))
        return container

    monkeypatch.setattr(KeyPool, "dec_keys", recording)
    orchestrator = Orchestrator(spec)
    from bridge.backends.builtin import builtin_network, drive

    drive(builtin_network(orchestrator.spec), orchestrator.handle)
    assert orchestrator.finished and granted
    assert all(now < expires for now, expires in granted)
