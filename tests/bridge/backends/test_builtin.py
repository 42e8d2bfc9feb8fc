import pytest

from bridge.backends.builtin import BuiltinNetwork, network_params
from bridge.cosim.orchestrator import plan_costs
from bridge.scenario import resolve_channel
from qesif_core.costs import load_cost_model
from qesif_core.errors import UserInputError
from qesif_core.network.wifi import ESP32_RADIO_A, Wifi80211
from qesif_core.schemes.base import SessionPlan


def _spec(**network):
    return {
        "seed": 2,
        "rounds": 2,
        "round_duration_s": 0.5,
        "dataset": {"name": "bot_iot", "path": None, "max_rows": 800},
        "channel": resolve_channel("<test>", "channel", {"name": "clean"}),
        "network": {"devices": 20, "gateways": 2, "mean_interarrival_s": 0.1, "mqtt_fraction": 0.5,
                    "access": "802.15.4", **network},
        "qids": {},
        "costs": {},
    }  # fmt: skip


def test_radio_and_device_figures_come_from_the_cost_model():
    params = network_params(load_cost_model({"radio.tx_ma": 30.0, "device.cpu_hz": 64e6}))
    assert params.power.radio_tx_a == pytest.approx(0.030)
    assert params.power.cpu_hz == 64e6
    assert params.access.bitrate_bps == 250_000


def test_reliability_settings_of_the_network_section_reach_the_model():
    network = BuiltinNetwork(_spec(mqtt_qos=0, coap_confirmable=False, device_queue=3))
    assert (network.params.mqtt_qos, network.params.coap_confirmable) == (0, False)
    assert network.params.device_queue_limit == 3
    defaults = BuiltinNetwork(_spec()).params
    assert (defaults.mqtt_qos, defaults.coap_confirmable, defaults.device_queue_limit) == (1, True, 8)


def test_wifi_access_uses_802_11_timing_and_wifi_radio_currents():
    network = BuiltinNetwork(_spec(access="wifi"))
    assert isinstance(network.params.access, Wifi80211)
    assert network.params.power.radio_tx_a == ESP32_RADIO_A["radio_tx_a"]
    assert network.params.power.cpu_hz == BuiltinNetwork(_spec()).params.power.cpu_hz  # same MCU


def test_unsupported_access_and_too_many_gateways_are_user_errors():
    with pytest.raises(UserInputError, match=r"network\.access"):
        BuiltinNetwork(_spec(access="lora"))
    with pytest.raises(UserInputError, match=r"network\.gateways"):
        BuiltinNetwork(_spec(gateways=40))


def test_a_round_asks_for_each_session_once_and_reports_its_records():
    network = BuiltinNetwork(_spec())
    request = network.begin_round(0)
    assert len(request["device"]) == len(set(request["device"])) > 10
    assert all(0.0 <= t < 0.5 for t in request["time"])
    costs = plan_costs(load_cost_model(), SessionPlan("classical", "x25519", "aes-128-gcm", False))
    n = len(request["device"])
    grant = {"round": 0, "device": request["device"], **{k: [v] * n for k, v in costs.items()}}
    telemetry = network.finish_round(grant)
    assert telemetry["messages_sent"] >= telemetry["messages_delivered"] > 0
    assert len(telemetry["latency_s"]) == telemetry["messages_delivered"]
    assert sorted(telemetry["session_device"]) == sorted(request["device"])
    assert len(telemetry["record"]) == len(set(telemetry["record"])) > 0
    with pytest.raises(RuntimeError, match="does not answer"):
        network.finish_round(grant)  # the round's grant was already used


def test_a_saturated_pan_needs_application_retransmissions():
    spec = _spec()
    spec["rounds"] = 8
    network = BuiltinNetwork(spec)
    costs = plan_costs(load_cost_model(), SessionPlan("classical", "x25519", "aes-128-gcm", False))
    sent = delivered = retransmitted = lost = dropped = 0
    for r in range(spec["rounds"]):
        request = network.begin_round(r)
        n = len(request["device"])
        telemetry = network.finish_round(
            {"round": r, "device": request["device"], **{k: [v] * n for k, v in costs.items()}}
        )
        sent += telemetry["messages_sent"]
        delivered += telemetry["messages_delivered"]
        lost += telemetry["messages_lost"]
        dropped += telemetry["queue_drops"]
        retransmitted += telemetry["retransmissions"]
        assert len(telemetry["latency_s"]) == telemetry["messages_delivered"]
    assert retransmitted > 0  # ten devices per PAN lose frames to channel access failures
    assert delivered + lost + dropped + telemetry["in_flight"] == sent


def test_a_schedule_file_replaces_the_drawn_traffic(tmp_path):
    import numpy as np

    from bridge.backends.builtin import read_schedule
    from bridge.backends.workload import Workload, write_schedule
    from bridge.cosim.runsetup import run_streams

    spec = {**_spec(), "rounds": 3}
    written = write_schedule(Workload(spec, run_streams(spec["seed"])), 3, tmp_path / "s.csv")
    rounds = read_schedule(str(tmp_path / "s.csv"), 3, spec["round_duration_s"])
    assert sum(r.device.size for r in rounds) == len(written)
    network = BuiltinNetwork(spec, rounds)
    request = network.begin_round(1)
    first = rounds[1]
    assert (np.diff(first.device) >= 0).all()  # device order, then time, as the drawn traffic
    assert set(request["device"]) <= set(first.device.tolist())
    with pytest.raises(UserInputError, match="outside the run's 2 rounds"):
        read_schedule(str(tmp_path / "s.csv"), 2, spec["round_duration_s"])
