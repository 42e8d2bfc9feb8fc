import numpy as np
import pandas as pd
import pytest

from bridge import datasets
from bridge.datasets import FLOW_COLUMNS, base, load_flows, open_dataset, write_synthetic_csv
from qesif_core.errors import UserInputError

SAMPLES = [
    ("ton_iot", "ton_iot/network_sampleA.csv", 9520),
    ("ton_iot", "ton_iot/Train_Test_IoT_Fridge.csv", 39944),
    ("ton_iot", "ton_iot/Train_Test_IoT_Thermostat.csv", 32774),
    ("ton_iot", "ton_iot/Train_Test_IoT_Modbus.csv", 31106),
    ("bot_iot", "bot_iot/data_t.csv", 1109),
    ("bot_iot", "bot_iot/preprocessed_12col_half_A.csv", 9426),
    ("edge_iiotset", "edge_iiotset/MITM_attack.csv", 1229),
    ("edge_iiotset", "edge_iiotset/normal_rows_from_DNN_sample.csv", 31),
]


@pytest.mark.parametrize("name, relative, rows", SAMPLES)
def test_samples_map_to_the_common_flow_table(data_path, name, relative, rows):
    flows = load_flows(name, data_path("datasets", relative), rng=None)
    assert list(flows.columns[: len(FLOW_COLUMNS)]) == list(FLOW_COLUMNS)
    assert len(flows) == rows
    assert flows.attrs["synthetic"] is False
    assert flows["label"].dtype == bool
    assert not flows["attack_type"].isin(["", "unknown"]).any()
    assert set(flows.loc[~flows["label"], "attack_type"]) <= {"normal"}
    features = [c for c in flows.columns if c.startswith("feat_")]
    assert features and all(flows[c].dtype == np.float64 for c in features)


def test_ton_iot_counts_and_telemetry_timestamps(data_path):
    net = load_flows("ton_iot", data_path("datasets", "ton_iot/network_sampleA.csv"), None)
    assert net["attack_type"].value_counts()["mitm"] == 520
    assert net["ts"].isna().all()  # this release has no ts column
    fridge = load_flows("ton_iot", data_path("datasets", "ton_iot/Train_Test_IoT_Fridge.csv"), None)
    assert (fridge["device_key"] == "fridge").all()
    # first row: 25-Apr-19, " 19:19:40 " (padded, after a BOM and with CRLF line ends)
    assert fridge["ts"].iloc[0] == pd.Timestamp("2019-04-25 19:19:40", tz="UTC").timestamp()
    assert fridge["attack_type"].value_counts()["normal"] == 15000


def test_bot_iot_sample_labels(data_path):
    flows = load_flows("bot_iot", data_path("datasets", "bot_iot/data_t.csv"), None)
    assert int(flows["label"].sum()) == 1044
    assert set(flows["attack_type"]) == {"ddos", "normal"}
    assert flows["bytes_out"].iloc[0] == 120.0 and flows["protocol"].iloc[0] == "arp"


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


BOT_HEADER = ",".join(datasets.bot_iot.SCHEMA)


def bot_row(sport="139", dport="36390", attack="1", category="DDoS", sbytes="350"):
    values = dict.fromkeys(datasets.bot_iot.SCHEMA, "")
    values.update(
        pkSeqID="1", stime="1526344121.5", flgs="e", proto="tcp", saddr="192.168.100.7", sport=sport,
        daddr="192.168.100.4", dport=dport, pkts="10", bytes="680", state="CON", dur="1.5", spkts="5",
        dpkts="5", sbytes=sbytes, dbytes="330", rate="0.1", attack=attack, category=category,
        subcategory="TCP",
    )  # fmt: skip
    return ",".join(values[c] for c in datasets.bot_iot.SCHEMA)


def test_quirks_bom_crlf_hex_numbers_and_empty_columns(tmp_path):
    text = "\ufeff" + BOT_HEADER + "\r\n" + bot_row(sbytes="0x15e", dport="") + "\r\n" + bot_row() + "\r\n"
    flows = load_flows("bot_iot", write(tmp_path, "bot.csv", text), None)
    assert flows["feat_sbytes"].tolist() == [350.0, 350.0]
    assert "feat_sport" not in flows and "feat_dport" not in flows  # ports are never features
    assert np.isnan(flows["feat_mean"]).all()  # empty column
    assert flows["ts"].iloc[0] == 1526344121.5


def test_column_subset_is_accepted_and_absent_columns_are_nan(tmp_path):
    text = "saddr,daddr,proto,sbytes,attack,category\n1.2.3.4,5.6.7.8,udp,99,0,Normal\n"
    flows = load_flows("bot_iot", write(tmp_path, "subset.csv", text), None)
    assert flows["bytes_out"].tolist() == [99.0] and np.isnan(flows["bytes_in"].iloc[0])


def test_wrong_dataset_lists_the_missing_expected_columns(data_path):
    with pytest.raises(UserInputError, match=r"not a bot_iot .*missing expected column\(s\) attack"):
        open_dataset("bot_iot", data_path("datasets", "ton_iot/network_sampleA.csv"))
    with pytest.raises(UserInputError, match="Attack_label"):
        open_dataset("edge_iiotset", data_path("datasets", "bot_iot/data_t.csv"))


def test_missing_label_column_names_file_and_column(tmp_path):
    path = write(tmp_path, "nolabel.csv", "saddr,daddr,proto,subcategory\n1,2,tcp,TCP\n")
    with pytest.raises(UserInputError, match=r"nolabel\.csv.*missing expected column\(s\) attack"):
        open_dataset("bot_iot", path)


def test_a_file_without_any_feature_column_is_named(tmp_path):
    path = write(tmp_path, "labels.csv", "saddr,attack,category\n1.2.3.4,0,Normal\n")
    with pytest.raises(UserInputError, match=r"labels\.csv.*at least one feature column.*pkts"):
        open_dataset("bot_iot", path)


def test_bot_iot_12_column_projection_is_labelled_by_category(data_path):
    path = data_path("datasets", "bot_iot/preprocessed_12col_half_A.csv")
    data = open_dataset("bot_iot", path)
    assert data.variant.label_column is None
    assert data.features == [
        "pkts", "bytes", "dur", "mean", "stddev", "sum", "min", "max", "rate", "flgs", "proto",
    ]  # fmt: skip
    flows = load_flows("bot_iot", path, None)
    assert flows["attack_type"].value_counts().to_dict() == {
        "dos": 5115,
        "normal": 3378,
        "reconnaissance": 933,
    }
    assert (flows["label"] == (flows["attack_type"] != "normal")).all()
    # no per-direction split in this release: its totals stand for the outgoing side
    assert flows["bytes_out"].iloc[0] == 680.0 and np.isnan(flows["bytes_in"]).all()


def test_category_labelled_file_with_an_empty_category_names_the_line(tmp_path):
    path = write(tmp_path, "gap.csv", "proto,pkts,category\ntcp,3,Normal\nudp,4,\n")
    with pytest.raises(UserInputError, match=r"gap\.csv: type column 'category'.*line 3"):
        load_flows("bot_iot", path, None)


#: The "10-best" Bot-IoT release (UNSW_2018_IoT_Botnet_Final_10_best_{Training,Testing}.csv).
TEN_BEST = (
    "pkSeqID", "proto", "saddr", "sport", "daddr", "dport", "seq", "stddev", "N_IN_Conn_P_SrcIP", "min",
    "state_number", "mean", "N_IN_Conn_P_DstIP", "drate", "srate", "max", "attack", "category", "subcategory",
)  # fmt: skip


def test_bot_iot_10_best_release(tmp_path):
    rows = [
        "1,udp,192.168.100.147,49960,192.168.100.3,80,1,0.1,100,1.2,4,2.0,96,0.0,0.25,3.0,1,DDoS,UDP",
        "2,tcp,192.168.100.7,139,192.168.100.4,36390,2,0.0,3,0.0,1,0.0,2,0.0,0.0,0.0,0,Normal,Normal",
    ]
    path = write(tmp_path, "ten_best.csv", ",".join(TEN_BEST) + "\n" + "\n".join(rows) + "\n")
    data = open_dataset("bot_iot", path)
    assert sorted(data.features) == sorted(
        ["stddev", "min", "state_number", "mean", "drate", "srate", "max", "proto"]
    )
    flows = load_flows("bot_iot", path, None)
    assert flows["label"].tolist() == [True, False] and flows["device_key"].iloc[0] == "192.168.100.147"


#: The columns the issue found leaking (capture order, ports, stream ids, checksums): never features.
KNOWN_LEAKS = {
    "bot_iot": ("seq", "sport", "dport", "pkSeqID", "stime", "ltime", "N_IN_Conn_P_SrcIP"),
    "edge_iiotset": (
        "udp.stream",
        "tcp.seq",
        "tcp.ack_raw",
        "tcp.checksum",
        "icmp.checksum",
        "mbtcp.trans_id",
    ),
    "ton_iot": ("src_ip", "src_port", "dst_port", "ts"),
}


@pytest.mark.parametrize("name", list(datasets.DATASETS))
def test_never_used_columns_are_declared_with_a_reason_and_never_become_features(tmp_path, rng, name):
    module = datasets.DATASETS[name]
    never = module.NEVER_FEATURES
    assert set(KNOWN_LEAKS[name]) <= set(never)
    assert set(never.values()) <= set(base.REASONS)
    for variant in module.VARIANTS:
        assert not set(variant.candidate_features()) & set(never), variant.name
        assert {variant.label_column, variant.type_column} - {None} <= {
            c for c, r in never.items() if r == "label"
        }
    # a file with every schema column and every never-used column: none of the latter is a feature
    raw = module.synthetic_raw(200, rng)
    for column in never:
        if column not in raw:
            raw[column] = "1"
    path = tmp_path / f"{name}.csv"
    raw.to_csv(path, index=False)
    flows = load_flows(name, path, None)
    assert not {f"feat_{c}" for c in never} & set(flows.columns)
    assert not {c for c in never if never[c] != "label"} & set(open_dataset(name, path).features)


def test_wrong_delimiter_is_named(tmp_path):
    path = write(
        tmp_path, "semi.csv", BOT_HEADER.replace(",", ";") + "\n" + bot_row().replace(",", ";") + "\n"
    )
    with pytest.raises(UserInputError, match=r"semi\.csv.*delimited by ';'"):
        open_dataset("bot_iot", path)


def test_non_numeric_feature_names_file_column_and_line(tmp_path):
    text = BOT_HEADER + "\n" + bot_row() + "\n" + bot_row(sbytes="lots") + "\n"
    with pytest.raises(
        UserInputError, match=r"bad\.csv: column 'sbytes' must be numeric, but line 3 holds 'lots'"
    ):
        load_flows("bot_iot", write(tmp_path, "bad.csv", text), None)


def test_label_outside_0_1_is_rejected(tmp_path):
    text = BOT_HEADER + "\n" + bot_row(attack="7") + "\n"
    with pytest.raises(UserInputError, match=r"label column 'attack' must be 0 or 1, but line 2"):
        load_flows("bot_iot", write(tmp_path, "lab.csv", text), None)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        load_flows("ton_iot", tmp_path / "absent.csv", None)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(UserInputError, match="ton_iot, edge_iiotset, bot_iot"):
        load_flows("kdd99", None, np.random.default_rng(0))


@pytest.mark.parametrize("name", list(datasets.DATASETS))
def test_chunked_reading_equals_one_chunk_and_synthetic_is_marked(tmp_path, rng, name):
    path = write_synthetic_csv(name, tmp_path / f"{name}.csv", 2500, rng, chunksize=1000)
    whole = load_flows(name, path, None, chunksize=10_000)
    pieces = load_flows(name, path, None, chunksize=333)
    pd.testing.assert_frame_equal(whole, pieces)
    assert load_flows(name, path, None, max_rows=700, chunksize=333).shape[0] == 700
    synthetic = load_flows(name, None, np.random.default_rng(5), synthetic_rows=1500)
    assert synthetic.attrs["synthetic"] is True and len(synthetic) == 1500
    again = load_flows(name, None, np.random.default_rng(5), synthetic_rows=1500)
    pd.testing.assert_frame_equal(synthetic, again)
    assert synthetic["label"].any() and (~synthetic["label"]).any()


def test_describe_identifies_the_dataset(data_path):
    info = datasets.describe_file(data_path("datasets", "ton_iot/Train_Test_IoT_Modbus.csv"))
    assert (info["dataset"], info["layout"], info["rows"]) == ("ton_iot", "telemetry:modbus", 31106)
    assert info["labels"] == {"benign": 15000, "attack": 16106}
