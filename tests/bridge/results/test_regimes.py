"""Figure 8 and the report's regime section, from a stand-in study whose figures follow a known rule."""

import numpy as np
import pandas as pd

from bridge import cli
from bridge.batch import run_batch
from bridge.results.regimes import in_regime, regime_findings, regime_points
from bridge.results.report import load_reference
from bridge.scenario import expand, parse_scenario
from bridge.store import ResultStore


def _fake_study_run(spec, *, bridge="inprocess"):
    """802.15.4 saturates above 2 messages/s per device (acknowledged) or 5 (not); Wi-Fi never does."""
    net = spec["network"]
    load = 1 / net["mean_interarrival_s"]
    limit = {("802.15.4", True): 2.0, ("802.15.4", False): 5.0}.get((net["access"], net["mqtt_qos"] == 1))
    sent = 100.0 * load * spec["rounds"]
    delivery = 1.0 if limit is None or load <= limit else limit / load
    latency = 6.0 if limit is None or load <= limit else 400.0
    run = f"x-{net['access']}-{net['mqtt_qos']}-{load}"
    rows = [{"run": run, "type": "runattr", "attrname": "synthetic", "attrvalue": "true"}]
    for name, value in (
        ("messages_sent", sent),
        ("messages_delivered", sent * delivery),
        ("latency_median_ms", latency),
        ("goodput_kbps", sent * delivery * 20 * 8 / 1e3 / spec["rounds"]),
    ):
        rows.append({"run": run, "type": "scalar", "module": "network", "name": name, "value": value})
    table = pd.DataFrame(rows)
    for column in ("module", "name", "attrname", "attrvalue", "value", "vectime", "vecvalue"):
        if column not in table:
            table[column] = None
    return table[["run", "type", "module", "name", "attrname", "attrvalue", "value", "vectime", "vecvalue"]]


def _study(path):
    runs = expand(
        parse_scenario(
            {
                "name": "regimes",
                "rounds": 2,
                "channels": ["clean"],
                "datasets": ["ton_iot"],
                "sweeps": {
                    "network.mean_interarrival_s": [1.0, 0.5, 0.1],
                    "network.access": ["802.15.4", "wifi"],
                    "network.mqtt_qos+network.coap_confirmable": [[1, True], [0, False]],
                },
            }
        )
    )
    store = ResultStore(path)
    run_batch(runs, store, run_function=_fake_study_run, progress=False)
    return store


def test_points_and_findings_follow_the_runs(tmp_path):
    store = _study(tmp_path / "regimes")
    table = store.load()
    points = regime_points(table, {key: store.spec(key) for key in table["run"].unique()})
    assert len(points) == 12 and (points["runs"] == 1).all()
    table2 = points[np.isclose(points["interarrival_s"], 0.1)].set_index(["access", "acknowledged"])
    assert not in_regime(table2.loc[("802.15.4", True)]) and in_regime(table2.loc[("wifi", True)])
    assert table2.loc[("802.15.4", True), "delivery"] == 0.2
    _, reference = load_reference()
    findings = regime_findings(points, reference)
    assert any("default (802.15.4, acknowledged) delivers 20.0%" in f and "outside" in f for f in findings)
    assert any(
        f.startswith("The setting that puts the default out") and "802.15.4 access" in f for f in findings
    )
    assert "802.15.4, acknowledged: in the paper's regime up to 2 messages/s per device" in "\n".join(
        findings
    )
    assert "Wi-Fi, unacknowledged: every load of the study is in the paper's regime" in "\n".join(findings)


def test_make_run_commands_write_figure_8_and_the_regime_section(tmp_path, fake_run_once):
    study = _study(tmp_path / "regimes")
    main = ResultStore(tmp_path / "res")
    run_batch(
        expand(parse_scenario({"name": "t", "rounds": 3})), main, run_function=fake_run_once, progress=False
    )
    figures = tmp_path / "fig"
    assert cli.main(["figures", str(main.root), "--out", str(figures), "--regimes", str(study.root)]) == 0
    assert (figures / "fig8_regimes.png").stat().st_size > 10_000 and (figures / "fig8_regimes.pdf").exists()
    report = tmp_path / "report.html"
    assert cli.main(["report", str(main.root), "--out", str(report), "--regimes", str(study.root)]) == 0
    page = report.read_text()
    assert "Regimes of the network" in page and "fig8_regimes" in page
    assert "Generated data: 12 of 12 runs" in page
