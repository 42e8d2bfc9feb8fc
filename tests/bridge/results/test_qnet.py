"""Network runs in the results: kept out of the paper's figures and table, drawn in their own figures, and
reported in their own section with numbers taken from the run."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bridge.cosim.orchestrator import run_once
from bridge.results import qnet
from bridge.results.figures import make_figures
from bridge.results.report import render
from bridge.scenario import expand, parse_scenario

SMALL_NETWORK = Path(__file__).resolve().parents[1] / "qnet" / "data" / "small_network.yaml"


@pytest.fixture(scope="module")
def network_table() -> pd.DataFrame:
    data = yaml.safe_load(SMALL_NETWORK.read_text(encoding="utf-8"))
    (run,) = expand(parse_scenario(data, "t.yaml"), "t.yaml")
    table = run_once(run.spec)
    table["run"] = run.key
    return table


def test_split_separates_network_runs(network_table):
    other = pd.DataFrame(
        [{"run": "x", "type": "runattr", "attrname": "scheme", "attrvalue": "QESIF"}],
        columns=network_table.columns,
    )
    rest, network = qnet.split(pd.concat([other, network_table], ignore_index=True))
    assert set(rest["run"]) == {"x"} and set(network["run"]) == set(network_table["run"])


def test_network_figures_are_written_and_paper_figures_skipped(network_table, tmp_path):
    written, skipped = make_figures(network_table, tmp_path)
    names = sorted({p.stem for p in written})
    assert names == sorted(qnet.FIGURE_NAMES)
    assert all(p.stat().st_size > 1000 for p in written)
    assert "fig2_qber" in skipped


def test_report_section_quotes_the_run(network_table, tmp_path):
    page = render(network_table, {}, [], "paper", [], [])
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    assert "City QKD network with trusted relays" in page
    scalars = qnet._scalars(network_table, network_table["run"].iloc[0])
    delivered = int(scalars["qnet.adaptive/keys_delivered"])
    assert f"/ {delivered:,}" in text
    assert "gw1->cc" in text and "r1--cc" in text
    assert "Comparison with the paper" in page  # the paper's table is still there (empty)
