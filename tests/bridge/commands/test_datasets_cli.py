import json

from bridge.cli import main


def test_list_names_the_three_datasets(capsys):
    assert main(["datasets", "list", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"ton_iot", "edge_iiotset", "bot_iot"}


def test_describe_a_shipped_sample(capsys, data_path):
    path = data_path("datasets", "edge_iiotset", "MITM_attack.csv")
    assert main(["datasets", "describe", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["dataset"], info["rows"], info["attack_types"]) == ("edge_iiotset", 1229, {"mitm": 1229})


def test_describe_an_unknown_file_exits_2(capsys, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    assert main(["datasets", "describe", str(path)]) == 2
    assert "not a known dataset file" in capsys.readouterr().err


def test_fetch_says_where_to_get_the_files_and_downloads_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["datasets", "fetch", "ton_iot"]) == 0
    out = capsys.readouterr().out
    assert "research.unsw.edu.au/projects/toniot-datasets" in out and "nothing is downloaded" in out
    assert list(tmp_path.iterdir()) == []
    assert main(["datasets", "fetch", "kdd99"]) == 2
