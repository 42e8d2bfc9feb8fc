"""``qesif testbed run SCENARIO``: real MQTT over TLS-PSK with keys from the ETSI GS QKD 014 KME and a
Q-IDS-driven classical fallback (Mosquitto on 127.0.0.1, paho-mqtt clients), and CoAP over OSCORE; prints
the measured figures, writes the CSV-R table with ``--out``, adds the run to a results store with
``--store``. ``qesif testbed compare SCENARIO`` prints the measured figures beside the built-in backend's
prediction for the matching simulated scenario."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from qesif_core.errors import UserInputError

if TYPE_CHECKING:
    from bridge.services.testbed import TestbedConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("testbed", help="real MQTT/TLS-PSK testbed fed by the QKD 014 KME")
    sub = parser.add_subparsers(dest="testbed_command", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="run one testbed scenario (YAML with a `testbed:` mapping)")
    run.add_argument(
        "scenario", type=Path, help="YAML file; its `testbed:` mapping holds the TestbedConfig fields"
    )
    run.add_argument("--out", type=Path, help="CSV file for the CSV-R result rows")
    run.add_argument(
        "--store", type=Path, metavar="DIR", help="results directory (as `qesif run --out`) to add the run to"
    )
    run.set_defaults(func=run_scenario)
    compare = sub.add_parser(
        "compare", help="run a testbed scenario and the built-in backend on the matching simulated scenario"
    )
    compare.add_argument("scenario", type=Path, help="YAML file with a `testbed:` mapping (no eavesdrop)")
    compare.add_argument(
        "--runs", type=int, default=3, help="testbed and simulated runs, seeds seed.. (default 3)"
    )
    compare.add_argument("--out", type=Path, help="CSV file for the comparison table")
    compare.set_defaults(func=compare_scenario)


def load_scenario(path: Path) -> TestbedConfig:
    """The TestbedConfig of a scenario file (``testbed:`` mapping, or the whole file when it has none)."""
    import yaml

    from bridge.services.testbed import TestbedConfig

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise UserInputError(f"scenario {path}: cannot read ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise UserInputError(f"scenario {path}: not valid YAML ({error})") from None
    if isinstance(data, dict) and "testbed" in data:
        data = data["testbed"]
    if data is None:
        data = {}
    return TestbedConfig.from_mapping(data, str(path))


def run_scenario(args: argparse.Namespace) -> int:
    from bridge.results.scave import write_csvr
    from bridge.services.testbed import TestbedUnavailable, run_testbed, store_run

    config = load_scenario(args.scenario)
    try:
        table = run_testbed(config)
    except TestbedUnavailable as error:
        raise UserInputError(str(error)) from None
    for row in table[table["type"] == "scalar"].itertuples():
        print(f"{row.module}/{row.name}: {row.value:.6g}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(write_csvr(table))
        print(f"wrote {args.out}")
    if args.store is not None:
        print(f"stored run {store_run(table, config, args.store)} in {args.store}")
    return 0


def compare_scenario(args: argparse.Namespace) -> int:
    from bridge.services.testbed import TestbedUnavailable
    from bridge.services.testbed_compare import compare, format_comparison

    config = load_scenario(args.scenario)
    try:
        table = compare(config, runs=args.runs)
    except TestbedUnavailable as error:
        raise UserInputError(str(error)) from None
    print(format_comparison(table))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
        print(f"wrote {args.out}")
    return 0
