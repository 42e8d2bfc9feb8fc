"""Repeater links through QuISP: the chain template's overrides, the labelled fallback to the built-in model
when QuISP is absent, and (marked ``quisp``) a real QuISP repeater chain as a link's pair state."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from bridge.backends import quisp as quisp_backend
from bridge.qnet.quisp import (
    NOT_INSTALLED,
    REPEATER_CONFIG,
    REPEATER_INI,
    attach_quisp_pair_states,
    chain_overrides,
)
from qesif_core.qkd.channel import ChannelParams
from qesif_core.qnet.links import LinkModel
from qesif_core.qnet.repeater import chain_pair_model


def repeater(distance_km: float = 20.0, segments: int = 2, intrinsic_error: float = 0.01) -> LinkModel:
    channel = ChannelParams(distance_km=distance_km, intrinsic_error=intrinsic_error)
    return LinkModel("rep", channel, "bbm92", 10**6, 10.0, segments=segments)


def test_chain_overrides_split_the_fibre_into_segments():
    lines = chain_overrides(repeater(30.0, 3))
    assert lines["*.repeaters"] == "2" and lines["*.segment_km"] == "10.0km"
    rates = {k.removeprefix("**."): float(v) for k, v in lines.items() if k.startswith("**.")}
    qber_z, qber_x = quisp_backend.expected_qber(rates, 10.0)
    assert qber_z == pytest.approx(0.01, rel=1e-9) and qber_x == pytest.approx(0.01, rel=1e-9)
    assert f"[Config {REPEATER_CONFIG}]" in REPEATER_INI.read_text()


def test_without_quisp_the_built_in_model_runs_and_says_so(monkeypatch, tmp_path, rng):
    monkeypatch.setenv(quisp_backend.QUISP_ENV, str(tmp_path / "no-quisp"))
    links, notes = attach_quisp_pair_states([repeater()], ["quisp"], rng)
    assert notes == {"rep": NOT_INSTALLED}
    assert links[0].pair_state is None and "built-in repeater-chain model" in links[0].description
    untouched, none = attach_quisp_pair_states([repeater()], ["builtin"], rng)
    assert none == {} and untouched[0].pair_state is None


@pytest.mark.quisp
def test_real_quisp_repeater_chain_gives_the_links_pair_state(tmp_path):
    exe = quisp_backend.find_quisp()
    if exe is None:
        pytest.skip(f"QuISP not installed (set ${quisp_backend.QUISP_ENV} to the built quisp executable)")
    os.environ.setdefault("QUISP_TIMEOUT_S", "300")
    link = repeater(20.0, 2)
    (attached,), notes = attach_quisp_pair_states([link], ["quisp"], np.random.default_rng(4), exe)
    assert notes == {} and attached.pair_state is not None
    assert "pair state from QuISP" in attached.description
    expected = chain_pair_model(link.channel, 2)  # two 1% segments: 1.98% end to end
    measured = attached.pair_state
    pairs_per_basis = 4000 / quisp_backend.BASIS_PAIRS  # app.number_of_bellpair of qesif_repeater.ini
    for got, want in ((measured.qber_z, expected.qber_z), (measured.qber_x, expected.qber_x)):
        assert abs(got - want) < 4 * math.sqrt(want * (1 - want) / pairs_per_basis) + 1e-3
