"""``qesif figures DIR --out FIGDIR [--regimes RDIR]``: the paper's Figures 2-7 and Figure 9 (PNG and PDF)
from a results directory, and Figure 8 from the regime study's."""

from __future__ import annotations

import argparse
import sys

from qesif_core.errors import UserInputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("figures", help="draw Figures 2-7 and 9 from a results directory")
    parser.add_argument("dir", help="results directory (from `qesif run --out`)")
    parser.add_argument("--out", default="figures", help="folder for the figures (default: figures)")
    parser.add_argument(
        "--regimes", help="results directory of scenarios/regimes.yaml: also draw Figure 8 from it"
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from bridge.results.figures import make_figures
    from bridge.results.regimes import regime_figure
    from bridge.store import open_store

    store = open_store(args.dir)
    table = store.load()
    specs = {key: store.spec(key) for key in table["run"].unique()}
    written, skipped = make_figures(table, args.out, specs)
    if args.regimes:
        written += regime_figure(open_store(args.regimes), args.out)
    if not written:
        raise UserInputError(f"{args.dir}: the results hold no data for any figure")
    for name in skipped:
        print(f"{name}: skipped, no runs for it in {args.dir}", file=sys.stderr)
    print(f"wrote {len(written)} files to {args.out}", file=sys.stderr)
    return 0
