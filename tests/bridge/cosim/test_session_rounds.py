"""``keys.session_rounds``: sessions (handshake, CONNECT, key) last N rounds, renewed on a staggered plan."""

import pandas as pd
import pytest

from bridge.cosim.orchestrator import run_once
from qesif_core.errors import UserInputError


def _scalars(table: pd.DataFrame) -> dict[str, float]:
    rows = table[table["type"] == "scalar"]
    return dict(zip(rows["module"] + "/" + rows["name"], rows["value"], strict=True))


def _tiny(small_spec, session_rounds: int, channel: str = "clean") -> dict:
    """4 devices on one Wi-Fi gateway, traffic every round, no ACK waits; seed 9's traffic leaves every
    device free at every round boundary (with seeds 7 and 8 one device is still sending a message at one
    boundary and keeps its session: 23 sessions), so sessions start exactly on the schedule; 1e6 pulses per
    block give QKD keys every round."""
    spec = small_spec(
        seed=9, rounds=6, channel=channel, devices=4, gateways=1, mean_interarrival_s=0.05, access="wifi",
        mqtt_qos=0, coap_confirmable=False,
    )  # fmt: skip
    spec["qkd"]["pulses_per_block"] = 1_000_000
    spec["keys"] = {"epsilon_min": 0.01, "session_rounds": session_rounds}
    return spec


def test_sessions_and_keys_follow_the_staggered_schedule(small_spec):
    every_round = _scalars(run_once(_tiny(small_spec, 1)))
    assert every_round["hybrid/quantum_sessions"] == 24  # 4 devices x 6 rounds
    assert every_round["keys/keys_used"] == 24
    # N = 3, offsets d % 3 = 0, 1, 2, 0: all start in round 0, then d0 and d3 at round 3, d1 at 2 and 5,
    # d2 at 1 and 4.
    three = _scalars(run_once(_tiny(small_spec, 3)))
    assert three["hybrid/quantum_sessions"] + three["hybrid/classical_sessions"] == 10
    assert three["keys/keys_used"] == three["hybrid/quantum_sessions"] == 10
    assert three["network/messages_delivered"] == three["network/messages_sent"]
    # Energy per session divides the run's device energy by fewer sessions.
    assert three["network/energy_per_session_mJ"] > every_round["network/energy_per_session_mJ"]


def test_a_flagged_link_forces_new_sessions(small_spec):
    clean = _scalars(run_once(_tiny(small_spec, 100)))
    attacked = _scalars(run_once(_tiny(small_spec, 100, channel="eavesdropped")))
    assert clean["hybrid/quantum_sessions"] + clean["hybrid/classical_sessions"] == 4  # one each, all run
    assert attacked["ids/link_flags"] > 0
    assert attacked["hybrid/classical_sessions"] > 0  # re-planned while flagged: classical
    assert attacked["hybrid/quantum_sessions"] + attacked["hybrid/classical_sessions"] > 4


def test_a_link_that_stays_flagged_does_not_renew_sessions_every_round(small_spec):
    """Sessions are re-planned when a link's flag turns on (or off), not in every round it stays on: a
    persistently attacked link would otherwise cost a handshake per device per round."""
    attacked = _scalars(run_once(_tiny(small_spec, 100, channel="eavesdropped")))
    assert attacked["ids/link_flags"] == 6  # flagged in every one of the 6 rounds
    # 4 sessions in round 0, 4 re-planned when the flag first appears, none after.
    assert attacked["hybrid/quantum_sessions"] + attacked["hybrid/classical_sessions"] == 8


def test_same_seed_same_bytes_and_kernels_and_bridges_agree(small_spec, monkeypatch):
    spec = small_spec(seed=5, rounds=4, mean_interarrival_s=0.05)
    spec["keys"] = {"session_rounds": 3}
    first = run_once(spec)
    assert first.to_csv().encode() == run_once(spec).to_csv().encode()
    pd.testing.assert_frame_equal(first, run_once(spec, bridge="zmq"))
    monkeypatch.setenv("QESIF_IMPL", "python")
    pure = run_once(spec)
    monkeypatch.setenv("QESIF_IMPL", "cython")
    pd.testing.assert_frame_equal(pure, run_once(spec))
    pd.testing.assert_frame_equal(pure, first)
    one = small_spec(seed=5, rounds=4, mean_interarrival_s=0.05)
    assert _scalars(first)["keys/keys_used"] <= _scalars(run_once(one))["keys/keys_used"]
    sessions = lambda t: _scalars(t)["hybrid/classical_sessions"] + _scalars(t)["hybrid/quantum_sessions"]  # noqa: E731
    # Where devices are free at round boundaries (Wi-Fi carries this load; a saturated 802.15.4 PAN keeps
    # them busy, and a busy device keeps its session anyway), 3-round sessions mean fewer sessions.
    wifi = lambda s: {**s, "network": {**s["network"], "access": "wifi"}}  # noqa: E731
    assert sessions(run_once(wifi(spec))) < sessions(run_once(wifi(one)))


@pytest.mark.parametrize("bad", [0, -2, 2.0, True, "3"])
def test_a_bad_session_rounds_is_a_user_error(small_spec, bad):
    spec = small_spec(rounds=1)
    spec["keys"] = {"session_rounds": bad}
    with pytest.raises(UserInputError, match=f"keys.session_rounds.*{bad!r}"):
        run_once(spec)
