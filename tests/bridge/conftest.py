"""A stand-in for ``run_once`` that emits the contract's CSV-R rows (docs/design.md), for testing the
store, figures and report without the simulation. Values are drawn from the spec's seed; they mean
nothing physically and no test compares them with the paper."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

SCALARS = (
    "qkd/qber_mean",
    "qkd/secret_bits",
    "qkd/keys_accepted",
    "qkd/keys_discarded",
    "ids/adr",
    "ids/fpr",
    "ids/precision",
    "ids/f1",
    "network/latency_mean_ms",
    "network/latency_p95_ms",
    "network/goodput_kbps",
    "network/energy_per_session_mJ",
    "network/messages_sent",
    "network/messages_delivered",
    "hybrid/mode_switches",
    "hybrid/quantum_sessions",
    "hybrid/classical_sessions",
    "keys/keys_used",
    "keys/keys_discarded",
    "network/queue_drops",
    "network/latency_median_ms",
)
VECTORS = {
    "qkd/qber": (0.05, 0.01),
    "ids/adr": (0.9, 0.03),
    "network/latency_ms": (25.0, 3.0),
    "network/goodput_kbps": (800.0, 20.0),
    "network/energy_mJ": (15.0, 1.0),
}


def contract_run_once(spec: dict[str, Any], *, bridge: str = "inprocess") -> pd.DataFrame:
    rng = np.random.default_rng([spec["seed"], len(spec["scheme"]), len(spec["channel"]["name"])])
    run = f"{spec['scheme']}-{spec['dataset']['name']}-{spec['channel']['name']}-{spec['seed']}"
    rows: list[dict[str, Any]] = []
    attrs = {
        "dataset": spec["dataset"]["name"],
        "channel": spec["channel"]["name"],
        "scheme": spec["scheme"],
        "seed": str(spec["seed"]),
        "backend": spec["backend"],
        "synthetic": "true",
    }
    for name, value in attrs.items():
        rows.append({"run": run, "type": "runattr", "attrname": name, "attrvalue": value})
    vectors = {}
    times = np.arange(1, spec["rounds"] + 1) * spec["round_duration_s"]
    for metric, (mean, sd) in VECTORS.items():
        vectors[metric] = np.abs(rng.normal(mean, sd, spec["rounds"]))
        module, name = metric.split("/")
        rows.append(
            {
                "run": run,
                "type": "vector",
                "module": module,
                "name": name,
                "vectime": times,
                "vecvalue": vectors[metric],
            }
        )
    values = {metric: float(rng.random()) for metric in SCALARS}
    for rate in ("adr", "fpr", "precision", "f1"):  # Wilson-like bounds around the rate, n records
        values[f"ids/{rate}_ci95_low"] = values[f"ids/{rate}"] * 0.9
        values[f"ids/{rate}_ci95_high"] = min(1.0, values[f"ids/{rate}"] * 1.1)
    values["ids/n_attack_test"], values["ids/n_benign_test"] = 400.0, 100.0
    for metric, value in values.items():
        module, name = metric.split("/")
        rows.append({"run": run, "type": "scalar", "module": module, "name": name, "value": value})
    table = pd.DataFrame(rows)
    for column in ("module", "name", "attrname", "attrvalue", "value", "vectime", "vecvalue"):
        if column not in table:
            table[column] = None
    return table[["run", "type", "module", "name", "attrname", "attrvalue", "value", "vectime", "vecvalue"]]


@pytest.fixture
def fake_run_once():
    return contract_run_once


@pytest.fixture
def reduced_paper(tmp_path: Path) -> Path:
    """paper.yaml cut down: two datasets, the three channels, a flow-only and a fused scheme, few rounds
    (12 runs)."""
    data = yaml.safe_load((REPO / "scenarios" / "paper.yaml").read_text())
    data.update(
        name="paper-reduced",
        datasets=[{"name": "ton_iot", "max_rows": 4000}, {"name": "bot_iot", "max_rows": 4000}],
        schemes=["QESIF", "QuIDS"],
        rounds=6,
        qkd={"protocol": "bb84", "pulses_per_block": 1_000_000},
        qids={"calibration_blocks": 4},
    )
    data["network"].update(devices=20, gateways=3)
    data["keys"]["session_rounds"] = 3
    path = tmp_path / "reduced.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
