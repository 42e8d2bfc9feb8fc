"""QuISP parsers against real QuISP 0.3.0 outputs (tests/fixtures/quisp), and the launcher mechanics."""

from __future__ import annotations

import dataclasses
import math
import os
import stat
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bridge.backends import quisp
from qesif_core.entropy_keys import quantum_entropy
from qesif_core.errors import UserInputError
from qesif_core.qkd.channel import preset
from qesif_core.qkd.keyrate import SecurityParams
from qesif_core.qkd.trace import TRACE_COLUMNS

RUNS = ("twonode_10km_q01", "twonode_10km_q07", "twonode_10km_q15", "repeater_2x10km_q01")
# README of the fixtures: per-km x = y = z = p on every fibre; measurements per tomography
PER_KM = {"twonode_10km_q01": 0.0005, "twonode_10km_q07": 0.0037, "twonode_10km_q15": 0.0088}
CONFIGS = Path(__file__).resolve().parents[3] / "quisp_configs"


@pytest.fixture(params=RUNS)
def run_dir(request, data_path):
    return request.param, data_path("fixtures", "quisp", request.param)


def test_output_lines_parse_and_both_ends_agree(run_dir):
    name, folder = run_dir
    results = quisp.parse_tomography_output(folder / f"{name}.output")
    assert len(results) == 2
    a, b = results
    assert (a.node, a.partner) == (b.partner, b.node) == ("EndNode1", "EndNode2")
    assert (a.fidelity, a.x_error, a.y_error, a.z_error) == (b.fidelity, b.x_error, b.y_error, b.z_error)
    # the four Bell-state weights of a trace-one matrix add up to 1 (to print precision)
    assert a.fidelity + a.x_error + a.y_error + a.z_error == pytest.approx(1.0, abs=5e-6)
    assert a.number("tomography_measurements") == a.number("actual_meas")
    assert a.number("distance") == 10.0


def test_stdout_matches_output_file_and_its_matrices(run_dir):
    name, folder = run_dir
    report = quisp.parse_stdout(folder / "stdout.txt")
    assert report.run_id is not None and report.run_id.startswith(name + "-0-")
    from_file = quisp.parse_tomography_output(folder / f"{name}.output")
    assert [(r.node, r.partner, r.fidelity, r.x_error, r.z_error, r.y_error) for r in report.results] == [
        (r.node, r.partner, r.fidelity, r.x_error, r.z_error, r.y_error) for r in from_file
    ]
    dm_file = quisp.parse_density_matrices(folder / f"{name}.output_dm")
    assert [(n, p) for n, p, _ in dm_file] == [(r.node, r.partner) for r in from_file]
    for printed, (_, _, rho) in zip(report.density_matrices, dm_file, strict=True):
        np.testing.assert_allclose(printed, rho, atol=1e-12)  # same 6-digit print in both places


def test_density_matrix_reproduces_the_error_rates(run_dir):
    """HardwareMonitor's projections of the _dm matrix give the .output values (6 printed digits)."""
    name, folder = run_dir
    results = {(r.node, r.partner): r for r in quisp.parse_tomography_output(folder / f"{name}.output")}
    for node, partner, rho in quisp.parse_density_matrices(folder / f"{name}.output_dm"):
        res = results[(node, partner)]
        fractions = quisp.bell_fractions(rho)
        for key in ("fidelity", "x_error", "y_error", "z_error"):
            assert fractions[key] == pytest.approx(getattr(res, key), abs=2e-6), key
        # QBER_Z is the weight of |01> and |10> in the computational basis
        assert rho[1, 1].real + rho[2, 2].real == pytest.approx(res.qber_z, abs=2e-6)
        np.testing.assert_allclose(rho, rho.conj().T, atol=1e-12)  # Hermitian as printed


def test_end_node_two_matrix_is_qubit_swap_of_end_node_one(data_path):
    folder = data_path("fixtures", "quisp", "twonode_10km_q07")
    (_, _, rho1), (_, _, rho2) = quisp.parse_density_matrices(folder / "twonode_10km_q07.output_dm")
    swap = [0, 2, 1, 3]
    np.testing.assert_allclose(rho2, rho1[np.ix_(swap, swap)], atol=1e-12)


def test_mapping_to_qber(data_path):
    folder = data_path("fixtures", "quisp", "repeater_2x10km_q01")
    (res, _) = quisp.parse_tomography_output(folder / "repeater_2x10km_q01.output")
    assert res.x_error < 0  # linear-inversion estimates can be negative; the parser keeps the sign
    assert res.qber_z == pytest.approx(-0.00422382 + 0.0133981)
    assert res.qber_x == pytest.approx(0.0141248 + 0.0133981)


@pytest.mark.parametrize("name", sorted(PER_KM))
def test_measured_qber_agrees_with_the_channel_model(data_path, name):
    """The per-km channel model predicts the QBER QuISP measured, within 4 binomial standard errors."""
    folder = data_path("fixtures", "quisp", name)
    run = quisp.load_run(folder / f"{name}.output")
    p = PER_KM[name]
    rates = {"channel_x_error_rate": p, "channel_y_error_rate": p, "channel_z_error_rate": p}
    expected_z, expected_x = quisp.expected_qber(rates, 10.0)
    assert expected_z == pytest.approx((1 - (1 - 4 * p) ** 10) / 2)  # closed form in the fixtures README
    n = run.measurements / quisp.BASIS_PAIRS
    for measured, expected in ((run.result.qber_z, expected_z), (run.result.qber_x, expected_x)):
        assert abs(measured - expected) < 4 * math.sqrt(expected * (1 - expected) / n)


def test_per_km_rates_round_trip():
    for qz, qx, d, y, loss in (
        (0.01, 0.01, 10, 0.0, 0.0),
        (0.07, 0.03, 25, 0.0005, 0.02),
        (0.147, 0.147, 10, 0.0005, 0),
    ):
        rates = quisp.per_km_error_rates(qz, qx, d, y_rate=y, loss_rate=loss)
        assert quisp.expected_qber(rates, d) == pytest.approx((qz, qx), rel=1e-12)
    with pytest.raises(UserInputError, match="qber_z must be in"):
        quisp.per_km_error_rates(0.6, 0.1, 10)
    with pytest.raises(UserInputError, match="y_rate"):
        quisp.per_km_error_rates(0.001, 0.001, 10, y_rate=0.01)


def test_trace_has_the_engine_columns_and_definitions(data_path):
    runs = [
        quisp.load_run(data_path("fixtures", "quisp", name, f"{name}.output"))
        for name in ("twonode_10km_q01", "twonode_10km_q07", "twonode_10km_q15")
    ]
    trace = quisp.quisp_trace(runs)
    assert tuple(trace.columns) == TRACE_COLUMNS
    assert trace["block"].tolist() == [0, 1, 2]
    assert trace["qber_z"].tolist() == [r.result.qber_z for r in runs]
    n = round(20000 / 9)
    errors = [round(q * n) for q in trace["qber_z"]], [round(q * n) for q in trace["qber_x"]]
    expected_h = [
        quantum_entropy(ez, n, ex, n, SecurityParams().eps_pe) for ez, ex in zip(*errors, strict=True)
    ]
    assert trace["h_q"].tolist() == expected_h
    assert trace["h_q"].is_monotonic_decreasing and trace["h_q"].iloc[0] > 0 > trace["h_q"].iloc[2]
    assert trace["sifted_bits"].tolist() == [2 * n] * 3
    assert trace["secret_bits"].iloc[0] == math.floor(expected_h[0] * n) and trace["secret_bits"].iloc[2] == 0
    assert trace["basis_mismatch_entropy"].isna().all() and trace["loss_fraction"].isna().all()


def test_bell_pair_model_keeps_quisp_qbers(data_path):
    folder = data_path("fixtures", "quisp", "repeater_2x10km_q01")
    run = quisp.load_run(folder / "repeater_2x10km_q01.output", jsonl=folder / "repeater_2x10km_q01-0.jsonl")
    model = quisp.bell_pair_model(run)
    # Xerror is negative here: y is clipped so that x >= 0 while both QBERs stay QuISP's
    assert min(model.x_error, model.y_error, model.z_error) >= 0
    assert (model.qber_z, model.qber_x) == pytest.approx((run.result.qber_z, run.result.qber_x), abs=1e-15)
    assert model.pair_rate_hz is None  # a repeater chain logs pairs per hop, not end to end
    folder = data_path("fixtures", "quisp", "twonode_10km_q07")
    direct = quisp.load_run(folder / "twonode_10km_q07.output", jsonl=folder / "twonode_10km_q07-0.jsonl")
    direct_model = quisp.bell_pair_model(direct)
    assert (direct_model.x_error, direct_model.y_error, direct_model.z_error) == pytest.approx(
        (direct.result.x_error, direct.result.y_error, direct.result.z_error), abs=1e-15
    )
    assert direct_model.pair_rate_hz == pytest.approx(direct.pair_rates[("1", "2")].pairs_per_s)


def test_engine_trace_runs_the_qkd_engine_on_quisp_channels(data_path):
    runs = [
        quisp.load_run(data_path("fixtures", "quisp", name, f"{name}.output"))
        for name in ("twonode_10km_q01", "twonode_10km_q07", "twonode_10km_q15")
    ]
    pairs = 40_000
    trace = quisp.engine_trace(runs, pairs, np.random.default_rng(7))
    assert tuple(trace.columns) == TRACE_COLUMNS
    assert not trace.isna().any().any()
    assert (trace["loss_fraction"] == 0).all()  # heralded pairs: QuISP already applied the fibre
    for row, run in zip(trace.itertuples(), runs, strict=True):
        n_z = pairs * 0.9 * 0.25  # key pairs: both in Z, outside the 10 % CHSH rounds
        for measured, expected in ((row.qber_z, run.result.qber_z), (row.qber_x, run.result.qber_x)):
            assert abs(measured - expected) < 5 * math.sqrt(expected * (1 - expected) / n_z)
    assert trace["secret_bits"].iloc[0] > 0 and trace["secret_bits"].iloc[2] == 0  # 1 % vs 15 % QBER
    again = quisp.engine_trace(runs, pairs, np.random.default_rng(7))
    assert trace.equals(again)  # same seed, same trace


def test_pair_rate_from_the_log_not_bellpair_per_sec(data_path):
    folder = data_path("fixtures", "quisp", "twonode_10km_q07")
    run = quisp.load_run(folder / "twonode_10km_q07.output", jsonl=folder / "twonode_10km_q07-0.jsonl")
    rate = run.pair_rates[("2", "1")]
    assert rate.events == 120 and rate.first_time_s == pytest.approx(10.00011506646)
    # every logged pair but the last batch (7 pairs at t = 10.00299172796), over the span of the log
    assert rate.pairs_per_s == pytest.approx((120 - 7) / (10.00299172796 - 10.00011506646), rel=1e-12)
    # the tomography's own figure counts the 10 s notification buffer: 20000 / 10.464 s
    assert run.result.number("bellpair_per_sec") == pytest.approx(20000 / 10.46424513287, rel=1e-5)
    assert rate.pairs_per_s > 10 * run.result.number("bellpair_per_sec")


def test_appended_output_is_rejected(tmp_path, data_path):
    src = data_path("fixtures", "quisp", "twonode_10km_q07", "twonode_10km_q07.output")
    doubled = tmp_path / "x.output"
    doubled.write_text(src.read_text() * 2, encoding="utf-8")
    with pytest.raises(UserInputError, match="several runs"):
        quisp.load_run(doubled)


def test_parse_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.output"
    bad.write_text("\nEndNode1<-->QuantumChannel{cost=1}<-->EndNode2; F=abc\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"bad\.output:2: not a QuISP tomography line"):
        quisp.parse_tomography_output(bad)
    dm = tmp_path / "bad.output_dm"
    dm.write_text("EndNode1<--->EndNode2\nREAL\n1 0 0 0\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"bad\.output_dm:2: expected REAL and IMAGINARY"):
        quisp.parse_density_matrices(dm)
    log = tmp_path / "bad.jsonl"
    log.write_text('{"event_type": "BellPairGenerated", "simtime": 1}\n', encoding="utf-8")
    with pytest.raises(UserInputError, match=r"bad\.jsonl:1: bad BellPairGenerated event"):
        quisp.pair_generation_rate(log)


# ----------------------------------------------------------------------------------------- templates


LINKS = ("clean", "noisy", "eavesdropped")


def template_sections() -> dict[str, dict[str, str]]:
    """qesif_links.ini as {section: {key without leading '*.': value}} (comments dropped)."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in (CONFIGS / "qesif_links.ini").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("["):
            current = line.strip("[]").removeprefix("Config ")
            sections[current] = {}
        elif "=" in line and current is not None:
            key, value = (s.strip() for s in line.split("=", 1))
            sections[current][key.lstrip("*.")] = value
    return sections


def template_channel(config: str) -> tuple[dict[str, float], float]:
    """The QuantumChannel rates per km of ``config`` (General's fibre loss included) and the fibre length."""
    sections = template_sections()
    rates = {
        k: float(v)
        for section in ("General", config)
        for k, v in sections[section].items()
        if k.startswith("channel_")
    }
    return rates, float(sections["General"]["fiber_km"].removesuffix("km"))


def test_templates_use_quisp_parameter_names_and_reach_their_qber():
    sections = template_sections()
    assert set(LINKS) <= set(sections)
    # the presets' fibre (qesif_core.qkd.channel: 0.2 dB/km) as QuISP's per-km loss probability
    assert 1 - float(sections["General"]["channel_loss_rate"]) == pytest.approx(10 ** (-0.2 / 10), rel=1e-10)
    targets = {"clean": 0.01, "noisy": 0.07, "eavesdropped": 1 - (1 - 2 * 0.01) * (1 - 0.56 / 2)}
    for config, target in targets.items():
        qz, qx = quisp.expected_qber(*template_channel(config))
        assert qz == pytest.approx(target / 2 if config == "eavesdropped" else target, abs=5e-4), config
        assert qx == pytest.approx(qz, abs=1e-9)


def test_channel_rates_of_the_presets_are_the_templates():
    for config in LINKS:
        rates, distance = template_channel(config)
        params = preset(config)
        assert params.distance_km == distance
        assert quisp.channel_rates(params) == pytest.approx(rates, rel=1e-9), config
        overrides = quisp.channel_overrides(params)
        assert overrides["*.fiber_km"] == "10.0km"
        assert (
            float(overrides["**.channel_x_error_rate"]) == quisp.channel_rates(params)["channel_x_error_rate"]
        )


def test_channel_rates_follow_distance_and_refuse_pns():
    far = dataclasses.replace(preset("noisy"), distance_km=25.0)
    assert quisp.expected_qber(quisp.channel_rates(far), 25.0) == pytest.approx((0.07, 0.07), rel=1e-9)
    with pytest.raises(UserInputError, match="pns"):
        quisp.channel_rates(dataclasses.replace(preset("clean"), eve="pns", eve_fraction=0.1))
    with pytest.raises(UserInputError, match="distance_km"):
        quisp.channel_rates(dataclasses.replace(preset("clean"), distance_km=0.0))


# ----------------------------------------------------------------------------------------- launcher


FAKE = """\
#!{python}
# stand-in for the QuISP executable: checks the argv, then writes recorded fixture outputs
import os, re, shutil, sys, time
args = sys.argv[1:]
assert args[:3] == ["-u", "Cmdenv", "--cmdenv-express-mode=true"], args
ini = open(args[args.index("-f") + 1]).read()
assert args[args.index("-c") + 1] == "qesif_run"
if "sleep" in ini:
    time.sleep(60)
out = re.search(r'tomography_output_filename = "(.*)"', ini).group(1)
log = re.search(r'log_filename = "(.*)"', ini).group(1)
src = {src!r}
shutil.copy(os.path.join(src, "twonode_10km_q07.output"), out)
shutil.copy(os.path.join(src, "twonode_10km_q07.output_dm"), out + "_dm")
shutil.copy(os.path.join(src, "twonode_10km_q07-0.jsonl"), log)
print("seed", re.search(r"seed-set = (\\d+)", ini).group(1))
"""


@pytest.fixture
def fake_quisp(tmp_path, data_path):
    src = data_path("fixtures", "quisp", "twonode_10km_q07")
    exe = tmp_path / "bin" / "quisp"
    exe.parent.mkdir()
    exe.write_text(FAKE.format(python=sys.executable, src=str(src)), encoding="utf-8")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


def test_launcher_runs_blocks_with_seeds_from_the_generator(fake_quisp, tmp_path, rng):
    launch = quisp.QuispLaunch(
        executable=fake_quisp,
        ini=CONFIGS / "qesif_links.ini",
        config="noisy",
        run_dir=tmp_path / "runs",
        seed=0,
    )
    runs = quisp.run_blocks(launch, rng, 2, timeout_s=60)
    trace = quisp.quisp_trace(runs)
    assert len(trace) == 2 and trace["qber_z"].tolist() == [runs[0].result.qber_z] * 2
    seeds = quisp.seeds_for_blocks(np.random.default_rng(20250116), 2)
    for block, seed in enumerate(seeds):
        run_dir = tmp_path / "runs" / f"block{block:04d}"
        assert (run_dir / "stdout.txt").read_text().strip() == f"seed {seed}"
        ini = (run_dir / "qesif_run.ini").read_text()
        assert "extends = noisy" in ini and f"include {(CONFIGS / 'qesif_links.ini').resolve()}" in ini
    assert runs[0].pair_rates[("2", "1")].events == 120


def test_launcher_timeout_stops_the_process(fake_quisp, tmp_path):
    launch = quisp.QuispLaunch(
        executable=fake_quisp,
        ini=CONFIGS / "qesif_links.ini",
        config="clean",
        run_dir=tmp_path / "slow",
        seed=1,
        overrides={"# sleep": ""},
    )
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"exceeded 0\.5 s"):
        quisp.run_quisp(launch, timeout_s=0.5, grace_s=2)
    assert time.monotonic() - start < 10


def test_launcher_rejects_unknown_config(fake_quisp, tmp_path):
    launch = quisp.QuispLaunch(
        executable=fake_quisp, ini=CONFIGS / "qesif_links.ini", config="nope", run_dir=tmp_path, seed=1
    )
    with pytest.raises(UserInputError, match=r"has no \[Config nope\]"):
        quisp.run_quisp(launch, timeout_s=5)


# ----------------------------------------------------------------------------------------- real QuISP


def test_missing_quisp_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(quisp.QUISP_ENV, str(tmp_path / "quisp"))
    assert f"${quisp.QUISP_ENV}={tmp_path / 'quisp'} is not an executable file" in quisp.why_no_quisp()
    monkeypatch.delenv(quisp.QUISP_ENV)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "$QUISP unset, no 'quisp' on PATH" in quisp.why_no_quisp()
    (tmp_path / "quisp").write_text("#!/bin/sh\n", encoding="utf-8")
    (tmp_path / "quisp").chmod(0o755)
    assert quisp.why_no_quisp() is None and quisp.find_quisp() == tmp_path / "quisp"


def real_quisp() -> Path:
    """The QuISP executable the launcher would use (``find_quisp``), or skip saying how to provide one."""
    missing = quisp.why_no_quisp()
    if missing:
        pytest.skip(missing)
    return quisp.find_quisp()


def drop_logs(run_dir: Path) -> None:
    """QuISP's JSONL log is about 50 MB per 20 s run; keep the tmp folder small once it is parsed."""
    for log in run_dir.rglob("*.jsonl"):
        log.unlink()


@pytest.fixture(scope="module")
def template_runs(tmp_path_factory):
    """Each template link run once in real QuISP through the launcher (seed 1), parsed with its log."""
    exe = real_quisp()
    root = tmp_path_factory.mktemp("quisp_templates")
    out = {}
    for config in LINKS:
        launch = quisp.QuispLaunch(
            executable=exe, ini=CONFIGS / "qesif_links.ini", config=config, run_dir=root / config, seed=1
        )
        outcome = quisp.run_quisp(launch, timeout_s=float(os.environ.get("QUISP_TIMEOUT_S", "120")))
        out[config] = (outcome, quisp.load_run(outcome.output, jsonl=outcome.jsonl))
        drop_logs(root / config)
    return out


@pytest.mark.quisp
def test_real_quisp_links_reach_the_qber_their_channel_gives(template_runs):
    qbers = {}
    for config, (_, run) in template_runs.items():
        expected_z, expected_x = quisp.expected_qber(*template_channel(config))
        n = run.measurements / quisp.BASIS_PAIRS
        for measured, expected in ((run.result.qber_z, expected_z), (run.result.qber_x, expected_x)):
            assert abs(measured - expected) < 4 * math.sqrt(expected * (1 - expected) / n), config
        qbers[config] = (run.result.qber_z, run.result.qber_x)
    for basis in (0, 1):
        assert qbers["clean"][basis] < qbers["noisy"][basis] < qbers["eavesdropped"][basis]


@pytest.mark.quisp
def test_real_quisp_stdout_output_and_matrices_agree(template_runs):
    for config, (outcome, run) in template_runs.items():
        from_file = quisp.parse_tomography_output(outcome.output)
        report = quisp.parse_stdout(outcome.stdout)
        assert [(r.node, r.partner, r.fidelity, r.x_error) for r in report.results] == [
            (r.node, r.partner, r.fidelity, r.x_error) for r in from_file
        ], config
        assert len(from_file) == 2 and {r.link for r in from_file} == {("EndNode1", "EndNode2")}
        assert run.result.number("distance") == 10.0 and run.measurements == 20000
        fractions = quisp.bell_fractions(run.density_matrix)
        res = run.result
        assert fractions == pytest.approx(
            {
                "fidelity": res.fidelity,
                "x_error": res.x_error,
                "y_error": res.y_error,
                "z_error": res.z_error,
            },
            abs=2e-6,
        )


@pytest.mark.quisp
def test_real_quisp_runs_become_the_qkd_trace(tmp_path):
    """Two seeded runs through ``run_blocks`` into both traces; the measured pair rate follows the fibre
    loss (the same link without loss as reference, same seed: the BSA attempt schedule is the same)."""
    exe = real_quisp()
    launch = quisp.QuispLaunch(
        executable=exe, ini=CONFIGS / "qesif_links.ini", config="noisy", run_dir=tmp_path / "noisy", seed=0
    )
    timeout = float(os.environ.get("QUISP_TIMEOUT_S", "120"))
    runs = quisp.run_blocks(launch, np.random.default_rng(5), 2, timeout_s=timeout)
    lossless = quisp.run_blocks(
        dataclasses.replace(launch, run_dir=tmp_path / "lossless", overrides={"**.channel_loss_rate": "0"}),
        np.random.default_rng(5),
        1,
        timeout_s=timeout,
    )
    drop_logs(tmp_path)
    assert runs[0].result.fidelity != runs[1].result.fidelity  # two seeds, two samples
    tomography = quisp.quisp_trace(runs)
    engine = quisp.engine_trace(runs, 20_000, np.random.default_rng(3))
    for trace in (tomography, engine):
        assert tuple(trace.columns) == TRACE_COLUMNS and trace["block"].tolist() == [0, 1]
    assert tomography["qber_z"].tolist() == [r.result.qber_z for r in runs]
    assert (engine["sifted_bits"] > 0).all() and (engine["loss_fraction"] == 0).all()
    rate, reference = quisp.link_pair_rate(runs[0]), quisp.link_pair_rate(lossless[0])
    assert rate / reference == pytest.approx(10 ** (-0.2), abs=0.03)  # 0.2 dB/km over 10 km
