"""``qesif ids evaluate``: the cross-layer Q-IDS on a dataset file (or the synthetic generator);
``qesif ids audit``: how well each column alone separates the classes (leak check, ``bridge.datasets.audit``);
``qesif ids roc``: the ROC of Algorithm 2 on clean, noisy and eavesdropped QKD traces."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from typing import TYPE_CHECKING

from bridge.commands import LazyChoices, add_dataset_option
from qesif_core.errors import UserInputError

if TYPE_CHECKING:
    from qesif_core.qids.fusion import DetectorSpec

CHANNELS = ("clean", "noisy", "eavesdropped")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ids", help="evaluate the cross-layer Q-IDS; ROC of Algorithm 2")
    sub = parser.add_subparsers(dest="ids_command", metavar="ACTION", required=True)
    ev = sub.add_parser("evaluate", help="train on a split of a dataset file, test on the rest")
    add_dataset_option(ev)
    ev.add_argument("--path", help="dataset file (none: the schema-compatible synthetic generator)")
    ev.add_argument("--train", dest="train_path", help="training file (with --test)")
    ev.add_argument("--test", dest="test_path", help="test file (with --train)")
    ev.add_argument("--scheme", help="take the detector of this security scheme (qesif schemes list)")
    ev.add_argument(
        "--classifier",
        choices=LazyChoices("qesif_core.qids.flows", "FLOW_CLASSIFIERS"),
        metavar="NAME",
        help="flow classifier: %(choices)s (default random_forest)",
    )
    ev.add_argument(
        "--fusion",
        choices=LazyChoices("qesif_core.qids.fusion", "FUSION_RULES"),
        metavar="RULE",
        help="fusion rule: %(choices)s (default none, or the scheme's)",
    )
    ev.add_argument(
        "--channel",
        choices=CHANNELS,
        help="QKD channel of the gateway links for the quantum score (default: clean if the fusion uses it)",
    )
    ev.add_argument(
        "--calibration",
        choices=LazyChoices("qesif_core.qids.anomaly", "CALIBRATION_MODES"),
        metavar="MODE",
        default="link-baseline",
        help="benign-noise model of Algorithm 2: each link's own baseline (link-baseline, the default) or "
        "noise-free trials (%(choices)s)",
    )
    ev.add_argument("--gateways", type=int, default=10, help="gateway links (default 10)")
    ev.add_argument("--blocks", type=int, default=100, help="QKD blocks per link over the test rows")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--train-fraction", type=float, default=0.7)
    ev.add_argument("--max-train-rows", type=int, default=100_000)
    ev.add_argument("--chunksize", type=int, default=100_000)
    ev.add_argument("--synthetic-rows", type=int, default=20_000)
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(func=cmd_evaluate)
    au = sub.add_parser("audit", help="balanced accuracy of each column alone: suspect (leaking) features")
    add_dataset_option(au)
    au.add_argument("--path", help="dataset file (none: the dataset's synthetic generator)")
    au.add_argument("--seed", type=int, default=0)
    au.add_argument("--max-rows", type=int, default=200_000, help="rows sampled from a larger file")
    au.add_argument("--synthetic-rows", type=int, default=5_000)
    au.add_argument("--json", action="store_true", help="print one JSON object")
    au.set_defaults(func=cmd_audit)
    roc = sub.add_parser("roc", help="ROC of Algorithm 2 (clean/noisy benign vs eavesdropped traces)")
    roc.add_argument("--links", type=int, default=4)
    roc.add_argument("--blocks", type=int, default=100)
    roc.add_argument("--pulses", type=int, default=1_000_000, help="pulses per QKD block")
    roc.add_argument("--seed", type=int, default=0)
    roc.add_argument(
        "--eve-fraction",
        type=float,
        help="fraction of pulses intercepted (default: the eavesdropped preset's)",
    )
    roc.add_argument("--json", action="store_true", help="print one JSON object")
    roc.set_defaults(func=cmd_roc)


def detector_spec(args: argparse.Namespace) -> DetectorSpec:
    """The scheme's detector when --scheme is given, with --classifier/--fusion overriding its parts."""
    from bridge.datasets.evaluate import DEFAULT_SPEC
    from qesif_core.qids.fusion import DetectorSpec

    spec = DEFAULT_SPEC
    if args.scheme:
        from qesif_core.schemes import get_scheme

        spec = get_scheme(args.scheme).detector
    classifier = args.classifier or spec.classifier
    fusion = args.fusion or spec.fusion
    return DetectorSpec(classifier, fusion != "none", fusion)


def _jsonable(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def cmd_evaluate(args: argparse.Namespace) -> int:
    from bridge.datasets.evaluate import EvaluationSetup, QuantumSetting, evaluate

    spec = detector_spec(args)
    channel = args.channel or ("clean" if spec.uses_quantum_score else None)
    quantum = None
    if channel is not None:
        if args.gateways < 1 or args.blocks < 1:
            raise UserInputError(f"--gateways and --blocks must be >= 1, got {args.gateways}, {args.blocks}")
        quantum = QuantumSetting(
            channel, n_gateways=args.gateways, n_blocks=args.blocks, calibration=args.calibration
        )
    result = evaluate(
        EvaluationSetup(
            dataset=args.dataset,
            path=args.path,
            train_path=args.train_path,
            test_path=args.test_path,
            seed=args.seed,
            train_fraction=args.train_fraction,
            max_train_rows=args.max_train_rows,
            chunksize=args.chunksize,
            synthetic_rows=args.synthetic_rows,
            spec=spec,
            quantum=quantum,
        )
    )
    result["scheme"] = args.scheme
    result = _jsonable(result)
    if args.json:
        print(json.dumps(result))
        return 0
    source = "SYNTHETIC rows" if result["synthetic"] else (result["path"] or result["test_path"])
    print(f"{args.dataset} ({source}): {spec.classifier}, fusion {spec.fusion}, channel {channel}")
    print(
        f"  split: {result['split']['kind']}, n_train {result['n_train']} rows, n_test "
        f"{result['n_test']} distinct records ({result['n_attack_test']} attack, "
        f"{result['n_benign_test']} benign) of {result['n_test_rows']} test rows"
    )
    if result["n_test_rows_in_training"]:
        print(f"  left out: {result['n_test_rows_in_training']} test rows whose features are in training")
    print(f"  features: {', '.join(result['features'])}")
    denominators = {"adr": "attack", "fpr": "benign", "precision": "flagged", "f1": "attack + flagged"}
    for key, of in denominators.items():
        value, (low, high) = result[key], result[f"{key}_ci95"]
        if value is None:
            print(f"  {key:9s} n/a")
        else:
            print(f"  {key:9s} {value:.4f}  95% CI [{low:.4f}, {high:.4f}]  (n: {of} records)")
    for kind, recall in result["per_class_recall"].items():
        support = result["per_class_support"][kind]
        print(f"  recall {kind:22s} {'n/a' if recall is None else f'{recall:.4f}'} ({support} records)")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from bridge.datasets.audit import audit, used_suspects

    result = audit(args.dataset, args.path, args.seed, args.max_rows, args.synthetic_rows)
    if args.json:
        print(json.dumps(result))
        return 0
    source = "SYNTHETIC rows of the generator" if result["synthetic"] else result["path"]
    print(
        f"{args.dataset} ({source}): {result['rows']} rows, {result['attack_rows']} attack; balanced "
        f"accuracy of each column alone (suspect >= {result['suspect_accuracy']})"
    )
    for feature in result["features"]:
        role = "feature" if feature["used"] else f"not used ({feature['reason'] or 'not a candidate'})"
        flag = "  SUSPECT" if feature["suspect"] else ""
        print(f"  {feature['balanced_accuracy']:.4f}  {feature['name']:28s} {role}{flag}")
    suspects = used_suspects(result)
    print(f"  used suspect features: {', '.join(suspects) if suspects else 'none'}")
    return 0


def channel_roc(links: int, blocks: int, pulses: int, seed: int, eve_fraction: float | None = None) -> dict:
    """ROC of Algorithm 2: benign = clean or noisy traces, attack = eavesdropped traces (built-in engine)."""
    import numpy as np

    from qesif_core.qids import anomaly
    from qesif_core.qkd.channel import preset
    from qesif_core.qkd.trace import link_trace

    if links < 1 or blocks < 2:
        raise UserInputError(f"--links must be >= 1 and --blocks >= 2, got {links}, {blocks}")
    if eve_fraction is not None and not 0.0 <= eve_fraction <= 1.0:
        raise UserInputError(f"--eve-fraction must be in [0, 1], got {eve_fraction!r}")
    rng = np.random.default_rng(seed)
    streams = iter(rng.spawn(1 + 3 * links))
    calibration = anomaly.calibrate([link_trace(preset("clean"), blocks, pulses, next(streams))])
    channels = {name: preset(name) for name in CHANNELS}
    if eve_fraction is not None:
        channels["eavesdropped"] = dataclasses.replace(channels["eavesdropped"], eve_fraction=eve_fraction)
    traces = {
        name: [link_trace(params, blocks, pulses, next(streams)) for _ in range(links)]
        for name, params in channels.items()
    }
    out: dict = {
        "calibration": calibration.__dict__,
        "links": links,
        "blocks": blocks,
        "pulses": pulses,
        "eve_fraction": channels["eavesdropped"].eve_fraction,
        "qber_mean": {name: float(np.nanmean([t["qber"].mean() for t in ts])) for name, ts in traces.items()},
    }
    for benign in ("clean", "noisy"):
        roc = anomaly.roc_curve(calibration, traces[benign], traces["eavesdropped"])
        out[f"{benign}_vs_eavesdropped"] = {"auc": anomaly.roc_auc(roc), "points": roc.to_dict("records")}
    return out


def cmd_roc(args: argparse.Namespace) -> int:
    out = channel_roc(args.links, args.blocks, args.pulses, args.seed, args.eve_fraction)
    if args.json:
        print(json.dumps(out))
        return 0
    cal = out["calibration"]
    print(
        f"Algorithm 2 ROC ({args.links} links x {args.blocks} blocks, {args.pulses} pulses/block); "
        "calibration: "
        f"Hbar_q {cal['hbar_q']:.4f}, QBER_ref {cal['qber_ref']:.4f}, benign score {cal['noise_mean']:.3f} "
        f"+- {cal['noise_std']:.3f}"
    )
    qber = ", ".join(f"{k} {v:.4f}" for k, v in out["qber_mean"].items())
    print(f"  mean QBER: {qber} (eve_fraction {out['eve_fraction']})")
    for benign in ("clean", "noisy"):
        curve = out[f"{benign}_vs_eavesdropped"]
        print(f"  benign={benign:5s} vs eavesdropped: AUC {curve['auc']:.4f}")
        print("     k  alpha_start     FPR     TPR")
        for p in curve["points"][::6]:
            print(f"  {p['k']:5.1f}  {p['alpha_start']:10.4f}  {p['fpr']:.4f}  {p['tpr']:.4f}")
    return 0
