"""``qesif report DIR --out report.html [--regimes RDIR]``: one self-contained page with the figures and the
paper comparison, and the regime study's section."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="HTML report: figures and our values beside the paper's")
    parser.add_argument("dir", help="results directory (from `qesif run --out`)")
    parser.add_argument("--out", default="report.html", help="HTML file to write (default: report.html)")
    parser.add_argument(
        "--reference",
        help="YAML of the paper's reported values (default: scenarios/paper_reference.yaml)",
    )
    parser.add_argument(
        "--regimes", help="results directory of scenarios/regimes.yaml: adds the regime section and Figure 8"
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from bridge.results.figures import make_figures
    from bridge.results.regimes import load_study, regime_figure, regime_section_html
    from bridge.results.report import DEFAULT_REFERENCE, load_reference, render
    from bridge.store import open_store

    store = open_store(args.dir)
    table = store.load()
    reference_path = args.reference or DEFAULT_REFERENCE
    paper, reference = load_reference(reference_path)
    specs = {key: store.spec(key) for key in table["run"].unique()}
    with tempfile.TemporaryDirectory() as tmp:
        written, _ = make_figures(table, tmp, specs)
        pngs = [p for p in written if p.suffix == ".png"]
        wanted = set(store.manifest_keys() or [])
        failures = [f for f in store.failures() if not wanted or f.get("key") in wanted]
        sections = []
        if args.regimes:
            regimes = open_store(args.regimes)
            points, synthetic = load_study(regimes)
            figure = [p for p in regime_figure(regimes, tmp, reference_path) if p.suffix == ".png"]
            sections.append(regime_section_html(points, reference, synthetic, figure))
        page = render(table, specs, pngs, paper, reference, failures, sections=sections)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0
