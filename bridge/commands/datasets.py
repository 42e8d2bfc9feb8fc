"""``qesif datasets list|describe PATH|fetch NAME|sample``: the paper's datasets, what a file is, where to get
them, and a stratified, de-duplicated sample of a full download (``bridge.datasets.sample``).

None of the three datasets has an official direct download with a published checksum (TON_IoT and Bot-IoT
are served from UNSW's research pages through a cloud-share folder, Edge-IIoTset from Kaggle and IEEE
DataPort behind an account), so ``fetch`` prints where and how to get the files and how to check them;
it never downloads from unofficial mirrors.
"""

from __future__ import annotations

import argparse
import json

from bridge.commands import add_dataset_option

#: Official sources and what to download from them.
SOURCES: dict[str, dict[str, str]] = {
    "ton_iot": {
        "page": "https://research.unsw.edu.au/projects/toniot-datasets",
        "files": "Train_Test_datasets/Train_Test_Network_dataset/train_test_network.csv (211,043 rows); "
        "Train_Test_datasets/Train_Test_IoT_dataset/Train_Test_IoT_<Device>.csv (telemetry)",
        "how": "follow the page's dataset link (a UNSW cloud-share folder; no direct file URL or checksum is "
        "published); free for academic research, cite Alsaedi et al. 2020 and Moustafa 2021",
    },
    "edge_iiotset": {
        "page": "https://www.kaggle.com/datasets/mohamedamineferrag/edgeiiotset-cyber-security-dataset-of-iot-iiot",
        "files": "Edge-IIoTset dataset/Selected dataset for ML and DL/DNN-EdgeIIoT-dataset.csv "
        "(2,219,201 rows), "
        "or the raw per-attack CSVs (Attack traffic/*.csv, Normal traffic/*/*.csv)",
        "how": "download with a Kaggle account (web page or `kaggle datasets download "
        "mohamedamineferrag/edgeiiotset-cyber-security-dataset-of-iot-iiot`), or from IEEE DataPort "
        "(doi:10.21227/mbc1-1h68); cite Ferrag et al. 2022",
    },
    "bot_iot": {
        "page": "https://research.unsw.edu.au/projects/bot-iot-dataset",
        "files": "the 5% extract (UNSW_2018_IoT_Botnet_Full5pc_{1..4}.csv, 3,668,522 rows) or the 10-best "
        "features train/test files; the full release is 69 GB of CSV",
        "how": "follow the page's dataset link (a UNSW cloud-share folder; no direct file URL or checksum is "
        "published); free for academic research, cite Koroniotis et al. 2019",
    },
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("datasets", help="list, describe or fetch the paper's datasets")
    sub = parser.add_subparsers(dest="datasets_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="the supported datasets")
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.set_defaults(func=cmd_list)
    describe = sub.add_parser("describe", help="which dataset a file is, its rows, labels and attack types")
    describe.add_argument("path", help="a CSV file of one of the datasets")
    describe.add_argument("--json", action="store_true", help="print one JSON object")
    describe.set_defaults(func=cmd_describe)
    fetch = sub.add_parser("fetch", help="where and how to get a dataset's files")
    fetch.add_argument("name", help=f"one of {', '.join(SOURCES)}")
    fetch.set_defaults(func=cmd_fetch)
    sample = sub.add_parser(
        "sample", help="stream a full dataset file into a stratified, de-duplicated sample (bounded memory)"
    )
    add_dataset_option(sample)
    sample.add_argument("--path", required=True, help="the full dataset file (CSV)")
    sample.add_argument("--per-class", type=int, required=True, help="distinct rows kept per attack type")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", required=True, help="CSV file to write (with a # provenance header)")
    sample.add_argument("--chunksize", type=int, default=100_000, help="rows read at a time")
    sample.set_defaults(func=cmd_sample)


def cmd_list(args: argparse.Namespace) -> int:
    from bridge.datasets import DATASETS

    rows = {
        name: {"title": m.TITLE, "citation": m.CITATION, "source": SOURCES[name]["page"], "synthetic": True}
        for name, m in DATASETS.items()
    }
    if args.json:
        print(json.dumps(rows))
        return 0
    for name, row in rows.items():
        print(f"{name:13s} {row['title']}  [{row['citation']}]")
        print(f"{'':13s} source: {row['source']}; schema-compatible synthetic generator: yes")
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from bridge.datasets import describe_file

    info = describe_file(args.path)
    if args.json:
        print(json.dumps(info))
        return 0
    print(
        f"{info['path']}: {info['dataset']} ({info['layout']}), {info['rows']} rows, "
        f"{info['columns']} columns"
    )
    print(f"  labels: {info['labels']['benign']} benign, {info['labels']['attack']} attack")
    print("  attack types: " + ", ".join(f"{k} {v}" for k, v in info["attack_types"].items()))
    print(f"  devices: {info['devices']}; features used: {len(info['features'])}")
    if info["schema_columns_absent"]:
        print("  schema columns absent (NaN in the flow table): " + ", ".join(info["schema_columns_absent"]))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from bridge.datasets.sample import sample_file

    report = sample_file(args.dataset, args.path, args.out, args.per_class, args.seed, args.chunksize)
    kept = ", ".join(f"{kind} {count:,}" for kind, count in report.kept.items())
    print(
        f"{args.out}: {sum(report.kept.values()):,} distinct rows of {report.rows_read:,} read "
        f"({report.chunks} chunks, at most {report.max_rows_held:,} rows held); per class: {kept}"
    )
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from bridge.datasets import dataset_module

    module = dataset_module(args.name)
    source = SOURCES[args.name]
    print(f"{args.name}: {module.TITLE}")
    print("  no official direct download with a published checksum exists, so nothing is downloaded.")
    print(f"  where: {source['page']}")
    print(f"  files: {source['files']}")
    print(f"  how:   {source['how']}")
    print(
        "  then:  `qesif datasets describe FILE` checks a file, and "
        f"`qesif ids evaluate --dataset {args.name} "
        "--path FILE` (or a scenario's dataset.path) uses it; `qesif datasets sample` cuts a full file "
        "down to a stratified, de-duplicated sample"
    )
    return 0
