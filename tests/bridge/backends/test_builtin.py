import pytest

from bridge.backends.builtin import BuiltinNetwork, builtin_network, network_params
from bridge.cosim.orchestrator import plan_costs
from bridge.scenario import resolve_channel, run_spec
from qesif_core.costs import load_cost_model
from qesif_core.errors import UserInputError
from qesif_core.network.wifi import ESP32_RADIO_A, Wifi80211
from qesif_core.schemes.base import SessionPlan


def _spec(rounds=2, **network):
    return run_spec({
        "seed": 2,
        "rounds": rounds,
        "round_duration_s": 0.5,
        "backend": "builtin",
        "dataset": {"name": "bot_iot", "path": None, "max_rows": 800},
        "channel": resolve_channel("<test>", "channel", {"name": "clean"}),
        "scheme": "QESIF",
        "network": {"devices": 20, "gateways": 2, "mean_interarrival_s": 0.1, "mqtt_fraction": 0.5,
                    "access": "802.15.4", **network},
        "qkd": {},
        "qids": {},
        "keys": {},
        "costs": {},
    })  # fmt: skip


def test_radio_and_device_figures_come_from_the_cost_model():
    params = network_params(load_cost_model({"radio.tx_ma": 30.0, "device.cpu_hz": 64e6}))
    assert params.power.radio_tx_a == pytest.approx(0.030)
    assert params.power.cpu_hz == 64e6
    assert params.access.bitrate_bps == 250_000


def test_reliability_settings_of_the_network_section_reach_the_model():
    network = builtin_network(_spec(mqtt_qos=0, coap_confirmable=False, device_queue=3))
    assert (network.params.mqtt_qos, network.params.coap_confirmable) == (0, False)
    assert network.params.device_queue_limit == 3
    defaults = builtin_network(_spec()).params
    assert (defaults.mqtt_qos, defaults.coap_confirmable, defaults.device_queue_limit) == (1, True, 8)


def test_wifi_access_uses_802_11_timing_and_wifi_radio_currents():
    network = builtin_network(_spec(access="wifi"))
    assert isinstance(network.params.access, Wifi80211)
    assert network.params.power.radio_tx_a == ESP32_RADIO_A["radio_tx_a"]
    assert network.params.power.cpu_hz == builtin_network(_spec()).params.power.cpu_hz  # same MCU


def test_unsupported_access_and_too_many_gateways_are_user_errors():
    spec = _spec()
    lora = spec.network.model_copy(update={"access": "lora"})  # past the spec's own check
    with pytest.raises(UserInputError, match=r"network\.access"):
        BuiltinNetwork(lora, builtin_network(spec).workload, None, rounds=2, costs=load_cost_model())
    with pytest.raises(UserInputError, match=r"network\.access"):
        _spec(access="lora")
    with pytest.raises(UserInputError, match=r"network\.gateways"):
        builtin_network(_spec(gateways=40))


def test_a_round_asks_for_each_session_once_and_reports_its_records():
    network = builtin_network(_spec())
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
    spec = _spec(rounds=8)
    network = builtin_network(spec)
    costs = plan_costs(load_cost_model(), SessionPlan("classical", "x25519", "aes-128-gcm", False))
    sent = delivered = retransmitted = lost = dropped = 0
    for r in range(spec.rounds):
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
    from bridge.backends.workload import run_workload, write_schedule
    from bridge.cosim.runsetup import run_streams

    spec = _spec(rounds=3)
    written = write_schedule(run_workload(spec, run_streams(spec.seed)), 3, tmp_path / "s.csv")
    rounds = read_schedule(str(tmp_path / "s.csv"), 3, spec.round_duration_s)
    assert sum(r.device.size for r in rounds) == len(written)
    network = builtin_network(spec, rounds)
    request = network.begin_round(1)
    first = rounds[1]
    assert (np.diff(first.device) >= 0).all()  # device order, then time, as the drawn traffic
    assert set(request["device"]) <= set(first.device.tolist())
    with pytest.raises(UserInputError, match="outside the run's 2 rounds"):
        read_schedule(str(tmp_path / "s.csv"), 2, spec.round_duration_s)
