"""`qkd.source: quisp`: the links' pair states from QuISP runs done before the run (backends.quisp)."""

from __future__ import annotations

import pandas as pd
import pytest

from bridge.backends import quisp
from bridge.cosim.orchestrator import run_once
from qesif_core.errors import UserInputError


def quisp_spec(small_spec, channel: str, **qkd):
    spec = small_spec(rounds=2, channel=channel)
    spec["qkd"] = {"protocol": "bbm92", "pulses_per_block": 200_000, "source": "quisp", **qkd}
    return spec


def scalar(table: pd.DataFrame, module: str, name: str) -> float:
    rows = table[(table["type"] == "scalar") & (table["module"] == module) & (table["name"] == name)]
    assert len(rows) == 1, (module, name)
    return float(rows["value"].iloc[0])


def test_quisp_source_needs_bbm92(small_spec):
    with pytest.raises(UserInputError, match=r"qkd\.protocol to bbm92 \(got 'bb84'\)"):
        run_once(quisp_spec(small_spec, "clean", protocol="bb84"))


def test_quisp_source_without_quisp_says_how_to_provide_it(small_spec, tmp_path, monkeypatch):
    monkeypatch.setenv(quisp.QUISP_ENV, str(tmp_path / "no-such-quisp"))
    with pytest.raises(UserInputError, match=r"QuISP not found \(set \$QUISP"):
        run_once(quisp_spec(small_spec, "clean"))


@pytest.mark.quisp
def test_real_quisp_links_drive_the_run(small_spec):
    """A clean and an eavesdropped run with QuISP's pair states: the attacked links show the attack's QBER
    and are flagged, the clean ones yield keys; the same seed gives the same table (QuISP's seed-set comes
    from the run's generator)."""
    missing = quisp.why_no_quisp()
    if missing:
        pytest.skip(missing)
    clean = run_once(quisp_spec(small_spec, "clean"))
    tapped = run_once(quisp_spec(small_spec, "eavesdropped"))
    assert scalar(clean, "qkd", "qber_mean") < 0.03 < 0.10 < scalar(tapped, "qkd", "qber_mean")
    assert scalar(clean, "qkd", "keys_accepted") > 0 and scalar(tapped, "qkd", "keys_accepted") == 0
    assert scalar(tapped, "ids", "quantum_detection_rate") == 1.0
    pd.testing.assert_frame_equal(clean, run_once(quisp_spec(small_spec, "clean")))
