import re

import numpy as np

from bridge import cli
from bridge.batch import run_batch
from bridge.results import tidy
from bridge.results.report import comparison_rows, dataset_rows, load_reference, render
from bridge.scenario import expand, parse_scenario
from bridge.store import ResultStore


def _store(path, fake_run_once):
    schemes = ["QESIF", "QuIDS", "QRHE", "HyQuSec", "QLSN", "QESIF-QKD", "QESIF-QIDS", "QESIF-hybrid"]
    runs = expand(parse_scenario({"name": "t", "schemes": schemes, "rounds": 5, "datasets": ["ton_iot"]}))
    store = ResultStore(path)
    run_batch(runs, store, run_function=fake_run_once, progress=False)
    return store


def test_report_is_one_self_contained_page_with_figures_and_comparison(tmp_path, fake_run_once):
    store = _store(tmp_path / "res", fake_run_once)
    out = tmp_path / "report.html"
    assert cli.main(["report", str(store.root), "--out", str(out)]) == 0
    page = out.read_text()
    assert page.count('src="data:image/png;base64,') == 7  # Figures 2-7 and 9
    assert not re.search(r'src="(?!data:)', page)
    assert "<th>paper</th>" in page and "Sec. 4.3, Fig. 5" in page


def test_our_values_are_computed_from_the_results_and_large_deviations_get_notes(tmp_path, fake_run_once):
    store = _store(tmp_path / "res", fake_run_once)
    table = store.load()
    specs = {k: store.spec(k) for k in table["run"].unique()}
    _, reference = load_reference()
    rows = comparison_rows(table, reference, specs)
    latency = next(
        r
        for r in rows
        if r["entry"]["metric"] == "latency_ms"
        and r["entry"]["scheme"] == "QESIF"
        and r["entry"].get("channel") == "noisy"
        and not r["entry"].get("ablation")
    )
    attrs = tidy.run_attributes(table)
    runs = attrs.index[(attrs["scheme"] == "QESIF") & (attrs["channel"] == "noisy")]
    samples = tidy.vector_rounds(table[table["run"].isin(runs)], "network/latency_ms")["value"]
    assert latency["ours"] == np.mean(samples)
    assert latency["n"] == 5
    median = tidy.scalars(table, ["network/latency_median_ms"]).loc[runs, "network/latency_median_ms"].mean()
    assert f"median latency of a delivered message {median:.1f} ms (mean over runs)" in latency["notes"]
    throughput = [r for r in rows if r["entry"]["metric"] == "throughput_kbps" and r["large"]]
    assert all(r["notes"] for r in throughput)
    assert all(any("dropped at full device queues" in n for n in r["notes"]) for r in throughput)
    qber = next(r for r in rows if r["entry"]["metric"] == "qber" and r["entry"]["channel"] == "eavesdropped")
    assert qber["large"]
    assert any("intercept-resend on a fraction 0.56" in n for n in qber["notes"])


def test_every_reference_value_quotes_its_source():
    paper, reference = load_reference()
    assert "Smart Cities 2025" in paper
    assert len(reference) > 50
    for entry in reference:
        assert entry["source"].startswith(("Sec.", "Abstract"))
        assert sum(k in entry for k in ("value", "range", "at_least")) == 1


def test_failed_runs_of_the_scenario_are_listed_in_the_report(tmp_path, fake_run_once):
    def fails_for_qlsn(spec, *, bridge):
        if spec["scheme"] == "QLSN":
            raise RuntimeError("simulated crash")
        return fake_run_once(spec)

    runs = expand(
        parse_scenario({"name": "t", "schemes": ["QESIF", "QLSN"], "rounds": 3, "datasets": ["ton_iot"]})
    )
    store = ResultStore(tmp_path / "res")
    store.save_manifest("t", [r.key for r in runs])
    run_batch(runs, store, run_function=fails_for_qlsn, progress=False)
    assert cli.main(["report", str(store.root), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "3 runs failed and are missing" in page
    assert "RuntimeError: simulated crash" in page


def _mixed_store(path, fake_run_once, data_file):
    """TON_IoT runs on generated rows, Bot-IoT runs on a (stand-in) real file."""

    def run_once(spec, *, bridge="inprocess"):
        table = fake_run_once(spec)
        real = spec["dataset"]["path"] is not None
        table.loc[table["attrname"] == "synthetic", "attrvalue"] = "false" if real else "true"
        return table

    scenario = {
        "name": "t",
        "schemes": ["QESIF", "QuIDS"],
        "rounds": 4,
        "datasets": ["ton_iot", {"name": "bot_iot", "path": str(data_file)}],
    }
    store = ResultStore(path)
    run_batch(expand(parse_scenario(scenario)), store, run_function=run_once, progress=False)
    return store


def test_synthetic_runs_get_a_banner_and_a_note_in_every_dependent_row(tmp_path, fake_run_once, data_path):
    store = _mixed_store(tmp_path / "res", fake_run_once, data_path("datasets", "bot_iot", "data_t.csv"))
    table = store.load()
    specs = {k: store.spec(k) for k in table["run"].unique()}
    _, reference = load_reference()
    rows = comparison_rows(table, reference, specs)
    for row in rows:
        entry, dataset = row["entry"], row["entry"].get("dataset")
        dependent = entry["metric"] in ("adr_percent", "latency_ms", "throughput_kbps", "energy_mJ")
        has_runs = row["n"] > 0
        marked = any(n.startswith("SYNTHETIC: ") for n in row["notes"])
        # every row whose runs include the generated TON_IoT rows says so, large deviation or not
        assert marked == (dependent and has_runs and dataset != "bot_iot"), entry
    assert any(r["synthetic"] and not r["large"] for r in rows)
    bot = next(
        r for r in rows if r["entry"]["metric"] == "adr_percent" and r["entry"].get("dataset") == "bot_iot"
    )
    assert not bot["synthetic"] and bot["ci95"]["attack"] == (400, 400)
    assert bot["ci95"]["low"] <= bot["ours"] / 100 <= bot["ci95"]["high"]
    out = tmp_path / "r.html"
    assert cli.main(["report", str(store.root), "--out", str(out)]) == 0
    page = out.read_text()
    assert "<strong>Generated rows:</strong>" in page and "(ton_iot) used the dataset" in page
    assert "95% CI" in page and "distinct attack records per run" in page
    assert "real (data_t.csv)" in page and "<strong>SYNTHETIC</strong> (schema-compatible generator)" in page
    assert "state (data_t.csv)" in page  # a used suspect feature of the file, from the audit


def test_no_banner_when_every_run_used_real_rows(tmp_path, fake_run_once, data_path):
    store = _mixed_store(tmp_path / "res", fake_run_once, data_path("datasets", "bot_iot", "data_t.csv"))
    table = store.load()
    attrs = tidy.run_attributes(table)
    real = table[table["run"].isin(attrs.index[attrs["dataset"] == "bot_iot"])]
    specs = {k: store.spec(k) for k in real["run"].unique()}
    _, reference = load_reference()
    page = render(real, specs, [], "paper", reference)
    assert "Generated rows" not in page and "SYNTHETIC" not in page


def test_dataset_rows_name_a_missing_file_instead_of_auditing_it(tmp_path, fake_run_once, data_path):
    source = data_path("datasets", "bot_iot", "data_t.csv")
    copy = tmp_path / "copy.csv"
    copy.write_bytes(source.read_bytes())
    store = _mixed_store(tmp_path / "res", fake_run_once, copy)
    copy.unlink()
    table = store.load()
    specs = {k: store.spec(k) for k in table["run"].unique()}
    rows = {r["dataset"]: r for r in dataset_rows(table, specs)}
    assert rows["bot_iot"]["suspects"] == ["(copy.csv not found: not audited)"]
    assert rows["ton_iot"]["synthetic"] and rows["ton_iot"]["records"]["benign"] == (100, 100)
