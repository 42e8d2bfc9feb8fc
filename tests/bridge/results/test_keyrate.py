import pandas as pd

from bridge.cosim.orchestrator import run_once
from bridge.results import keyrate
from bridge.scenario import expand, parse_scenario


def test_figure_9_points_are_engine_blocks_fixed_against_optimised():
    points = keyrate.keyrate_points()
    assert len(points) == 2 * 2 * len(keyrate.INTRINSIC_ERRORS)
    assert set(points["pulses"]) == {10**9, keyrate.REFERENCE_BLOCK}
    fixed = points[points["intensities"] == "fixed"]
    assert set(zip(fixed["mu_signal"], fixed["mu_decoy"], strict=True)) == {keyrate.FIXED_INTENSITIES}
    at = points.set_index(["pulses", "intensities", "intrinsic_error"])["secret_bits"]
    # The case: at 7 % error mu = 0.5 leaves no key even in a 1e9-pulse block; optimised mu does.
    assert at[(10**9, "fixed", 0.07)] == 0 < at[(10**9, "optimise", 0.07)]
    assert at[(keyrate.REFERENCE_BLOCK, "optimise", 0.07)] == 0
    for (pulses, mode, error), bits in at.items():
        if pulses == keyrate.REFERENCE_BLOCK and bits > 0:
            assert at[(10**9, mode, error)] > 100 * bits  # finite-size penalties dominate short blocks
    assert points.loc[points["intrinsic_error"] == 0.11, "secret_bits"].eq(0).all()


def test_report_section_per_channel_from_real_runs():
    scenario = parse_scenario(
        {
            "name": "t",
            "rounds": 2,
            "round_duration_s": 0.5,
            "datasets": [{"name": "ton_iot", "max_rows": 1500}],
            "channels": ["clean", "eavesdropped"],
            "network": {"devices": 12, "gateways": 2},
            "qids": {"calibration_blocks": 3},
        }
    )
    table = pd.concat([run_once(run.spec) for run in expand(scenario)], ignore_index=True)
    section = keyrate.keyrate_section(table)
    assert section.count("<tr>") == 3  # header, clean, eavesdropped
    clean, tapped = section.split("<tr><td>")[1:]
    assert clean.startswith("clean") and "(optimised)" in clean and "100.0 % (n=4)" in clean
    assert "the finite-key length was 0 in all 4 blocks" in tapped
    assert keyrate.keyrate_section(table[table["name"] != "blocks"]) == ""
