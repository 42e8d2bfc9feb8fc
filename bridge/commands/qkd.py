"""``qesif qkd``: run one QKD block end to end and report its figures (never key bits).

The verdict ``key_accepted`` is Algorithm 1's for a one-slot window (gamma = 1, eta = 0, default
:class:`~qesif_core.entropy_keys.KeyPolicy`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from typing import TYPE_CHECKING

from bridge.commands import LazyChoices
from qesif_core.errors import UserInputError

if TYPE_CHECKING:
    from qesif_core import entropy_keys
    from qesif_core.qkd.session import BlockResult

DEFAULT_PULSES = 10**8


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "qkd",
        help="simulate one QKD block (BB84 with decoys or BBM92) with full post-processing",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "--protocol",
        choices=LazyChoices("qesif_core.qkd.session", "PROTOCOLS"),
        metavar="NAME",
        default="bb84",
        help="%(choices)s (default bb84)",
    )
    parser.add_argument(
        "--channel",
        choices=LazyChoices("qesif_core.qkd.channel", "CHANNEL_PRESETS"),
        metavar="PRESET",
        default="clean",
        help="preset the options below override: %(choices)s (default clean)",
    )
    parser.add_argument("--distance-km", type=float, help="fibre length in km (default 10)")
    parser.add_argument("--intrinsic-error", type=float, help="misalignment error e_d in [0, 0.5]")
    parser.add_argument(
        "--eve",
        choices=LazyChoices("qesif_core.qkd.channel", "EVE_MODES"),
        metavar="MODE",
        help="attacker: %(choices)s (default: the preset's)",
    )
    parser.add_argument(
        "--eve-fraction", type=float, help="fraction of pulses attacked (default 1 with --eve)"
    )
    parser.add_argument(
        "--pulses", type=_count, default=DEFAULT_PULSES, help="emitted pulses (pairs), e.g. 1e8"
    )
    parser.add_argument(
        "--cascade",
        choices=LazyChoices("qesif_core.qkd.cascade", "VARIANTS"),
        metavar="VARIANT",
        default="yanetal",
        help="Cascade variant: %(choices)s (default yanetal)",
    )
    parser.add_argument(
        "--intensities",
        choices=LazyChoices("qesif_core.qkd.commissioning", "INTENSITY_MODES"),
        metavar="MODE",
        default="fixed",
        help="bb84: the preset's mu (fixed) or those maximising this block's expected key (optimise)",
    )
    parser.add_argument(
        "--frame-bits",
        type=_frame_bits,
        default=None,
        help="raw key bits reconciled for real (default: the engine's, 2^14; 'all': the whole block)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def _count(text: str) -> int:
    """An integer count; scientific notation (1e8) is accepted when it is a whole number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value != int(value):
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    return int(value)


def _frame_bits(text: str) -> int | str:
    """A positive frame size, or ``all`` (Cascade on the whole raw key)."""
    if text == "all":
        return text
    value = _count(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive or 'all': {text!r}")
    return value


def _channel(args: argparse.Namespace):
    from qesif_core.qkd.channel import CHANNEL_PRESETS

    params = CHANNEL_PRESETS[args.channel]
    changes = {}
    if args.distance_km is not None:
        if not (math.isfinite(args.distance_km) and args.distance_km >= 0):
            raise UserInputError(f"--distance-km must be >= 0 (got {args.distance_km!r})")
        changes["distance_km"] = args.distance_km
    if args.intrinsic_error is not None:
        if not 0.0 <= args.intrinsic_error <= 0.5:
            raise UserInputError(f"--intrinsic-error must lie in [0, 0.5] (got {args.intrinsic_error!r})")
        changes["intrinsic_error"] = args.intrinsic_error
    if args.eve_fraction is not None and not 0.0 <= args.eve_fraction <= 1.0:
        raise UserInputError(f"--eve-fraction must lie in [0, 1] (got {args.eve_fraction!r})")
    if args.eve is not None:
        changes["eve"] = args.eve
        changes["eve_fraction"] = 0.0 if args.eve == "none" else 1.0
    if args.eve_fraction is not None:
        changes["eve_fraction"] = args.eve_fraction
    if args.protocol == "bbm92" and changes.get("eve", params.eve) == "pns":
        raise UserInputError("--eve pns applies to weak coherent pulses (--protocol bb84), not to bbm92")
    return dataclasses.replace(params, **changes)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from qesif_core import entropy_keys
    from qesif_core.qkd import commissioning
    from qesif_core.qkd.bb84 import check_pulses
    from qesif_core.qkd.session import DEFAULT_FRAME_BITS, run_block

    frame_bits = {None: DEFAULT_FRAME_BITS, "all": None}.get(args.frame_bits, args.frame_bits)
    check_pulses(args.pulses, "--pulses")
    params = _channel(args)
    if args.protocol == "bb84":
        params = commissioning.apply(params, commissioning.commission(params, args.pulses, args.intensities))
    rng = np.random.default_rng(args.seed)
    result = run_block(
        params, args.pulses, rng, args.protocol, cascade_variant=args.cascade, frame_bits=frame_bits
    )
    decision = entropy_keys.generate_key(
        "cli",
        [entropy_keys.SlotObservation(h_q=result.h_q, theta=result.qber, loss=result.loss_fraction)],
        gamma=1.0,
    )
    report = {
        **result.figures(),
        "secret_fraction": result.secret_fraction,
        "s_qkd": decision.s_qkd,
        "k_iot": decision.k_iot[0],
        "key_accepted": decision.accepted,
        "channel": params.to_dict(),
        "seed": args.seed,
    }
    if args.json:
        print(json.dumps(_json_safe(report)))
    else:
        print(_summary(result, decision))
    return 0


def _json_safe(value):
    """NaN and infinity are not JSON: they become null."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _summary(result: BlockResult, decision: entropy_keys.KeyDecision) -> str:
    verdict = "accepted" if decision.accepted else "discarded (session flagged)"
    r = result
    lines = [
        f"{result.protocol}: {result.pulses:.3g} pulses, loss {result.loss_fraction:.4f}",
        f"QBER {r.qber:.4f} (Z {r.qber_z:.4f}, X {r.qber_x:.4f}); sifted {r.sifted_bits} bits",
        f"Cascade on {r.frame_bits} of {r.reconciled_bits} raw key bits: f = {r.ec_efficiency:.3f}; "
        f"block charged {r.disclosed_bits} bits (f_U = {r.ec_efficiency_bound:.3f})"
        + (", FRAME ERROR" if result.frame_error else ""),
        f"secret key: {result.secret_bits} bits (block); {r.key_bits} bits materialised; "
        f"keys match: {result.keys_match}; epsilon {r.epsilon:.2g}",
        f"H_q {result.h_q:.4f}; S_QKD {decision.s_qkd:.4f}; key {verdict}",
    ]
    if result.protocol == "bbm92":
        lines.append(f"CHSH S = {result.chsh_s:.3f} +- {result.chsh_standard_error:.3f}")
    return "\n".join(lines)
