"""``qesif results export DIR``: all runs of a results directory as one CSV-R or Parquet table."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("results", help="work with a results directory")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    export_parser = actions.add_parser("export", help="write all runs as one table")
    export_parser.add_argument("dir", help="results directory (from `qesif run --out`)")
    export_parser.add_argument("--format", choices=("csv-r", "parquet"), default="csv-r")
    export_parser.add_argument("--out", help="output file (default: DIR/results.csv or DIR/results.parquet)")
    export_parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from bridge.store import export, open_store

    store = open_store(args.dir)
    out = args.out or f"{args.dir}/results.{'csv' if args.format == 'csv-r' else 'parquet'}"
    path = export(store, out, args.format)
    print(f"wrote {path}", file=sys.stderr)
    return 0
