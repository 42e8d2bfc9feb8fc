import numpy as np
import pandas as pd

from bridge.backends.builtin import COST_COLUMNS, INT_COST_COLUMNS
from bridge.backends.workload import (
    PAYLOAD_MAX_BYTES,
    PAYLOAD_MIN_BYTES,
    Workload,
    record_payloads,
    run_workload,
    write_schedule,
)
from bridge.cosim.runsetup import run_streams
from bridge.scenario import RunSpec, run_spec


def _spec(**network) -> RunSpec:
    return run_spec(
        {
            "seed": 3,
            "rounds": 3,
            "round_duration_s": 0.5,
            "backend": "builtin",
            "dataset": {"name": "bot_iot", "path": None, "max_rows": 800},
            "channel": {"name": "clean"},
            "scheme": "QESIF",
            "network": {
                "devices": 12,
                "gateways": 3,
                "mean_interarrival_s": 0.1,
                "mqtt_fraction": 0.5,
                **network,
            },
            "qkd": {},
            "qids": {},
            "keys": {},
            "costs": {},
        }
    )


def _workload(spec: RunSpec) -> Workload:
    return run_workload(spec, run_streams(spec.seed))


def test_payloads_are_bytes_per_packet_clipped():
    payload = record_payloads(np.array([0.0, 500.0, 1e9, np.nan]), np.array([1.0, 5.0, 2.0, 0.0]))
    assert payload.tolist() == [PAYLOAD_MIN_BYTES, 100, PAYLOAD_MAX_BYTES, PAYLOAD_MIN_BYTES]


def test_a_fixed_payload_size_replaces_the_records_sizes():
    fixed = _workload(_spec(payload_bytes=100)).round_messages(0)
    assert (fixed.payload == 100).all() and fixed.payload.size > 0
    records = _workload(_spec()).round_messages(0)
    assert np.array_equal(records.record, fixed.record)  # the same flow records, only their sizes go
    assert len(np.unique(records.payload)) > 1


def test_schedule_file_holds_every_round_in_time_order_and_repeats_for_a_seed(tmp_path):
    spec = _spec()
    written = write_schedule(_workload(spec), 3, tmp_path / "a.csv")
    again = write_schedule(_workload(spec), 3, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    read = pd.read_csv(tmp_path / "a.csv")
    assert list(read.columns) == ["device", "time", "payload", "record"]
    assert read["time"].is_monotonic_increasing
    assert read["time"].min() >= 0 and read["time"].max() < 1.5
    # times survive the text round trip exactly (the model's round boundaries depend on them)
    assert np.array_equal(read["time"].to_numpy(), written["time"].to_numpy())
    assert read["device"].between(0, 11).all()
    # about 12 devices x 10 msg/s x 1.5 s
    assert 120 < len(read) < 240
    assert len(again) == len(written)


def test_every_round_equals_the_builtin_backends_rounds(tmp_path):
    """The built-in backend draws its channel from a stream of its own, so both backends carry exactly the
    same messages in every round (the OMNeT++ backend replays the schedule file)."""
    from bridge.backends.builtin import builtin_network

    spec = _spec(access="802.15.4")
    schedule = write_schedule(_workload(spec), 3, tmp_path / "t.csv")
    network = builtin_network(spec)
    for r in range(3):
        request = network.begin_round(r)
        grant = {"round": r, "device": request["device"]}
        grant.update({name: [0] * len(request["device"]) for name in INT_COST_COLUMNS})
        grant.update({name: [0.0] * len(request["device"]) for name in COST_COLUMNS if name not in grant})
        telemetry = network.finish_round(grant)
        in_round = schedule[(schedule["time"] >= 0.5 * r) & (schedule["time"] < 0.5 * (r + 1))]
        assert telemetry["messages_sent"] == len(in_round)
        first = in_round.groupby("device")["time"].min()
        if r == 0:
            assert request["device"] == first.index.tolist() and request["time"] == first.tolist()
