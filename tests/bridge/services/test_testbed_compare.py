"""The testbed-versus-built-in comparison: the simulated scenario matches the testbed's devices, load and
settings; a short real comparison runs both sides (marker ``testbed``)."""

from __future__ import annotations

import pytest

from bridge.cli import main
from bridge.scenario import expand, parse_scenario
from bridge.services.testbed import TestbedConfig, missing_requirements
from bridge.services.testbed_compare import compare, format_comparison, simulated_scenario
from qesif_core.errors import UserInputError

MISSING = missing_requirements()


def test_simulated_scenario_matches_the_testbed():
    config = TestbedConfig.from_mapping(
        {
            "devices": 3,
            "coap_devices": 1,
            "messages_per_device": 40,
            "rekeys": 3,
            "seed": 5,
            "channel": "noisy",
            "pulses_per_block": 10**6,
            "qids": {"key_drop_window": 4},
        }
    )
    (run,) = expand(parse_scenario(simulated_scenario(config, 0.005, [5]), "test"), "test")
    spec = run.spec
    assert spec["seed"] == 5 and spec["rounds"] == 4 and spec["scheme"] == "QESIF"
    assert spec["round_duration_s"] == pytest.approx(10 * 0.005)  # 10 messages per device and epoch
    network = spec["network"]
    assert (network["devices"], network["gateways"], network["access"]) == (4, 1, "wifi")
    assert network["mean_interarrival_s"] == 0.005 and network["mqtt_fraction"] == 0.75
    assert network["mqtt_qos"] == 1 and network["coap_confirmable"] is True
    assert spec["channel"]["name"] == "noisy" and spec["qkd"]["pulses_per_block"] == 10**6
    assert spec["qids"]["key_drop_window"] == 4
    assert spec["dataset"]["name"] == "ton_iot" and spec["dataset"]["path"] is None


def test_eavesdrop_interval_cannot_be_compared():
    config = TestbedConfig.from_mapping(
        {"messages_per_device": 4, "rekeys": 1, "eavesdrop": {"start_epoch": 0, "end_epoch": 1}}
    )
    with pytest.raises(UserInputError, match="eavesdrop"):
        simulated_scenario(config, 0.005, [1])


@pytest.mark.testbed
@pytest.mark.skipif(bool(MISSING), reason=f"testbed needs: {', '.join(MISSING)}")
def test_compare_runs_both_sides(tmp_path, capsys):
    config = TestbedConfig.from_mapping(
        {
            "devices": 2,
            "messages_per_device": 12,
            "rekeys": 1,
            "pulses_per_block": 10**6,
            "publish_interval_s": 0.002,
        }
    )
    table = compare(config, runs=1, workdir=tmp_path)
    rows = table.set_index("metric")
    assert rows.loc["messages sent", "testbed_median"] == 24
    assert rows.loc["messages delivered", "testbed_median"] == 24
    assert rows.loc["messages sent", "builtin_median"] > 0  # a Poisson draw at the measured rate
    assert (
        rows.loc["latency median (ms)", "testbed_median"] > 0
        and rows.loc["latency median (ms)", "builtin_median"] > 0
    )
    interarrival = rows.loc["offered interarrival per device (ms)"]
    assert interarrival["testbed_median"] == interarrival["builtin_median"] >= 2.0
    assert "built-in (predicted, Wi-Fi)" in format_comparison(table)
    scenario = tmp_path / "tb.yaml"
    scenario.write_text(
        "testbed: {devices: 1, messages_per_device: 4, rekeys: 0, publish_interval_s: 0.002}\n"
    )
    assert main(["testbed", "compare", str(scenario), "--runs", "1", "--out", str(tmp_path / "c.csv")]) == 0
    assert "latency median (ms)" in capsys.readouterr().out and (tmp_path / "c.csv").is_file()
