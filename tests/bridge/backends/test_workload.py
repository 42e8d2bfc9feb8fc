import numpy as np
import pandas as pd

from bridge.backends.workload import (
    PAYLOAD_MAX_BYTES,
    PAYLOAD_MIN_BYTES,
    Workload,
    record_payloads,
    write_schedule,
)
from bridge.cosim.runsetup import run_streams


def _spec():
    return {
        "seed": 3,
        "rounds": 3,
        "round_duration_s": 0.5,
        "dataset": {"name": "bot_iot", "path": None, "max_rows": 800},
        "network": {"devices": 12, "gateways": 3, "mean_interarrival_s": 0.1, "mqtt_fraction": 0.5},
        "qids": {},
    }


def test_payloads_are_bytes_per_packet_clipped():
    payload = record_payloads(np.array([0.0, 500.0, 1e9, np.nan]), np.array([1.0, 5.0, 2.0, 0.0]))
    assert payload.tolist() == [PAYLOAD_MIN_BYTES, 100, PAYLOAD_MAX_BYTES, PAYLOAD_MIN_BYTES]


def test_a_fixed_payload_size_replaces_the_records_sizes():
    spec = _spec()
    spec["network"] = {**spec["network"], "payload_bytes": 100}
    fixed = Workload(spec, run_streams(spec["seed"])).round_messages(0)
    assert (fixed.payload == 100).all() and fixed.payload.size > 0
    records = Workload(_spec(), run_streams(spec["seed"])).round_messages(0)
    assert np.array_equal(records.record, fixed.record)  # the same flow records, only their sizes go
    assert len(np.unique(records.payload)) > 1


def test_schedule_file_holds_every_round_in_time_order_and_repeats_for_a_seed(tmp_path):
    spec = _spec()
    written = write_schedule(Workload(spec, run_streams(spec["seed"])), 3, tmp_path / "a.csv")
    again = write_schedule(Workload(spec, run_streams(spec["seed"])), 3, tmp_path / "b.csv")
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


def test_first_round_equals_the_builtin_backends_first_round():
    from bridge.backends.builtin import BuiltinNetwork
    from bridge.scenario import resolve_channel

    spec = {**_spec(), "channel": resolve_channel("<t>", "channel", {"name": "clean"}), "costs": {}}
    spec["network"] = {**spec["network"], "access": "802.15.4"}
    request = BuiltinNetwork(spec).begin_round(0)
    first = Workload(spec, run_streams(spec["seed"])).round_messages(0)
    starts = {d: float(first.time[first.device == d].min()) for d in np.unique(first.device)}
    assert request["device"] == sorted(starts)
    assert request["time"] == [starts[d] for d in request["device"]]
