import json
import subprocess
import sys

import pytest

from bridge import cli

REQUIRED = (
    "qber", "qber_z", "qber_x", "sifted_bits", "disclosed_bits", "ec_efficiency", "secret_bits", "h_q",
    "s_qkd", "key_accepted", "keys_match",
)  # fmt: skip


def _json(capsys, *argv):
    assert cli.main(["qkd", "--json", "--pulses", "1e7", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_report_has_the_figures_and_no_key_material(capsys):
    report = _json(capsys)
    assert set(REQUIRED) <= set(report)
    assert not {"alice_key", "bob_key", "key"} & set(report)
    assert report["qber"] == pytest.approx(0.01, abs=0.003)
    assert report["key_accepted"] is True
    assert report["keys_match"] is True
    assert report["secret_bits"] > 0


def test_eavesdropper_options_reach_the_channel(capsys):
    report = _json(capsys, "--eve", "intercept-resend", "--eve-fraction", "0.56", "--protocol", "bbm92")
    assert report["channel"]["eve_fraction"] == 0.56
    assert report["qber"] == pytest.approx(0.147, abs=0.01)
    assert report["key_accepted"] is False
    assert report["secret_bits"] == 0


def test_same_seed_same_report(capsys):
    assert _json(capsys, "--seed", "3") == _json(capsys, "--seed", "3")


def test_optimised_intensities_give_the_noisy_preset_a_key_in_a_source_sized_block(capsys):
    fixed = _json(capsys, "--channel", "noisy", "--pulses", "1e9")
    chosen = _json(capsys, "--channel", "noisy", "--pulses", "1e9", "--intensities", "optimise")
    assert fixed["secret_bits"] == 0 and fixed["channel"]["mu_signal"] == 0.5
    assert chosen["secret_bits"] > 10**5 and chosen["channel"]["mu_signal"] < 0.5
    assert 0 < chosen["key_bits"] < chosen["secret_bits"] and chosen["frame_bits"] == 16384
    whole = _json(capsys, "--frame-bits", "all")
    assert whole["frame_bits"] == whole["reconciled_bits"] and whole["key_bits"] == whole["secret_bits"]


def test_readable_summary(capsys):
    assert cli.main(["qkd", "--pulses", "1e6", "--intrinsic-error", "0.07"]) == 0
    out = capsys.readouterr().out
    assert "QBER 0.07" in out
    assert "S_QKD" in out


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--distance-km", "-1"], "--distance-km"),
        (["--eve-fraction", "1.5"], "--eve-fraction"),
        (["--eve-fraction", "-0.1"], "--eve-fraction"),
        (["--intrinsic-error", "0.9"], "--intrinsic-error"),
        (["--pulses", "0"], "--pulses"),
        (["--pulses", "1e20"], "--pulses"),
        (["--pulses", "many"], "--pulses"),
        (["--protocol", "e92"], "--protocol"),
        (["--eve", "pns", "--protocol", "bbm92"], "--eve"),
        (["--frame-bits", "0"], "--frame-bits"),
        (["--intensities", "best"], "--intensities"),
    ],
)
def test_bad_input_exits_2_naming_the_option(argv, option, capsys):
    assert _exit_code(["qkd", *argv]) == 2
    err = capsys.readouterr().err
    assert option in err
    assert "Traceback" not in err


def _exit_code(argv):
    """cli.main's return value, or the code of argparse's SystemExit for a usage error."""
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code


def test_bad_input_in_a_real_process_has_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "qkd", "--distance-km", "-3"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "--distance-km" in proc.stderr
    assert "Traceback" not in proc.stderr
