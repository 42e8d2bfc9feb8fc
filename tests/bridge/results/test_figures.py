import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer

from bridge import cli
from bridge.batch import run_batch
from bridge.results.figures import FIGURE_NAMES, SYNTHETIC_HATCH, figure_adr, figure_latency, make_figures
from bridge.scenario import expand, parse_scenario
from bridge.store import ResultStore

PAPER_SCHEMES = ["QESIF", "QuIDS", "QRHE", "HyQuSec", "QLSN"]
ABLATION_SCHEMES = ["QESIF", "QESIF-QKD", "QESIF-QIDS", "QESIF-hybrid"]


def _store(path, schemes, fake_run_once):
    runs = expand(
        parse_scenario({"name": "t", "schemes": schemes, "rounds": 6, "datasets": ["ton_iot", "bot_iot"]})
    )
    store = ResultStore(path)
    run_batch(runs, store, run_function=fake_run_once, progress=False)
    return store


def test_all_six_figures_are_written_as_png_and_pdf(tmp_path, fake_run_once):
    store = _store(tmp_path / "res", PAPER_SCHEMES + ABLATION_SCHEMES[1:], fake_run_once)
    assert cli.main(["figures", str(store.root), "--out", str(tmp_path / "fig")]) == 0
    for name in FIGURE_NAMES:
        for suffix in (".png", ".pdf"):
            path = tmp_path / "fig" / f"{name}{suffix}"
            assert path.stat().st_size > 10_000, path
    assert (tmp_path / "fig" / "fig2_qber.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_7_is_skipped_without_ablation_runs(tmp_path, fake_run_once):
    store = _store(tmp_path / "res", PAPER_SCHEMES, fake_run_once)
    written, skipped = make_figures(store.load(), tmp_path / "fig")
    assert skipped == ["fig7_ablation"]
    assert len(written) == 10


def test_same_results_give_identical_png_bytes(tmp_path, fake_run_once):
    store = _store(tmp_path / "res", ["QESIF", "QRHE"], fake_run_once)
    table = store.load()
    make_figures(table, tmp_path / "a")
    make_figures(table, tmp_path / "b")
    for name in ("fig4_latency.png", "fig4_latency.pdf"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_figure_3_shows_intervals_n_and_hatches_synthetic_rows(tmp_path, fake_run_once):
    def run_once(spec, *, bridge="inprocess"):
        table = fake_run_once(spec)
        real = "false" if spec["dataset"]["name"] == "bot_iot" else "true"
        table.loc[table["attrname"] == "synthetic", "attrvalue"] = real
        return table

    runs = expand(parse_scenario({"name": "t", "schemes": ["QESIF", "QRHE"], "rounds": 3,
                                  "datasets": ["ton_iot", "bot_iot"]}))  # fmt: skip
    store = ResultStore(tmp_path / "res")
    run_batch(runs, store, run_function=run_once, progress=False)
    fig = figure_adr(store.load())
    ax_adr, ax_fpr = fig.axes[:2]
    hatched = [p.get_hatch() for p in ax_adr.patches]
    assert hatched.count(SYNTHETIC_HATCH) == 2 and hatched.count(None) + hatched.count("") == 2
    assert "synthetic rows" in [t.get_text() for t in ax_fpr.get_legend().get_texts()]
    ticks = [t.get_text() for t in ax_adr.get_xticklabels()]
    assert ticks == ["TON_IoT\nSYNTHETIC rows\nn = 400 / 100", "Bot-IoT\nreal rows\nn = 400 / 100"]
    assert len(ax_adr.containers) >= 4  # error bars drawn for every bar


def test_figure_4_whiskers_span_the_rounds_10th_to_90th_percentile_and_never_go_below_zero(
    tmp_path, fake_run_once
):
    """A skewed latency (most rounds fast, one round of retries) must not get a whisker below 0 ms, as
    mean - s.d. would give: the whiskers are the rounds' percentiles, the caption says so and gives n."""
    skewed = np.array([10.0] * 9 + [5000.0])

    def run_once(spec, *, bridge="inprocess"):
        table = fake_run_once(spec)
        latency = (table["type"] == "vector") & (table["name"] == "latency_ms")
        table.loc[latency, "vecvalue"] = pd.Series([skewed] * int(latency.sum()), index=table.index[latency])
        return table

    runs = expand(parse_scenario({"name": "t", "schemes": ["QESIF"], "rounds": 10, "datasets": ["ton_iot"]}))
    store = ResultStore(tmp_path / "res")
    run_batch(runs, store, run_function=run_once, progress=False)
    fig = figure_latency(store.load())
    ax = fig.axes[0]
    whiskers = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert whiskers
    lows, highs = [], []
    for container in whiskers:
        for segment in container.lines[2][0].get_segments():
            lows.append(segment[:, 1].min())
            highs.append(segment[:, 1].max())
    assert min(lows) == pytest.approx(np.percentile(skewed, 10))
    assert max(highs) == pytest.approx(np.percentile(skewed, 90))
    assert [round(p.get_height(), 6) for p in ax.patches] == [round(skewed.mean(), 6)] * len(ax.patches)
    caption = fig._suptitle.get_text()
    assert "10th-90th percentile" in caption and "n = 10 rounds" in caption
